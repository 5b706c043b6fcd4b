// The stages of a CudaForward in order, the open sequences' KV caches (bf16, each stage holding its layers'
// share), and a pass over them. KV cache in bf16: half the bytes of fp32 for every decode step and for long
// contexts, and the precision transformers itself keeps for bf16 models; scores and softmax stay fp32.
//
// Hand-off: stage s + 1 copies stage s's hidden states on its own stream after waiting for the event `ready` that
// s records behind its layers, then records `taken`, which s waits for before it writes its hidden states again
// (the next pass). With one stage none of this happens.
#pragma once
#include <memory>
#include <vector>

#include "backend/cuda/stage.h"
#include "backend/forward.h"
#include "backend/kv_pages.h"

namespace bq::cuda {

// A sequence's cache: per stage, its page table over the stage's layers (kv_layout.h), and the table's copy on the
// device that the kernels read (RowInfo::pages).
struct Sequence {
  using Table = KvPageTable<uint16_t, DeviceArray<uint16_t>>;
  int capacity = 0, length = 0;
  std::vector<Table> pages;
  std::vector<DeviceArray<uint16_t*>> device_table;
};

struct Pipeline {
  ModelConfig cfg;
  const Model* host = nullptr;  // embeddings looked up on the host; null for synthetic models
  std::vector<std::unique_ptr<Stage>> stages;
  std::vector<std::unique_ptr<Sequence>> seqs;  // by id; closed ones are null
  int last_logit_rows = 0;
  size_t kv_cache_peak = 0;  // the most bytes the open sequences' caches held at once (all stages)
  size_t kv_limit = 0;       // the most they may hold (0: no limit but the devices')
  bool use_graphs = true;

  // Creates the stages (none: one stage of all layers on the current device), without weights.
  void init(const ModelConfig& c, std::vector<PipelineStage> layout);
  Stage& last_stage() { return *stages.back(); }
  void synchronize();
  // One pass over the stages; returns the last stage's logits on its device ([logit_rows, vocab] fp32).
  const float* run(const ForwardBatch& b);
  // Entry `entry` of sequence s's table on stage si: a new page, from the device's pool on the stage's stream.
  void make_page(Sequence& s, size_t si, int entry);
  // Copies s's page table on stage si to the device (after pages were made or shared), on the stage's stream.
  void upload_table(Sequence& s, size_t si);
  size_t kv_cache_bytes() const;  // held now by the open sequences' pages, all stages

 private:
  void enable_peer_access();
};

}  // namespace bq::cuda
