// Exact residual-vector-quantization encoder for the CPU (ncodec issue 4).
//
// For every input vector and every stage s: find argmin_k ||r - c_k||^2 over the K codewords
// of stage s, emit k, and subtract c_k from the running residual r. The distance is computed
// as ||c_k||^2 - 2 r.c_k (||r||^2 is the same for every k), exactly the formula the pure
// torch backend uses, so both backends can only disagree on near-exact ties.
//
// Layout and blocking (a small fused GEMM + argmin; the N x K distance matrix never exists):
//   * each stage's codebook is packed once per call into panels of NR codewords stored d-major
//     ([D][NR] floats per panel) plus a panel of ||c||^2 (+inf for padding codewords);
//   * rows are processed in blocks of MB = 64 residuals kept in a thread-local buffer; for a
//     block and a stage, every panel (stays in L1) is swept over all the block's residuals in
//     micro-tiles of MR rows, so each codeword load is reused by MR rows and each residual
//     broadcast by NR codewords;
//   * the micro-kernel keeps a running (min distance, index) per row and lane; strict "<" and
//     increasing codeword order per lane, then a lowest-index tie-break across lanes, give
//     "lowest index wins" on exactly equal distances;
//   * the argmin'ed codeword is subtracted from the residual in the local buffer (one fp32
//     subtraction per element, the same rounding as the torch backend's r - c).
// Micro-kernels, picked at run time (__builtin_cpu_supports): AVX-512F (MR = 8 rows x NR = 48
// codewords, 24 zmm accumulators, 16 lanes), AVX2+FMA (MR = 4 x NR = 24, 12 ymm accumulators,
// 8 lanes), else a generic C++ one that the compiler auto-vectorises (-O3 -ftree-vectorize).
// AVX-512 and AVX2 accumulate every dot product in the same order with FMAs, so they give
// identical distances. NCODEC_RVQ_ISA=generic or =avx2 caps the kernel (tests use this). Work
// is split over blocks with std::thread (at most at::get_num_threads() threads); no OpenMP.
//
// Build: JIT via torch.utils.cpp_extension.load from ncodec/rvq_backends.py. Define
// NCODEC_RVQ_STANDALONE to compile only the torch-free core (ncodec_rvq::encode), as the
// sanitizer test (tests/test_rvq_sanitizers.py) does.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NCODEC_RVQ_X86 1
#endif

namespace ncodec_rvq {

constexpr int MB = 64;         // residual rows per block (a multiple of every kernel's MR)
constexpr int MAX_LANES = 16;  // widest running-minimum lane count (one AVX-512 vector)

// 64-byte aligned float buffer.
struct FloatBuf {
  float* p = nullptr;
  explicit FloatBuf(size_t n) {
    size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    p = static_cast<float*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64));
    if (p == nullptr) throw std::bad_alloc();
  }
  ~FloatBuf() { std::free(p); }
  FloatBuf(const FloatBuf&) = delete;
  FloatBuf& operator=(const FloatBuf&) = delete;
};

// Micro-kernel: rows r[0..MR) (row stride ld) against one packed panel. Updates the running
// per-row, per-lane minimum (bv, bi: MR x LANES, row-major) with codewords base..base+NR.
using MicroKernel = void (*)(const float* r, int64_t ld, const float* panel, const float* norm,
                             int64_t D, int32_t base, float* bv, int32_t* bi);

// A micro-kernel and its geometry.
struct Kernel {
  MicroKernel fn;
  int mr, nr, lanes;
  const char* name;
};

constexpr int MR = 4, NR = 24, LANES = 8;  // geometry of the generic and AVX2 kernels

static void micro_generic(const float* r, int64_t ld, const float* panel, const float* norm,
                          int64_t D, int32_t base, float* bv, int32_t* bi) {
  float acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = 0.f;
  for (int64_t d = 0; d < D; ++d) {
    const float* p = panel + d * NR;
    for (int i = 0; i < MR; ++i) {
      const float a = r[i * ld + d];
      for (int j = 0; j < NR; ++j) acc[i][j] += a * p[j];
    }
  }
  // Only lane 0 is used; codewords are visited in increasing order, strict "<".
  for (int i = 0; i < MR; ++i) {
    float best = bv[i * LANES];
    int32_t idx = bi[i * LANES];
    for (int j = 0; j < NR; ++j) {
      const float dist = norm[j] - 2.f * acc[i][j];
      if (dist < best) {
        best = dist;
        idx = base + j;
      }
    }
    bv[i * LANES] = best;
    bi[i * LANES] = idx;
  }
}

