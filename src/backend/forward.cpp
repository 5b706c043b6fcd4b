#include "backend/forward.h"

#include <cmath>

#include "core/error.h"

namespace bq {

std::vector<int> row_positions(const ForwardBatch& b, const std::vector<CacheFill>& caches, int vocab) {
  if (b.seq.size() != b.tokens.size()) fail("forward: tokens and seq differ in length");
  const size_t R = b.tokens.size();
  std::vector<int> pos(R), next(caches.size());
  for (size_t s = 0; s < caches.size(); ++s) next[s] = caches[s].length;
  for (size_t r = 0; r < R; ++r) {
    const int s = b.seq[r];
    if (s < 0 || size_t(s) >= caches.size() || !caches[size_t(s)].open)
      fail("forward: row {} names no open sequence ({})", r, s);
    if (next[size_t(s)] >= caches[size_t(s)].capacity)
      fail("forward: sequence {} is full ({} positions)", s, caches[size_t(s)].capacity);
    const int32_t t = b.tokens[r];
    if (t < 0 || t >= vocab) fail("token id {} outside the vocabulary of {}", t, vocab);
    pos[r] = next[size_t(s)]++;
  }
  for (int r : b.logit_rows)
    if (r < 0 || size_t(r) >= R) fail("forward: logit row {} outside the batch of {}", r, R);
  return pos;
}

int pass_end(const ForwardBatch& b, int r0, int max_rows, int max_per_sequence) {
  const int R = int(b.tokens.size());
  int r = r0, run = 0;
  for (; r < R && r - r0 < max_rows; ++r) {
    run = r > r0 && b.seq[size_t(r)] == b.seq[size_t(r - 1)] ? run + 1 : 1;
    if (run > max_per_sequence) break;
  }
  return r;
}

void check_prefix_copy(const CacheFill& from, const CacheFill& to, int from_id, int to_id, int positions) {
  if (!from.open || !to.open) fail("copy_prefix: sequence {} is not open", !from.open ? from_id : to_id);
  if (from_id == to_id) fail("copy_prefix: sequence {} onto itself", from_id);
  if (to.length != 0) fail("copy_prefix: sequence {} already holds {} positions", to_id, to.length);
  if (positions < 1 || positions > from.length || positions > to.capacity)
    fail("copy_prefix: {} positions from sequence {} (holding {}) into sequence {} (room for {})", positions, from_id,
         from.length, to_id, to.capacity);
}

bool ForwardBackend::copy_prefix(int, int, int) { return false; }

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
