// How a sequence's KV cache is laid out, for the CPU and CUDA backends and the memory planner alike: in pages of
// kKvPageSlots slots, each holding those slots of every layer of one kind, keys then values. A layer attending over
// the whole sequence keeps every position (position p in slot p); a sliding-window layer (gemma3, mistral) keeps a
// ring of the window plus the rows one pass may add to the sequence, position p in slot p mod ring. A pass then
// takes at most kSlidingPassRows rows of one sequence, so that none of its rows overwrites a key that another row of
// the same pass still reads (the keys a pass reads and writes span window + rows - 1 < ring positions).
//
// A sequence's page table lists its full layers' pages, then its sliding layers' pages. A page is allocated when a
// position is first written to it, so a sequence holds the pages its length needs, not those of its capacity; and
// the pages of a prompt prefix two sequences share are held once (kv_prefix_pages).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/host_device.h"
#include "model/config.h"

namespace bq {

// As many rows as a CUDA pass holds at least (kMinRowsPerPass): a smaller bound would cut prompts into more passes,
// and a quantized model dequantizes every weight tile once per pass (with 256, MedGemma-27B's nf4 prefill on the
// H200 ran at 1,580 tok/s for 512-token prompts).
constexpr int kSlidingPassRows = 1024;
// Slots per page: the tile of the prompt attention and the chunk unit of the decode attention (cuda/layout.h), so
// that neither crosses a page within a tile; at most 63 slots of a sequence's last page go unused.
constexpr int kKvPageSlots = 64;

BQ_HOST_DEVICE inline int kv_pages_for(int slots) { return (slots + kKvPageSlots - 1) / kKvPageSlots; }

// The layers one cache holds (a pipeline stage's, or all): how many of each kind, and the sliding layers' ring.
struct KvShape {
  int full_layers = 0, sliding_layers = 0;
  int ring = 0;  // the model's sliding layers' ring (window + kSlidingPassRows, in whole pages); 0: it has none

  BQ_HOST_DEVICE int ring_slots(int capacity) const { return ring > 0 && ring < capacity ? ring : capacity; }
  BQ_HOST_DEVICE int full_pages(int capacity) const { return full_layers > 0 ? kv_pages_for(capacity) : 0; }
  BQ_HOST_DEVICE int sliding_pages(int capacity) const {
    return sliding_layers > 0 ? kv_pages_for(ring_slots(capacity)) : 0;
  }
  // Entries of the page table of a sequence of `capacity` positions.
  BQ_HOST_DEVICE int table_pages(int capacity) const { return full_pages(capacity) + sliding_pages(capacity); }
  // Elements (× kv_dim) of one page of a kind: keys and values of kKvPageSlots slots of each of its layers.
  int64_t page_rows(bool sliding) const { return int64_t(2) * (sliding ? sliding_layers : full_layers) * kKvPageSlots; }
  // The same for the page at table entry `entry` of a sequence of `capacity` (full pages come first).
  int64_t entry_rows(int entry, int capacity) const { return page_rows(entry >= full_pages(capacity)); }
  // Positions (× kv_dim for K or V) the pages of `capacity` hold over all layers: what a full sequence takes.
  int64_t positions(int capacity) const {
    return int64_t(full_layers) * full_pages(capacity) * kKvPageSlots +
           int64_t(sliding_layers) * sliding_pages(capacity) * kKvPageSlots;
  }
};

// One layer's place in a cache: its kind and index among the cache's layers of that kind.
struct KvLayer {
  KvShape shape;
  int index = 0;
  bool sliding = false;

  BQ_HOST_DEVICE int slots(int capacity) const { return sliding ? shape.ring_slots(capacity) : capacity; }
  BQ_HOST_DEVICE int slot(int pos, int capacity) const {
    const int s = slots(capacity);
    return pos < s ? pos : pos % s;
  }
  // The page table entry holding slot `slot`.
  BQ_HOST_DEVICE int table_index(int slot, int capacity) const {
    return (sliding ? shape.full_pages(capacity) : 0) + slot / kKvPageSlots;
  }
  // Rows (× kv_dim) into that page where this layer's key and value of the slot are.
  BQ_HOST_DEVICE int64_t key_row(int slot) const { return int64_t(index) * kKvPageSlots + slot % kKvPageSlots; }
  BQ_HOST_DEVICE int64_t value_row(int slot) const {
    const int kind_layers = sliding ? shape.sliding_layers : shape.full_layers;
    return int64_t(kind_layers + index) * kKvPageSlots + slot % kKvPageSlots;
  }
};

// The key and the value of position `pos` of a layer, through a sequence's page table (rows of kv_dim elements).
template <class T>
BQ_HOST_DEVICE T* kv_key(T* const* pages, const KvLayer& l, int pos, int capacity, int kv_dim) {
  const int s = l.slot(pos, capacity);
  return pages[l.table_index(s, capacity)] + l.key_row(s) * kv_dim;
}
template <class T>
BQ_HOST_DEVICE T* kv_value(T* const* pages, const KvLayer& l, int pos, int capacity, int kv_dim) {
  const int s = l.slot(pos, capacity);
  return pages[l.table_index(s, capacity)] + l.value_row(s) * kv_dim;
}

// The cache of layers [first_layer, end_layer), and layer `layer` (the model's numbering) of it.
KvShape kv_shape(const ModelConfig& c, int first_layer, int end_layer);
KvLayer kv_layer(const ModelConfig& c, int first_layer, int end_layer, int layer);
// The page table entries that writing position `pos` touches: one per kind of layer the cache holds.
std::vector<int> kv_pages_written(const KvShape& s, int pos, int capacity);
// Positions a cache of `capacity` holds over layers [first_layer, end_layer) when all its pages are written
// (× kv_dim per K or V).
int64_t kv_positions(const ModelConfig& c, int first_layer, int end_layer, int capacity);
// The most rows of one sequence that one pass may hold: kSlidingPassRows with sliding layers, else no limit.
int max_sequence_rows_per_pass(const ModelConfig& c);

// What copy_prefix does to give a sequence of dst_capacity the first `positions` positions of a sequence holding
// src_length of src_capacity. Both put a position the prefix needs in the same slot (a ring that could differ has
// wrapped past the prefix), so pages go by table entry: the full layers' pages wholly inside the prefix are shared
// (neither sequence writes them again), the pages of the rest of the prefix are copied whole (the destination
// writes its next positions into them; a source ring page is written again as the source goes on). Sliding pages
// are those holding the prefix's last window. `possible` false where the source's ring has already overwritten some
// of those (the caller then computes the prefix instead).
struct KvPrefixPages {
  bool possible = true;
  int shared = 0;                  // full pages [0, shared) of both tables are the same pages
  std::vector<int> src_copied;     // entries of the source's table copied whole ...
  std::vector<int> dst_copied;     // ... to these entries of the destination's
};
KvPrefixPages kv_prefix_pages(const ModelConfig& c, const KvShape& s, int src_length, int src_capacity,
                              int dst_capacity, int positions);

}  // namespace bq
