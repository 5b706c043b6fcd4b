// Offline quantization of a checkpoint folder into transformers + bitsandbytes' serialized layout, and the memory
// a model takes at a precision, computed from shapes with the same size rules the loaders allocate by.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"
#include "quant/quant.h"

namespace bq {

// Reads `in` (safetensors, single or sharded) one tensor at a time; every decoder linear weight is quantized as
// stored (phi3's fused tensors whole) and written with quant::to_bnb_tensors, everything else copied unchanged.
// Shards of at most shard_bytes (plus an index when more than one) are written atomically, config.json gains
// "quantization_config", and the other files of the folder (tokenizer, generation config) are copied.
void quantize_checkpoint(const std::filesystem::path& in, const std::filesystem::path& out,
                         const quant::QuantOptions& opt, size_t shard_bytes = size_t(2) << 30);

// The options a checkpoint was saved quantized with (config.json's bitsandbytes "quantization_config"; the 4-bit
// blocksize from layer 0's o_proj quant_state), or none for a 16/32-bit checkpoint. Reads no weights.
std::optional<quant::QuantOptions> checkpoint_quantization(const std::filesystem::path& dir);

struct MemoryGroup {
  std::string name;  // embeddings, attention, mlp, norms, biases, lm_head, quantization constants
  int64_t params = 0;
  size_t bytes = 0;
};
struct MemoryPlan {
  std::vector<MemoryGroup> groups;
  int64_t total_params = 0;
  size_t total_bytes = 0;
  size_t kv_bytes_per_token_cpu = 0;   // fp32 K and V, every layer
  size_t kv_bytes_per_token_cuda = 0;  // bf16 K and V, every layer
};
// Bytes of the weights in the format the engine computes with: stored dtype for 16/32-bit tensors, fp32 for norms
// and biases (converted at load), quant::quantized_bytes for quantized linears (packed codes under attention/mlp, the
// scales under "quantization constants"). lm_head tied to the embeddings counts 0.
MemoryPlan memory_plan(const ModelConfig& c, const std::optional<quant::QuantOptions>& q);

}  // namespace bq
