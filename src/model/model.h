// A loaded model: its config plus weights that point into memory-mapped checkpoint files (or owned buffers for
// synthetic models). Nothing here converts a whole model to fp32.
#pragma once
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"
#include "quant/quant.h"

namespace bq {

// y = x · Wᵀ + b for W [out, in].
struct Linear {
  int64_t out = 0, in = 0;
  DType dtype = DType::BF16;
  const void* w = nullptr;
  std::vector<float> bias;  // empty when the layer has none
  std::shared_ptr<const quant::QuantizedMatrix> q;  // set when quantized: then `w` is not used

  size_t weight_bytes() const { return size_t(out * in) * dtype_size(dtype); }
};

// Norm weights are held as applied: gemma's stored w - 1 become 1 + w at load.
struct Layer {
  std::vector<float> attn_norm, mlp_norm;
  std::vector<float> q_norm, k_norm;  // per-head norms of q and k (qk_norm), else empty
  std::vector<float> post_attn_norm, post_mlp_norm;  // on each block's output before its residual (sandwich_norms)
  Linear q, k, v, o;       // phi3's fused qkv_proj is split into three row ranges of the same tensor
  Linear gate, up, down;   // likewise gate_up_proj
};

struct Model {
  ModelConfig cfg;
  DType embed_dtype = DType::BF16;
  const void* embed = nullptr;  // [vocab, hidden]
  std::vector<Layer> layers;
  std::vector<float> final_norm;
  Linear lm_head;

  // Backing storage: mapped checkpoint files or owned bytes (synthetic models).
  std::shared_ptr<Checkpoint> checkpoint;
  std::vector<std::vector<uint8_t>> owned;

  // The input row of a token: its embedding (× sqrt(hidden) where the architecture scales it), fp32.
  void embed_row(int32_t token, float* out) const;
};

// Loads config.json and the safetensors weights of a Hugging Face checkpoint folder, validating every tensor the
// architecture needs (presence, shape, dtype). A bitsandbytes "quantization_config" (transformers' serialized
// 4-bit or 8-bit layout) loads the decoder linears pre-quantized; 8-bit ones as LLM.int8 with the config's threshold.
Model load_model(const std::filesystem::path& dir);

// The one table of a decoder layer's stored tensors (names relative to "model.layers.<i>.", in the order
// transformers saves them) and where each goes in a Layer. It drives loading, pre-quantized loading, synthesis,
// saving and quantizing checkpoints. A tensor is a norm weight, a bias, or a linear weight holding one or more
// projections stacked by rows (phi3's fused qkv_proj and gate_up_proj).
struct LayerTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> Layer::*norm = nullptr;
  Linear Layer::*bias_of = nullptr;
  std::vector<std::pair<Linear Layer::*, int64_t>> linears;  // (projection, its rows), top to bottom
};
std::vector<LayerTensor> layer_tensors(const ModelConfig& c);
std::string layer_prefix(int layer);  // "model.layers.<layer>."

// Names and shapes of every tensor the architecture stores, in the order transformers saves them.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool decoder_linear = false;  // a decoder layer's linear weight: what bitsandbytes quantizes
};
std::vector<TensorSpec> tensor_specs(const ModelConfig& c);

// Random weights in memory (no files): normal(0, std) linears, norms near 1. For benchmarks of large presets.
Model synthesize_model(const ModelConfig& c, uint64_t seed, float std = 0.02f);

// Writes a synthesized model as a Hugging Face checkpoint: config.json and model.safetensors, or shards of at most
// shard_bytes with a model.safetensors.index.json. Tokenizer files are the caller's.
void save_synthetic_checkpoint(const Model& m, const std::filesystem::path& dir, size_t shard_bytes = size_t(2) << 30,
                               bool v5_config = false);

}  // namespace bq
