// Offline quantization of a checkpoint folder into transformers + bitsandbytes' serialized layout.
#pragma once
#include <filesystem>
#include <optional>

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

}  // namespace bq
