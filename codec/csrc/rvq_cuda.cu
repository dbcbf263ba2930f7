// Exact residual-vector-quantization encoder for CUDA (ncodec issue 4).
//
// NOTE: written without access to a GPU. It compiles with nvcc (checked with
// -DNCODEC_RVQ_STANDALONE, kernels only) but has NOT been run yet; the equivalence tests in
// tests/test_rvq.py run against it automatically on a machine with a CUDA device.
//
// Same contract as rvq_cpu.cpp: for each stage s, code = argmin_k ||c_k||^2 - 2 r.c_k (fp32
// arithmetic, fp32 accumulation, no TF32), lowest index on exactly equal distances, then
// r <- r - c_code. One launch per stage (stages are sequential for a vector):
//   * a block owns BM = 64 residual rows and sweeps all K codewords in tiles of BK = 64;
//     residual and codebook tiles of BD = 32 dims go through shared memory, each of the 256
//     threads accumulates a 4 x 4 sub-tile (rows ty + 16 i, codewords tx + 16 j) in registers;
//   * after each codeword tile, the thread folds its 4 x 4 distances into a per-row running
//     (min, index) (codewords visited in increasing order, strict "<");
//   * the 16 threads sharing a row (same warp half) reduce (min, index) with shuffles, ties
//     to the lower index; the block then writes the codes and subtracts the chosen codewords
//     from its own rows of the residual (in place, in a float32 copy of x).
// Nothing of size N x K is ever materialised.

#include <cstdint>

#include <cuda_runtime.h>

namespace ncodec_rvq_cuda {

constexpr int BM = 64;   // residual rows per block
constexpr int BK = 64;   // codewords per tile
constexpr int BD = 32;   // dims per shared-memory tile
constexpr int THREADS = 256;
constexpr int TM = 4;    // rows per thread
constexpr int TK = 4;    // codewords per thread

// norms[i] = ||cb[i, :]||^2 for i < rows (fp32, sequential over d).
__global__ void codeword_norms_kernel(const float* __restrict__ cb, int64_t rows, int64_t D,
                                      float* __restrict__ norms) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  const float* c = cb + i * D;
  float acc = 0.f;
  for (int64_t d = 0; d < D; ++d) acc = fmaf(c[d], c[d], acc);
  norms[i] = acc;
}

__global__ void __launch_bounds__(THREADS)
rvq_stage_kernel(float* __restrict__ resid,        // [N, D], updated in place
                 const float* __restrict__ cb,     // [K, D], this stage's codebook
                 const float* __restrict__ norms,  // [K]
                 int64_t* __restrict__ codes,      // [N, S]
                 int64_t N, int K, int64_t D, int64_t S, int64_t s) {
  __shared__ float As[BD][BM + 1];  // residual tile, transposed (d-major); +1 avoids conflicts
  __shared__ float Bs[BD][BK + 1];  // codebook tile, transposed
  __shared__ int best_code[BM];

  const int tid = threadIdx.x;
  const int tx = tid % 16;  // codeword lane
  const int ty = tid / 16;  // row lane
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * BM;

  float best[TM];
  int bidx[TM];
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    best[i] = __int_as_float(0x7f800000);  // +inf
    bidx[i] = 0;
  }

  for (int k0 = 0; k0 < K; k0 += BK) {
    float acc[TM][TK];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TK; ++j) acc[i][j] = 0.f;

    for (int64_t d0 = 0; d0 < D; d0 += BD) {
      // Coalesced loads: consecutive threads read consecutive dims of one row / codeword.
      for (int e = tid; e < BM * BD; e += THREADS) {
        const int m = e / BD, d = e % BD;
        const int64_t row = row0 + m, dd = d0 + d;
        As[d][m] = (row < N && dd < D) ? resid[row * D + dd] : 0.f;
      }
      for (int e = tid; e < BK * BD; e += THREADS) {
        const int k = e / BD, d = e % BD;
        const int64_t kk = k0 + k, dd = d0 + d;
        Bs[d][k] = (kk < K && dd < D) ? cb[kk * D + dd] : 0.f;
      }
      __syncthreads();
#pragma unroll 8
      for (int d = 0; d < BD; ++d) {
        float a[TM], b[TK];
#pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = As[d][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < TK; ++j) b[j] = Bs[d][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TK; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
      __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < TK; ++j) {
      const int kk = k0 + tx + 16 * j;  // increasing in j and across tiles
      if (kk < K) {
        const float nk = norms[kk];
#pragma unroll
        for (int i = 0; i < TM; ++i) {
          const float dist = fmaf(-2.f, acc[i][j], nk);
          if (dist < best[i]) {
            best[i] = dist;
            bidx[i] = kk;
          }
        }
      }
    }
  }

  // Reduce over the 16 threads of a row group (lanes tx = 0..15 of one warp half).
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    float v = best[i];
    int c = bidx[i];
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, off);
      const int oc = __shfl_xor_sync(0xffffffffu, c, off);
      if (ov < v || (ov == v && oc < c)) {
        v = ov;
        c = oc;
      }
    }
    if (tx == 0) best_code[ty + 16 * i] = c;
  }
  __syncthreads();

  for (int m = tid; m < BM; m += THREADS) {
    const int64_t row = row0 + m;
    if (row < N) codes[row * S + s] = best_code[m];
  }
  for (int64_t e = tid; e < static_cast<int64_t>(BM) * D; e += THREADS) {
    const int64_t m = e / D, d = e % D;
    const int64_t row = row0 + m;
    if (row < N) resid[row * D + d] -= cb[static_cast<int64_t>(best_code[m]) * D + d];
  }
}

