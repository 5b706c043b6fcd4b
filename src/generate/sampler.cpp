#include "generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace bq {

[[noreturn]] static void non_finite(std::span<const float> v, size_t i) {
  fail("logit {} of {} is {}: the model's output is not finite (NaN or inf in the checkpoint's weights, or a "
       "config.json value such as rope_theta or rms_norm_eps that makes it so)",
       i, v.size(), v[i]);
}

int32_t argmax(std::span<const float> v) {
  size_t best = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) non_finite(v, i);
    if (v[i] > v[best]) best = i;  // strictly greater: the first maximum on ties, as torch does
  }
  return int32_t(best);
}

int32_t Sampler::next(std::span<const float> logits) {
  if (opt_.temperature <= 0.0f) return argmax(logits);
  for (size_t i = 0; i < logits.size(); ++i)  // NaN would also break the sort's ordering
    if (!std::isfinite(logits[i])) non_finite(logits, i);
  // Candidates sorted by logit; keep top-k, then the smallest prefix whose probability reaches top-p.
  std::vector<int32_t> idx(logits.size());
  std::iota(idx.begin(), idx.end(), 0);
  size_t k = opt_.top_k > 0 ? std::min(size_t(opt_.top_k), idx.size()) : idx.size();
  auto by_logit = [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + long(k), idx.end(), by_logit);
  idx.resize(k);
  std::vector<double> p(k);
  double mx = logits[size_t(idx[0])], sum = 0;
  for (size_t i = 0; i < k; ++i) sum += p[i] = std::exp((double(logits[size_t(idx[i])]) - mx) / opt_.temperature);
  size_t keep = k;
  if (opt_.top_p < 1.0f) {
    double acc = 0;
    for (size_t i = 0; i < k; ++i) {
      acc += p[i] / sum;
      if (acc >= opt_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double total = std::accumulate(p.begin(), p.begin() + long(keep), 0.0);
  double u = std::uniform_real_distribution<double>(0.0, total)(rng_);
  for (size_t i = 0; i < keep; ++i) {
    if (u < p[i]) return idx[i];
    u -= p[i];
  }
  return idx[keep - 1];
}

}  // namespace bq
