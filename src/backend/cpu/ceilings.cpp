#include "backend/cpu/ceilings.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <vector>

namespace bq::cpu {

namespace {

template <typename F>
double best_seconds(F&& f) {
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

double measure_copy_gbs() {
  const size_t n = size_t(256) << 20;
  std::vector<char> a(n, 1), b(n, 2);
  const double s = best_seconds([&] { std::memcpy(b.data(), a.data(), n); });
  volatile char keep = b[n / 2];  // the copy is observable
  (void)keep;
  return 2.0 * double(n) / s / 1e9;
}

double measure_gemm_tflops() {
  const int n = 2048;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> a(size_t(n) * n), b(size_t(n) * n), c(size_t(n) * n);
  for (auto* v : {&a, &b})
    for (float& x : *v) x = u(rng);
  const double s = best_seconds([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  });
  return 2.0 * double(n) * n * n / s / 1e12;
}

}  // namespace bq::cpu
