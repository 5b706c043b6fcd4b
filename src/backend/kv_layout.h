// How a sequence's KV cache is laid out, layer after layer, for the CPU and CUDA backends and the memory planner
// alike. A layer attending over the whole sequence keeps every position; a sliding-window layer (gemma3, mistral)
// keeps a ring of the window plus the rows one pass may add to the sequence, position p in slot p mod ring. A pass
// then takes at most kSlidingPassRows rows of one sequence, so that none of its rows overwrites a key that another
// row of the same pass still reads (the keys a pass reads and writes span window + rows - 1 < ring positions).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/host_device.h"
#include "model/config.h"

namespace bq {

// As many rows as a CUDA pass holds anyway (kMaxRowsPerPass): a smaller bound would cut prompts into more passes,
// and a quantized model dequantizes every weight tile once per pass (with 256, MedGemma-27B's nf4 prefill on the
// H200 ran at 1,580 tok/s for 512-token prompts).
constexpr int kSlidingPassRows = 1024;

// One layer's place in a cache of `capacity` positions holding a run of layers (a pipeline stage's, or all).
struct KvLayer {
  int full_before = 0, sliding_before = 0;  // layers of each kind laid out before this one
  int ring = 0;          // the model's sliding layers' ring (window + kSlidingPassRows); 0: it has none
  bool sliding = false;  // this layer is one of them

  BQ_HOST_DEVICE int ring_slots(int capacity) const { return ring > 0 && ring < capacity ? ring : capacity; }
  // Positions the layer holds: all of them, or the ring where that is smaller.
  BQ_HOST_DEVICE int slots(int capacity) const { return sliding ? ring_slots(capacity) : capacity; }
  // Where the layer starts, in positions (× kv_dim for elements).
  BQ_HOST_DEVICE int64_t offset(int capacity) const {
    return int64_t(full_before) * capacity + int64_t(sliding_before) * ring_slots(capacity);
  }
  BQ_HOST_DEVICE int slot(int pos, int capacity) const {
    const int s = slots(capacity);
    return pos < s ? pos : pos % s;
  }
};

// Layer `layer` (the model's numbering) of a cache that holds layers [first_layer, ...).
KvLayer kv_layer(const ModelConfig& c, int first_layer, int layer);
// Positions a cache of `capacity` holds over layers [first_layer, end_layer) (× kv_dim per K or V).
int64_t kv_positions(const ModelConfig& c, int first_layer, int end_layer, int capacity);
// The most rows of one sequence that one pass may hold: kSlidingPassRows with sliding layers, else no limit.
int max_sequence_rows_per_pass(const ModelConfig& c);

// A run of positions copied from one cache's layer to another's: `count` slots from src_slot to dst_slot.
struct KvSlotCopy {
  int src_slot, dst_slot, count;
};
// What copy_prefix copies of a layer to give a sequence of dst_capacity the first `positions` positions of a
// sequence holding src_length of src_capacity: all of them, or a sliding layer's last window. Empty with
// `possible` false where the source's ring has already overwritten some of those (the caller then computes the
// prefix instead).
std::vector<KvSlotCopy> kv_prefix_copies(const ModelConfig& c, const KvLayer& l, int src_length, int src_capacity,
                                         int dst_capacity, int positions, bool& possible);

}  // namespace bq
