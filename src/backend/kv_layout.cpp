#include "backend/kv_layout.h"

#include <algorithm>
#include <climits>

namespace bq {

KvLayer kv_layer(const ModelConfig& c, int first_layer, int layer) {
  KvLayer k;
  k.ring = c.sliding_layers.empty() ? 0 : c.sliding_window + kSlidingPassRows;
  k.sliding = c.is_sliding(layer);
  for (int l = first_layer; l < layer; ++l) (c.is_sliding(l) ? k.sliding_before : k.full_before) += 1;
  return k;
}

int64_t kv_positions(const ModelConfig& c, int first_layer, int end_layer, int capacity) {
  if (end_layer <= first_layer) return 0;
  const KvLayer last = kv_layer(c, first_layer, end_layer - 1);
  return last.offset(capacity) + last.slots(capacity);
}

int max_sequence_rows_per_pass(const ModelConfig& c) { return c.sliding_layers.empty() ? INT_MAX : kSlidingPassRows; }

std::vector<KvSlotCopy> kv_prefix_copies(const ModelConfig& c, const KvLayer& l, int src_length, int src_capacity,
                                         int dst_capacity, int positions, bool& possible) {
  std::vector<KvSlotCopy> out;
  possible = true;
  // Rows from `positions` on read keys from positions - window + 1 on (sliding), or from 0.
  const int first = l.sliding ? std::max(0, positions - c.sliding_window) : 0;
  // The source's slot of position p still holds p while no later position has taken it.
  if (first < src_length - l.slots(src_capacity)) {
    possible = false;
    return out;
  }
  const int src_slots = l.slots(src_capacity), dst_slots = l.slots(dst_capacity);
  for (int p = first; p < positions;) {
    const int s = l.slot(p, src_capacity), d = l.slot(p, dst_capacity);
    const int n = std::min({positions - p, src_slots - s, dst_slots - d});
    out.push_back({s, d, n});
    p += n;
  }
  return out;
}

}  // namespace bq