// Launch the whole encode on `stream`: resid [N, D] (a scratch copy of x, overwritten),
// cb [S, K, D], norms [S, K] (scratch), codes [N, S].
inline cudaError_t launch_encode(float* resid, const float* cb, float* norms, int64_t* codes,
                                 int64_t N, int64_t D, int64_t S, int K, cudaStream_t stream) {
  const int64_t rows = S * K;
  codeword_norms_kernel<<<static_cast<unsigned>((rows + 255) / 256), 256, 0, stream>>>(
      cb, rows, D, norms);
  const unsigned blocks = static_cast<unsigned>((N + BM - 1) / BM);
  for (int64_t s = 0; s < S; ++s) {
    rvq_stage_kernel<<<blocks, THREADS, 0, stream>>>(resid, cb + s * K * D, norms + s * K,
                                                     codes, N, K, D, S, s);
  }
  return cudaGetLastError();
}

}  // namespace ncodec_rvq_cuda

#ifndef NCODEC_RVQ_STANDALONE
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace {

at::Tensor rvq_encode_cuda(const at::Tensor& x, const at::Tensor& codebooks) {
  TORCH_CHECK(x.is_cuda() && codebooks.is_cuda(), "rvq_encode_cuda: tensors must be on CUDA");
  TORCH_CHECK(x.device() == codebooks.device(), "rvq_encode_cuda: x and codebooks must be on "
              "the same device");
  TORCH_CHECK(x.scalar_type() == at::kFloat && codebooks.scalar_type() == at::kFloat,
              "rvq_encode_cuda: x and codebooks must be float32");
  TORCH_CHECK(x.dim() == 2 && codebooks.dim() == 3,
              "rvq_encode_cuda: expected x [N, D] and codebooks [S, K, D]");
  TORCH_CHECK(x.is_contiguous() && codebooks.is_contiguous(),
              "rvq_encode_cuda: x and codebooks must be contiguous");
  const int64_t N = x.size(0), D = x.size(1);
  const int64_t S = codebooks.size(0), K = codebooks.size(1);
  TORCH_CHECK(S > 0 && K > 0 && D > 0, "rvq_encode_cuda: S, K and D must be positive");
  TORCH_CHECK(K <= 65535, "rvq_encode_cuda: K must be <= 65535");
  TORCH_CHECK(codebooks.size(2) == D, "rvq_encode_cuda: codebook dim != x dim");
  TORCH_CHECK((N + ncodec_rvq_cuda::BM - 1) / ncodec_rvq_cuda::BM <= 0x7fffffff,
              "rvq_encode_cuda: N too large");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor codes = at::empty({N, S}, x.options().dtype(at::kLong));
  if (N == 0) return codes;
  at::Tensor resid = x.clone();
  at::Tensor norms = at::empty({S, K}, x.options());
  const cudaError_t err = ncodec_rvq_cuda::launch_encode(
      resid.data_ptr<float>(), codebooks.data_ptr<float>(), norms.data_ptr<float>(),
      codes.data_ptr<int64_t>(), N, D, S, static_cast<int>(K),
      c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "rvq_encode_cuda: kernel launch failed: ",
              cudaGetErrorString(err));
  return codes;
}

}  // namespace

// A fragment: the CPU extension owns TORCH_LIBRARY(ncodec, ...).
TORCH_LIBRARY_FRAGMENT(ncodec, m) {
  m.def("rvq_encode_cuda(Tensor x, Tensor codebooks) -> Tensor");
}

TORCH_LIBRARY_IMPL(ncodec, CUDA, m) { m.impl("rvq_encode_cuda", &rvq_encode_cuda); }
#endif
