#include "backend/kv_layout.h"

#include <algorithm>
#include <climits>

namespace bq {

KvShape kv_shape(const ModelConfig& c, int first_layer, int end_layer) {
  KvShape s;
  if (!c.sliding_layers.empty()) s.ring = kv_pages_for(c.sliding_window + kSlidingPassRows) * kKvPageSlots;
  for (int l = first_layer; l < end_layer; ++l) (c.is_sliding(l) ? s.sliding_layers : s.full_layers) += 1;
  return s;
}

KvLayer kv_layer(const ModelConfig& c, int first_layer, int end_layer, int layer) {
  KvLayer k;
  k.shape = kv_shape(c, first_layer, end_layer);
  k.sliding = c.is_sliding(layer);
  for (int l = first_layer; l < layer; ++l) k.index += c.is_sliding(l) == k.sliding;
  return k;
}

std::vector<int> kv_pages_written(const KvShape& s, int pos, int capacity) {
  std::vector<int> out;
  if (s.full_layers > 0) out.push_back(pos / kKvPageSlots);
  if (s.sliding_layers > 0) {
    const int slots = s.ring_slots(capacity);
    out.push_back(s.full_pages(capacity) + pos % slots / kKvPageSlots);
  }
  return out;
}

int64_t kv_positions(const ModelConfig& c, int first_layer, int end_layer, int capacity) {
  return kv_shape(c, first_layer, end_layer).positions(capacity);
}

int max_sequence_rows_per_pass(const ModelConfig& c) { return c.sliding_layers.empty() ? INT_MAX : kSlidingPassRows; }

KvPrefixPages kv_prefix_pages(const ModelConfig& c, const KvShape& s, int src_length, int src_capacity,
                              int dst_capacity, int positions) {
  KvPrefixPages out;
  if (positions <= 0) return out;
  const int last = kv_pages_for(positions) - 1;  // the full layers' page holding the prefix's last position
  if (s.full_layers > 0) {
    out.shared = positions / kKvPageSlots;
    for (int j = out.shared; j <= last; ++j) out.src_copied.push_back(j), out.dst_copied.push_back(j);
  }
  if (s.sliding_layers == 0) return out;
  // Rows from `positions` on read keys from positions - window + 1 on; the source's slot of position p still holds
  // p while no later position has taken it.
  const int first = std::max(0, positions - c.sliding_window), src_slots = s.ring_slots(src_capacity);
  if (first < src_length - src_slots) {
    out.possible = false;
    return out;
  }
  const KvLayer any{s, 0, true};
  std::vector<int> pages;  // within the sliding kind
  for (int p = first; p < positions; ++p) {
    const int j = any.slot(p, src_capacity) / kKvPageSlots;
    if (std::find(pages.begin(), pages.end(), j) == pages.end()) pages.push_back(j);
  }
  for (int j : pages) {
    out.src_copied.push_back(s.full_pages(src_capacity) + j);
    out.dst_copied.push_back(s.full_pages(dst_capacity) + j);
  }
  return out;
}

}  // namespace bq
