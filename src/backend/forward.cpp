#include "backend/forward.h"

#include <cmath>

namespace bq {

void ForwardBackend::run_greedy(const ForwardBatch& b, int32_t* next) {
  const size_t V = size_t(config().vocab);
  if (greedy_logits_.size() < b.logit_rows.size() * V) greedy_logits_.resize(b.logit_rows.size() * V);
  run(b, greedy_logits_.data());
  for (size_t r = 0; r < b.logit_rows.size(); ++r) {
    const float* row = greedy_logits_.data() + r * V;
    int32_t best = 0;
    for (size_t i = 0; i < V && best >= 0; ++i) {
      if (!std::isfinite(row[i])) best = -1;
      else if (row[i] > row[best]) best = int32_t(i);  // strictly greater: the first maximum, as torch does
    }
    next[r] = best;
  }
}

}  // namespace bq
