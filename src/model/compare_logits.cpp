#include "model/compare_logits.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "io/safetensors.h"

namespace bq {

namespace {

// log-softmax in double (logits of quantized models differ in the last digits; fp32 cancellation would hide it).
void log_softmax(const float* x, int64_t n, std::vector<double>& out) {
  out.resize(size_t(n));
  double m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, double(x[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) - m);
  double lse = m + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = double(x[i]) - lse;
}

}  // namespace

LogitComparison compare_logits(const NpyArray& a, const NpyArray& b) {
  if (a.shape != b.shape) fail("compare-logits: shapes {} and {} differ", shape_str(a.shape), shape_str(b.shape));
  if (a.shape.empty() || a.shape.size() > 2) fail("compare-logits: expected [rows, vocab] logits, got {}", shape_str(a.shape));
  const int64_t rows = a.shape.size() == 2 ? a.shape[0] : 1, vocab = a.shape.back();
  if (rows <= 0 || vocab <= 0) fail("compare-logits: empty logits {}", shape_str(a.shape));
  for (size_t i = 0; i < a.data.size(); ++i)
    if (!std::isfinite(a.data[i]) || !std::isfinite(b.data[i]))
      fail("compare-logits: non-finite logit in row {}", int64_t(i) / vocab);
  LogitComparison r;
  r.rows = rows;
  std::vector<double> kl(static_cast<size_t>(rows)), la, lb;
  int64_t agree = 0;
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = a.data.data() + row * vocab;
    const float* y = b.data.data() + row * vocab;
    log_softmax(x, vocab, la);
    log_softmax(y, vocab, lb);
    double d = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      d += std::exp(la[size_t(i)]) * (la[size_t(i)] - lb[size_t(i)]);
      r.max_abs_diff = std::max(r.max_abs_diff, std::fabs(double(x[i]) - double(y[i])));
    }
    kl[size_t(row)] = std::max(0.0, d);  // rounding can leave a tiny negative for equal rows
    if (std::max_element(x, x + vocab) - x == std::max_element(y, y + vocab) - y) ++agree;
  }
  for (double v : kl) r.kl_mean += v;
  r.kl_mean /= double(rows);
  std::sort(kl.begin(), kl.end());
  r.kl_p99 = kl[size_t(std::ceil(0.99 * double(rows))) - 1];
  r.top1_agreement = double(agree) / double(rows);
  return r;
}

}  // namespace bq
