// The forward pass of the Llama family on the CPU, over a batch of rows from one or more sequences; the CUDA one,
// with the same interface, is backend/cuda/cuda_forward.h.
#pragma once
#include <memory>
#include <vector>

#include "backend/forward.h"
#include "backend/kv_layout.h"
#include "backend/kv_pages.h"
#include "core/host_memory.h"
#include "model/model.h"

namespace bq {

// Keys and values of one sequence, fp32, in pages (kv_layout.h, kv_pages.h).
struct KVCache {
  int capacity = 0;
  int length = 0;  // positions filled
  int kv_dim = 0;
  KvShape shape;
  std::vector<KvLayer> layers;
  using Table = KvPageTable<float, tracked_vector<float>>;
  using Page = Table::Page;
  Table pages;

  KVCache(const ModelConfig& c, int capacity);
  float* key(int l, int pos) const { return kv_key(pages.data(), layers[size_t(l)], pos, capacity, kv_dim); }
  float* value(int l, int pos) const { return kv_value(pages.data(), layers[size_t(l)], pos, capacity, kv_dim); }
};

// Elements (fp32) of each activation buffer CpuForward::run holds for a step of `rows` rows, `logit_rows` of them
// with logits: run() allocates exactly these, and the memory planner adds them up.
struct CpuStepSizes {
  size_t cos = 0, sin = 0, local_cos = 0, local_sin = 0, x = 0, xn = 0, q = 0, k = 0, v = 0, att = 0, proj = 0,
         gate = 0, up = 0, last = 0;
  size_t bytes() const {
    return (cos + sin + local_cos + local_sin + x + xn + q + k + v + att + proj + gate + up + last) * sizeof(float);
  }
};
CpuStepSizes cpu_step_sizes(const ModelConfig& c, int64_t rows, int64_t logit_rows);
// Per-thread scratch of one row's attention over n_positions: its scores (fp32) and the rows it reads.
size_t cpu_attention_scratch_bytes(const ModelConfig& c, int n_positions);

// Host bytes of the weights as a loaded (and possibly quantized) model uses them: embeddings and 16-bit linears where
// they are stored (mapped or owned), fp32 norms and biases, quantized matrices (from their capacities), lm_head
// unless it is the embeddings. Stored tensors the model no longer reads (linears it quantized from, the 16-bit
// norms) are not counted: quantize_model releases the mapped ones.
size_t model_host_bytes(const Model& m);

class CpuForward : public ForwardBackend {
 public:
  explicit CpuForward(const Model& m);
  int open_sequence(int capacity) override;
  void close_sequence(int id) override;
  int sequence_length(int id) const override;
  void run(const ForwardBatch& b, float* logits) override;
  bool copy_prefix(int from, int to, int positions) override;
  void set_kv_cache_limit(size_t bytes) override { kv_limit_ = bytes; }
  const ModelConfig& config() const override { return m_.cfg; }
  // Weights as model_host_bytes counts them; the allocator peak is the host-memory account's.
  MemoryFigures memory() const override;

 private:
  void run_pass(const ForwardBatch& b, float* logits);  // run() of a batch within max_sequence_rows_per_pass
  void make_page(KVCache& cache, int entry);
  // The pages the rows of b write to, made before any of b's passes (a page past the limit then changes nothing).
  void make_pages(const ForwardBatch& b, const std::vector<int>& pos);
  const Model& m_;
  host_memory::Hold weights_;  // the model's buffers in the host-memory account while this backend uses them
  std::vector<float> inv_freq_;  // fp32, as the reference computes RoPE angles
  std::vector<float> local_inv_freq_;  // the sliding layers' (gemma3), else equal to inv_freq_
  std::vector<std::unique_ptr<KVCache>> caches_;  // by sequence id; null when closed
  std::shared_ptr<KvPageAccount> kv_account_ = std::make_shared<KvPageAccount>();
  size_t kv_limit_ = 0;
};

}  // namespace bq