#ifdef NCODEC_RVQ_X86
// One row's running minimum over 24 new codewords (3 vectors of dot products a0..a2).
// dist = norm - 2 * dot: the scaling by -2 is exact and the fma rounds once, so this equals
// the generic kernel's norm - 2.f * dot for the same dot product.
__attribute__((target("avx2,fma"), always_inline)) inline void avx2_update_row(
    float* v, int32_t* ix, __m256 a0, __m256 a1, __m256 a2, __m256 n0, __m256 n1, __m256 n2,
    __m256i i0, __m256i i1, __m256i i2) {
  const __m256 m2 = _mm256_set1_ps(-2.f);
  __m256 best = _mm256_load_ps(v);
  __m256 bidx = _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(ix)));
  __m256 dist = _mm256_fmadd_ps(a0, m2, n0);
  __m256 lt = _mm256_cmp_ps(dist, best, _CMP_LT_OQ);
  best = _mm256_blendv_ps(best, dist, lt);
  bidx = _mm256_blendv_ps(bidx, _mm256_castsi256_ps(i0), lt);
  dist = _mm256_fmadd_ps(a1, m2, n1);
  lt = _mm256_cmp_ps(dist, best, _CMP_LT_OQ);
  best = _mm256_blendv_ps(best, dist, lt);
  bidx = _mm256_blendv_ps(bidx, _mm256_castsi256_ps(i1), lt);
  dist = _mm256_fmadd_ps(a2, m2, n2);
  lt = _mm256_cmp_ps(dist, best, _CMP_LT_OQ);
  best = _mm256_blendv_ps(best, dist, lt);
  bidx = _mm256_blendv_ps(bidx, _mm256_castsi256_ps(i2), lt);
  _mm256_store_ps(v, best);
  _mm256_store_si256(reinterpret_cast<__m256i*>(ix), _mm256_castps_si256(bidx));
}

__attribute__((target("avx2,fma"))) static void micro_avx2(const float* r, int64_t ld,
                                                           const float* panel, const float* norm,
                                                           int64_t D, int32_t base, float* bv,
                                                           int32_t* bi) {
  const float* r0 = r;
  const float* r1 = r + ld;
  const float* r2 = r + 2 * ld;
  const float* r3 = r + 3 * ld;
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c02 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps(), c12 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c22 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c32 = _mm256_setzero_ps();
  const float* p = panel;
  for (int64_t d = 0; d < D; ++d, p += NR) {
    const __m256 b0 = _mm256_load_ps(p);
    const __m256 b1 = _mm256_load_ps(p + 8);
    const __m256 b2 = _mm256_load_ps(p + 16);
    __m256 a = _mm256_broadcast_ss(r0 + d);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    c02 = _mm256_fmadd_ps(a, b2, c02);
    a = _mm256_broadcast_ss(r1 + d);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    c12 = _mm256_fmadd_ps(a, b2, c12);
    a = _mm256_broadcast_ss(r2 + d);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    c22 = _mm256_fmadd_ps(a, b2, c22);
    a = _mm256_broadcast_ss(r3 + d);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
    c32 = _mm256_fmadd_ps(a, b2, c32);
  }
  const __m256 n0 = _mm256_load_ps(norm);
  const __m256 n1 = _mm256_load_ps(norm + 8);
  const __m256 n2 = _mm256_load_ps(norm + 16);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i i0 = _mm256_add_epi32(lane, _mm256_set1_epi32(base));
  const __m256i i1 = _mm256_add_epi32(i0, _mm256_set1_epi32(8));
  const __m256i i2 = _mm256_add_epi32(i0, _mm256_set1_epi32(16));
  avx2_update_row(bv, bi, c00, c01, c02, n0, n1, n2, i0, i1, i2);
  avx2_update_row(bv + LANES, bi + LANES, c10, c11, c12, n0, n1, n2, i0, i1, i2);
  avx2_update_row(bv + 2 * LANES, bi + 2 * LANES, c20, c21, c22, n0, n1, n2, i0, i1, i2);
  avx2_update_row(bv + 3 * LANES, bi + 3 * LANES, c30, c31, c32, n0, n1, n2, i0, i1, i2);
}
// AVX-512 counterpart of avx2_update_row: 48 new codewords, 16 lanes, masked blends.
__attribute__((target("avx512f"), always_inline)) inline void avx512_update_row(
    float* v, int32_t* ix, __m512 a0, __m512 a1, __m512 a2, __m512 n0, __m512 n1, __m512 n2,
    __m512i i0, __m512i i1, __m512i i2) {
  const __m512 m2 = _mm512_set1_ps(-2.f);
  __m512 best = _mm512_load_ps(v);
  __m512i bidx = _mm512_load_si512(ix);
  __m512 dist = _mm512_fmadd_ps(a0, m2, n0);
  __mmask16 lt = _mm512_cmp_ps_mask(dist, best, _CMP_LT_OQ);
  best = _mm512_mask_mov_ps(best, lt, dist);
  bidx = _mm512_mask_mov_epi32(bidx, lt, i0);
  dist = _mm512_fmadd_ps(a1, m2, n1);
  lt = _mm512_cmp_ps_mask(dist, best, _CMP_LT_OQ);
  best = _mm512_mask_mov_ps(best, lt, dist);
  bidx = _mm512_mask_mov_epi32(bidx, lt, i1);
  dist = _mm512_fmadd_ps(a2, m2, n2);
  lt = _mm512_cmp_ps_mask(dist, best, _CMP_LT_OQ);
  best = _mm512_mask_mov_ps(best, lt, dist);
  bidx = _mm512_mask_mov_epi32(bidx, lt, i2);
  _mm512_store_ps(v, best);
  _mm512_store_si512(ix, bidx);
}

