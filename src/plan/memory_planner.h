// `biomedq plan`: the memory a model takes at a precision, context and batch on the CUDA or the CPU backend,
// broken down into what the backend allocates. It adds up the sizes the backends allocate by (cuda/layout.h,
// cpu_step_sizes, weight_memory, the kernels' scratch sizes), so its allocator total is the peak that `bench` and
// `eval` report as allocator_peak_bytes for the same workload: B sequences of `prompt` tokens prefilled together,
// then decoded together up to `context` positions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/stages.h"
#include "model/config.h"
#include "model/quantize_model.h"
#include "quant/quant.h"

namespace bq::plan {

struct MemoryGroup {
  std::string name;  // embeddings, attention, mlp, norms, biases, lm_head, quantization constants
  int64_t params = 0;
  size_t bytes = 0;
};
struct WeightMemory {
  std::vector<MemoryGroup> groups;
  int64_t total_params = 0;
  size_t total_bytes = 0;
  // K and V per position, every layer; a sliding layer's stops growing at its ring (kv_cache_bytes counts that).
  size_t kv_bytes_per_token_cpu = 0;   // fp32
  size_t kv_bytes_per_token_cuda = 0;  // bf16
};
// K and V bytes of `batch` sequences of `context` positions at `value_bytes` per value (4 on the CPU, 2 on CUDA),
// sliding layers holding their ring (kv_layout.h); a pipeline stage's config (fewer layers) gets its share.
size_t kv_cache_bytes(const ModelConfig& c, int context, int batch, size_t value_bytes);
// The weights' part of every estimate (and `inspect`): bytes in the format the engine computes with, from shapes with
// the same size rules the loaders allocate by: stored dtype for 16/32-bit tensors, fp32 for norms and biases
// (converted at load), quant::quantized_bytes for quantized linears (packed codes under attention/mlp, the scales
// under "quantization constants"). lm_head tied to the embeddings counts 0.
WeightMemory weight_memory(const ModelConfig& c, const std::optional<quant::QuantOptions>& q);

// The precision options as every command that loads a model takes them, plus the workload.
struct PlanRequest : PrecisionOptions {
  ModelConfig config;
  std::string model_label;             // preset name or checkpoint folder, for outputs
  std::filesystem::path checkpoint;    // empty: a synthetic model of the preset (bf16 weights generated in memory)
  std::string device = "cuda";         // cuda | cpu
  int context = 0;                     // positions per sequence, prompt + generated (KV cache capacity); 0: 4096
                                       // or the model's limit if lower
  int prompt = 0;                      // prompt tokens per sequence, prefilled together; 0: the whole context
  int batch = 1;                       // sequences held and decoded together
  int max_step_tokens = 0;             // rows of one forward step at most (chunked prefill, as eval / serve's
                                       // --max-step-tokens); 0: no limit
  int devices = 1;                     // CUDA: layers split evenly over this many GPUs (per-device figures)
  std::vector<size_t> device_memory;   // CUDA: each GPU's memory; when given, the split is chosen to fit them
  int threads = 0;                     // CPU: OpenMP threads (per-thread scratch); 0: this process's
  bool batch_invariant = false;        // --batch-invariant's kernels (no dequantized tiles, no decode attention rows)
};

struct PlanItem {
  std::string category;  // weights | quantization constants | kv cache | activations | workspace | runtime
  std::string name;
  size_t bytes = 0;
  bool in_allocator = true;  // counted by the tracked allocator (false: CUDA context, an estimate)
};

struct CardFit {
  std::string card;
  size_t bytes = 0;
  bool fits = false;
  double headroom_bytes = 0;  // negative: short by that much
};

// One GPU's part of a split: a contiguous range of layers (and lm_head on the last), its figures and its memory.
struct DeviceShare {
  int first_layer = 0, layers = 0;
  bool lm_head = false;
  size_t allocator_bytes = 0, total_bytes = 0, capacity = 0;
};

struct MemoryEstimate {
  PlanRequest request;
  std::optional<quant::QuantOptions> quant;  // as the weights are held (a stored checkpoint's own format)
  std::string precision_label;
  int layers_per_device = 0;
  std::vector<PlanItem> items;
  size_t allocator_bytes = 0;  // expected allocator_peak_bytes (per device)
  size_t total_bytes = 0;      // allocator + what lies outside it: what a card must hold (per device)
  std::vector<CardFit> cards;
  std::vector<DeviceShare> split;  // with device_memory: every GPU's share (items and totals: the fullest one)
  std::vector<std::string> notes;
};

// Checks the request (bad values are a bq::Error naming the option) and estimates. With device_memory, the layers
// are split in order over the GPUs in proportion to what each can hold after its fixed costs (CUDA context,
// activation buffers, workspace; lm_head on the last), so that every GPU's spare room is used in about the same
// proportion; a model that no split fits is a bq::Error saying how much is needed and how much the GPUs hold.
MemoryEstimate plan_memory(PlanRequest r);

// The CUDA pipeline over `devices` (ids as listed, repeats allowed), each listing with free_bytes[i] of memory: the
// split of plan_memory(r) over those memories (a device listed k times gives each listing 1/k of its free bytes),
// one stage per listing that gets layers. One device: one stage of all layers, no planning. A model that does not
// fit is a bq::Error naming --devices.
std::vector<PipelineStage> plan_stages(PlanRequest r, const std::vector<int>& devices,
                                   const std::vector<size_t>& free_bytes);

// The CUDA pipeline for --devices TEXT ("0,1", "all", "0,0") and the model and workload of `r`: plan_stages over
// each listed device's free memory now. A bq::Error in a build without CUDA.
std::vector<PipelineStage> pipeline_stages_for(const std::string& devices, const PlanRequest& r);

// Cards the figures are compared with: nominal capacities of common GPUs (16, 24, 40, 48, 80 GiB; H200's 141 GB).
std::vector<std::pair<std::string, size_t>> common_cards();

// "40GB", "40GiB", "40G", "24576MiB", "40" (GiB): a GPU's memory as GPU vendors name it (GB as GiB, as the cards'
// nominal sizes are); anything else is a bq::Error naming `option`.
size_t parse_memory_size(const std::string& text, const std::string& option);

std::string format_bytes(double bytes);  // "1.23 GiB", "45.60 MiB", "7.0 KiB"
nlohmann::ordered_json to_json(const MemoryEstimate& e);
std::string format_plan(const MemoryEstimate& e);

}  // namespace bq::plan
