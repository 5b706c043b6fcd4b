// The forward pass on CUDA devices: the same math as CpuForward, with weights (bf16 or a quantized format) and
// the KV cache on the device. A model too large for one GPU is split by layers into a pipeline of stages
// (backend/stages.h), each with its layers, their KV cache and its own stream and buffers; the hidden states
// pass from stage to stage, the last also holds the final norm and lm_head. Plain C++ header: usable from code
// compiled without nvcc.
#pragma once
#include <memory>
#include <optional>
#include <vector>

#include "backend/stages.h"
#include "backend/forward.h"
#include "model/model.h"
#include "quant/quant.h"

namespace bq {

namespace cuda {
struct Pipeline;
}

class CudaForward : public ForwardBackend {
 public:
  // Uploads the model: 16-bit weights as bf16 (F16/F32 checkpoints are converted to bf16), quantized linears
  // (Linear::q) in their packed formats, lm_head bf16. Embeddings stay in host memory (only looked up).
  // The model must outlive this object. No stages: one stage of all layers on the current device.
  explicit CudaForward(const Model& m, std::vector<PipelineStage> stages = {});
  // Random weights drawn on the device (never on the CPU): bf16 normal(0, 0.02), or random codes and scales in
  // the layout of `quant`. For benchmarks of real shapes; the embedding rows are hashed on the fly. The weights of
  // a layer do not depend on the stages.
  static std::unique_ptr<CudaForward> synthetic(const ModelConfig& c, const std::optional<quant::QuantOptions>& quant,
                                                uint64_t seed, std::vector<PipelineStage> stages = {});
  ~CudaForward() override;

  int open_sequence(int capacity) override;
  void close_sequence(int id) override;
  int sequence_length(int id) const override;
  bool copy_prefix(int from, int to, int positions) override;
  void set_kv_cache_limit(size_t bytes) override;
  void run(const ForwardBatch& b, float* logits) override;  // logits copied to host
  void run_greedy(const ForwardBatch& b, int32_t* next) override;  // argmax on the device; only ids are copied
  const ModelConfig& config() const override;
  // The tracked allocator's and each device's own figures (CUDA context included), per stage for a pipeline.
  MemoryFigures memory() const override;

  // Runs a step and leaves the logits on the last stage's device: [logit_rows, vocab] fp32, valid until the next
  // step.
  const float* run_device(const ForwardBatch& b);
  void synchronize();  // every stage
  // Decode steps (every row a logit row, at most 64 rows) replay a captured CUDA graph per stage; on by default.
  void set_use_graphs(bool on);

  // Totals over the stages:
  size_t weight_bytes() const;       // device bytes of all weights (decoder linears, norms, lm_head)
  size_t step_weight_bytes() const;  // bytes one decode step must read: decoder linears + lm_head
  size_t kv_cache_bytes() const;     // held now by open sequences

  struct StageInfo {
    int device = 0, first_layer = 0, end_layer = 0;
    size_t weight_bytes = 0;    // its layers (and, on the last stage, the final norm and lm_head)
    size_t kv_cache_bytes = 0;  // its layers' share of the open sequences' caches
  };
  std::vector<StageInfo> stages() const;

 private:
  CudaForward();
  std::unique_ptr<cuda::Pipeline> p_;
};

}  // namespace bq