constexpr int MR512 = 8, NR512 = 48, LANES512 = 16;

// 8 rows x 48 codewords: 24 accumulators, 3 panel loads and 8 broadcasts per d.
__attribute__((target("avx512f"))) static void micro_avx512(const float* r, int64_t ld,
                                                             const float* panel,
                                                             const float* norm, int64_t D,
                                                             int32_t base, float* bv,
                                                             int32_t* bi) {
  __m512 c[MR512][3];
  for (int i = 0; i < MR512; ++i) c[i][0] = c[i][1] = c[i][2] = _mm512_setzero_ps();
  const float* p = panel;
  for (int64_t d = 0; d < D; ++d, p += NR512) {
    const __m512 b0 = _mm512_load_ps(p);
    const __m512 b1 = _mm512_load_ps(p + 16);
    const __m512 b2 = _mm512_load_ps(p + 32);
#pragma GCC unroll 8
    for (int i = 0; i < MR512; ++i) {
      const __m512 a = _mm512_set1_ps(r[i * ld + d]);
      c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
      c[i][2] = _mm512_fmadd_ps(a, b2, c[i][2]);
    }
  }
  const __m512 n0 = _mm512_load_ps(norm);
  const __m512 n1 = _mm512_load_ps(norm + 16);
  const __m512 n2 = _mm512_load_ps(norm + 32);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i i0 = _mm512_add_epi32(lane, _mm512_set1_epi32(base));
  const __m512i i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(16));
  const __m512i i2 = _mm512_add_epi32(i0, _mm512_set1_epi32(32));
  for (int i = 0; i < MR512; ++i)
    avx512_update_row(bv + i * LANES512, bi + i * LANES512, c[i][0], c[i][1], c[i][2], n0, n1,
                      n2, i0, i1, i2);
}
#endif

enum Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

inline bool cpu_has_avx2_fma() {
#ifdef NCODEC_RVQ_X86
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

inline bool cpu_has_avx512f() {
#ifdef NCODEC_RVQ_X86
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

// The best micro-kernel this CPU runs, capped at `isa`.
inline Kernel pick_kernel(int isa) {
#ifdef NCODEC_RVQ_X86
  if (isa >= kAvx512 && cpu_has_avx512f()) return {micro_avx512, MR512, NR512, LANES512, "avx512f"};
  if (isa >= kAvx2 && cpu_has_avx2_fma()) return {micro_avx2, MR, NR, LANES, "avx2+fma"};
#endif
  (void)isa;
  return {micro_generic, MR, NR, LANES, "generic"};
}

// Run fn(task) for task in [0, n_tasks) on up to n_threads threads (the caller included).
template <typename F>
void run_parallel(int64_t n_tasks, int n_threads, const F& fn) {
  n_threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_threads, n_tasks)));
  if (n_threads == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  std::atomic<int64_t> next{0};
  auto worker = [&]() {
    for (int64_t t = next.fetch_add(1); t < n_tasks; t = next.fetch_add(1)) fn(t);
  };
  std::vector<std::thread> pool;
  pool.reserve(n_threads - 1);
  for (int i = 0; i < n_threads - 1; ++i) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
}

