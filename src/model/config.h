// A Llama-family model is this struct plus its weights. llama, mistral, qwen2 and phi3 differ only in the flags.
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace bq {

enum class RopeScaling { None, Linear, Llama3 };

// The one table of architectures biomedq runs: config.json's model_type, the transformers class that writes it, and
// the flags that set it apart (every architecture is the Llama forward with these switches).
struct Architecture {
  std::string_view model_type, hf_class;
  bool attn_bias;       // q/k/v biases always (qwen2); others only with "attention_bias": true
  bool fused_qkv;       // one qkv_proj and one gate_up_proj tensor (phi3)
  bool partial_rotary;  // accepts partial_rotary_factor in config.json (phi3 writes 1.0)
  bool qk_norm;         // RMSNorm over each head of q and k before RoPE (qwen3's q_norm, k_norm)
};
const std::vector<Architecture>& architectures();
std::vector<std::string> architecture_names();
// The entry for a model_type; an Error naming `origin` and the supported ones otherwise.
const Architecture& find_architecture(std::string_view model_type, const std::string& origin);

struct ModelConfig {
  std::string arch;  // model_type, one of architectures()
  int hidden = 0, intermediate = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, vocab = 0;
  int max_positions = 4096;
  float rms_eps = 1e-5f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling = RopeScaling::None;
  double rope_factor = 1.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
  int rope_original_max_positions = 8192;
  bool attn_bias = false;      // q/k/v biases (qwen2)
  bool tie_embeddings = false;  // lm_head shares the embedding matrix
  bool fused_qkv = false;       // phi3: one qkv_proj, one gate_up_proj
  bool qk_norm = false;         // qwen3: q and k normed per head (weights of head_dim) before RoPE
  DType dtype = DType::BF16;    // stored weight type
  std::optional<int> bos_id;
  std::vector<int> eos_ids;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// Parses a config.json (transformers v4 `rope_theta`/`rope_scaling` or v5 `rope_parameters`). `origin` names the
// file in errors.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& origin);
ModelConfig load_model_config(const std::filesystem::path& model_dir);
// The config.json transformers would write for this model (v5 spelling when `v5` is set).
nlohmann::json model_config_to_json(const ModelConfig& c, bool v5 = false);

// RoPE inverse frequencies (head_dim / 2 of them), with the config's scaling, in double precision.
std::vector<double> rope_inv_freq(const ModelConfig& c);

// Real shapes of the models the study and our users run, for `synth --preset` and synthetic benchmarks.
ModelConfig preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace bq
