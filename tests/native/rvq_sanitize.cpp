// AddressSanitizer/UBSan driver for the torch-free core of codec/csrc/rvq_cpu.cpp.
// Built by tests/test_rvq_sanitizers.py with -DNCODEC_RVQ_STANDALONE -fsanitize=address,undefined.
// Each input and codebook lives in its own exactly-sized heap block, so any read or write past
// an array is reported. Codes are checked against a naive double-precision search (allowing
// near-ties). Prints "ok <cases>" and exits 0, or exits 1 on a wrong code.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

namespace ncodec_rvq {
void encode(const float* x, int64_t N, int64_t D, const float* cb, int64_t S, int64_t K,
            int64_t* codes, int n_threads, int isa);
}

static bool check(const std::vector<float>& x, const std::vector<float>& cb, const int64_t* codes,
                  int64_t N, int64_t D, int64_t S, int64_t K) {
  std::vector<double> r(D);
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t d = 0; d < D; ++d) r[d] = x[i * D + d];
    for (int64_t s = 0; s < S; ++s) {
      const int64_t got = codes[i * S + s];
      if (got < 0 || got >= K) return false;
      double best = INFINITY, got_dist = 0, norm = 0;
      for (int64_t k = 0; k < K; ++k) {
        double dist = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double diff = r[d] - cb[(s * K + k) * D + d];
          dist += diff * diff;
        }
        best = std::min(best, dist);
        if (k == got) got_dist = dist;
      }
      for (int64_t d = 0; d < D; ++d) norm += r[d] * r[d];
      if (got_dist - best > 1e-4 * (norm + best + 1.0)) return false;
      for (int64_t d = 0; d < D; ++d) r[d] -= cb[(s * K + got) * D + d];
    }
  }
  return true;
}

int main() {
  std::mt19937 gen(1234);
  std::normal_distribution<float> normal;
  const int64_t shapes[][4] = {{1, 1, 1, 1},   {3, 2, 5, 3},    {63, 3, 23, 7},  {64, 2, 24, 8},
                               {65, 4, 25, 9}, {130, 2, 49, 31}, {257, 3, 100, 128}, {5, 1, 1000, 2}};
  int cases = 0;
  for (const auto& sh : shapes) {
    const int64_t N = sh[0], S = sh[1], K = sh[2], D = sh[3];
    for (int isa = 0; isa < 3; ++isa) {
      for (int threads : {1, 3}) {
        std::vector<float> x(N * D), cb(S * K * D);
        for (auto& v : x) v = normal(gen);
        for (auto& v : cb) v = 0.7f * normal(gen);
        std::unique_ptr<int64_t[]> codes(new int64_t[N * S]);
        ncodec_rvq::encode(x.data(), N, D, cb.data(), S, K, codes.get(), threads, isa);
        if (!check(x, cb, codes.get(), N, D, S, K)) {
          std::printf("wrong code for N=%ld S=%ld K=%ld D=%ld isa=%d\n", (long)N, (long)S,
                      (long)K, (long)D, isa);
          return 1;
        }
        ++cases;
      }
    }
  }
  std::printf("ok %d\n", cases);
  return 0;
}