// Encode x [N, D] with codebooks [S, K, D] (both contiguous fp32) into codes [N, S] (int64).
// Requires N >= 0, S, K, D > 0, K < 2^31. Never reads or writes outside these arrays.
void encode(const float* x, int64_t N, int64_t D, const float* cb, int64_t S, int64_t K,
            int64_t* codes, int n_threads, int isa) {
  if (N <= 0 || S <= 0 || K <= 0 || D <= 0) return;
  const Kernel kern = pick_kernel(isa);
  const int nr = kern.nr, mr = kern.mr, lanes = kern.lanes;
  const int64_t P = (K + nr - 1) / nr;  // panels per stage
  const int64_t panel_floats = D * nr;

  // Pack: panels[(s * P + p) * D * nr + d * nr + j] = cb[s, p * nr + j, d] (0 for padding),
  // norms[(s * P + p) * nr + j] = ||cb[s, p * nr + j]||^2 (+inf for padding).
  FloatBuf panels(static_cast<size_t>(S * P * panel_floats));
  FloatBuf norms(static_cast<size_t>(S * P * nr));
  const float inf = std::numeric_limits<float>::infinity();
  run_parallel(S * P, n_threads, [&](int64_t sp) {
    const int64_t s = sp / P, p = sp % P;
    float* dst = panels.p + sp * panel_floats;
    float* nrm = norms.p + sp * nr;
    for (int j = 0; j < nr; ++j) {
      const int64_t k = p * nr + j;
      if (k < K) {
        const float* c = cb + (s * K + k) * D;
        float acc = 0.f;
        for (int64_t d = 0; d < D; ++d) {
          dst[d * nr + j] = c[d];
          acc += c[d] * c[d];
        }
        nrm[j] = acc;
      } else {
        for (int64_t d = 0; d < D; ++d) dst[d * nr + j] = 0.f;
        nrm[j] = inf;
      }
    }
  });

  const int64_t n_blocks = (N + MB - 1) / MB;
  // Enough work per thread to amortise a thread start (~tens of microseconds).
  const double flops = 2.0 * static_cast<double>(N) * S * K * D;
  if (flops < 4e7) n_threads = 1;

  run_parallel(n_blocks, n_threads, [&](int64_t blk) {
    thread_local std::vector<float> rbuf_v, bv_v;
    thread_local std::vector<int32_t> bi_v;
    // 64-byte aligned views into thread-local storage (reused across calls).
    rbuf_v.resize(static_cast<size_t>(MB * D + 16));
    bv_v.resize(MB * MAX_LANES + 16);
    bi_v.resize(MB * MAX_LANES + 16);
    auto align = [](auto* ptr) {
      uintptr_t a = reinterpret_cast<uintptr_t>(ptr);
      return reinterpret_cast<decltype(ptr)>((a + 63) & ~uintptr_t(63));
    };
    float* rbuf = align(rbuf_v.data());
    float* bv = align(bv_v.data());
    int32_t* bi = align(bi_v.data());

    const int64_t row0 = blk * MB;
    const int64_t rows = std::min<int64_t>(MB, N - row0);
    const int64_t mrows = (rows + mr - 1) / mr * mr;
    std::memcpy(rbuf, x + row0 * D, static_cast<size_t>(rows * D) * sizeof(float));
    if (mrows > rows)
      std::memset(rbuf + rows * D, 0, static_cast<size_t>((mrows - rows) * D) * sizeof(float));

    for (int64_t s = 0; s < S; ++s) {
      for (int64_t i = 0; i < mrows * lanes; ++i) {
        bv[i] = inf;
        bi[i] = 0;
      }
      const float* sp = panels.p + s * P * panel_floats;
      const float* sn = norms.p + s * P * nr;
      for (int64_t p = 0; p < P; ++p) {
        const float* panel = sp + p * panel_floats;
        const float* nrm = sn + p * nr;
        const int32_t base = static_cast<int32_t>(p * nr);
        for (int64_t i = 0; i < mrows; i += mr)
          kern.fn(rbuf + i * D, D, panel, nrm, D, base, bv + i * lanes, bi + i * lanes);
      }
      const float* cs = cb + s * K * D;
      for (int64_t i = 0; i < rows; ++i) {
        float best = bv[i * lanes];
        int32_t idx = bi[i * lanes];
        for (int l = 1; l < lanes; ++l) {
          const float v = bv[i * lanes + l];
          const int32_t c = bi[i * lanes + l];
          if (v < best || (v == best && c < idx)) {
            best = v;
            idx = c;
          }
        }
        if (idx < 0 || idx >= K) idx = 0;  // unreachable; keeps the read below in bounds
        codes[(row0 + i) * S + s] = idx;
        float* r = rbuf + i * D;
        const float* c = cs + static_cast<int64_t>(idx) * D;
        for (int64_t d = 0; d < D; ++d) r[d] -= c[d];
      }
    }
  });
}

// Which micro-kernel `encode` uses for `isa` on this machine.
std::string isa_name(int isa) { return pick_kernel(isa).name; }

// ISA cap requested by the environment: NCODEC_RVQ_ISA=generic or avx2 (default: the best).
int env_isa() {
  const char* e = std::getenv("NCODEC_RVQ_ISA");
  if (e != nullptr && std::strcmp(e, "generic") == 0) return kGeneric;
  if (e != nullptr && std::strcmp(e, "avx2") == 0) return kAvx2;
  return kAvx512;
}

}  // namespace ncodec_rvq

#ifndef NCODEC_RVQ_STANDALONE
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

namespace {

at::Tensor rvq_encode_cpu(const at::Tensor& x, const at::Tensor& codebooks) {
  TORCH_CHECK(x.device().is_cpu() && codebooks.device().is_cpu(),
              "rvq_encode_cpu: x and codebooks must be CPU tensors");
  TORCH_CHECK(x.scalar_type() == at::kFloat && codebooks.scalar_type() == at::kFloat,
              "rvq_encode_cpu: x and codebooks must be float32");
  TORCH_CHECK(x.dim() == 2, "rvq_encode_cpu: x must be [N, D], got ", x.dim(), " dims");
  TORCH_CHECK(codebooks.dim() == 3, "rvq_encode_cpu: codebooks must be [S, K, D], got ",
              codebooks.dim(), " dims");
  TORCH_CHECK(x.is_contiguous() && codebooks.is_contiguous(),
              "rvq_encode_cpu: x and codebooks must be contiguous");
  const int64_t N = x.size(0), D = x.size(1);
  const int64_t S = codebooks.size(0), K = codebooks.size(1);
  TORCH_CHECK(S > 0 && K > 0 && D > 0, "rvq_encode_cpu: S, K and D must be positive (S=", S,
              ", K=", K, ", D=", D, ")");
  TORCH_CHECK(K <= 65535, "rvq_encode_cpu: K must be <= 65535, got ", K);
  TORCH_CHECK(codebooks.size(2) == D, "rvq_encode_cpu: codebook dim ", codebooks.size(2),
              " != x dim ", D);
  at::Tensor codes = at::empty({N, S}, x.options().dtype(at::kLong));
  if (N == 0) return codes;
  ncodec_rvq::encode(x.data_ptr<float>(), N, D, codebooks.data_ptr<float>(), S, K,
                     codes.data_ptr<int64_t>(), at::get_num_threads(), ncodec_rvq::env_isa());
  return codes;
}

std::string rvq_cpu_isa() { return ncodec_rvq::isa_name(ncodec_rvq::env_isa()); }

}  // namespace

TORCH_LIBRARY(ncodec, m) {
  m.def("rvq_encode_cpu(Tensor x, Tensor codebooks) -> Tensor");
  m.def("rvq_cpu_isa() -> str", &rvq_cpu_isa);
}

TORCH_LIBRARY_IMPL(ncodec, CPU, m) { m.impl("rvq_encode_cpu", &rvq_encode_cpu); }
#endif
