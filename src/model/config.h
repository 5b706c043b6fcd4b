// A Llama-family model is this struct plus its weights. llama, mistral, qwen2, phi3, qwen3 and gemma3 differ only in
// the flags.
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
enum class Activation { Silu, GeluTanh };  // of the gated MLP: silu (hidden_act "silu"), gelu_pytorch_tanh (gemma)
// Which layers attend over a sliding window of positions: none (qwen's use_sliding_window is refused), every layer
// when config.json sets sliding_window (mistral), or the layers layer_types / sliding_window_pattern name (gemma3).
enum class SlidingWindow { Refused, AllLayers, LayerTypes };

// The one table of architectures biomedq runs: config.json's model_type, the transformers class that writes it, and
// the flags that set it apart (every architecture is the Llama forward with these switches).
struct Architecture {
  std::string_view model_type, hf_class;
  bool attn_bias = false;       // q/k/v biases always (qwen2); others only with "attention_bias": true
  bool fused_qkv = false;       // one qkv_proj and one gate_up_proj tensor (phi3)
  bool partial_rotary = false;  // accepts partial_rotary_factor in config.json (phi3 writes 1.0)
  bool qk_norm = false;         // RMSNorm over each head of q and k before RoPE (qwen3's q_norm, k_norm)
  bool norm_plus_one = false;   // RMSNorm weights stored as w - 1, applied as (1 + w) (gemma); folded at load
  bool sandwich_norms = false;  // also a norm on the attention output and on the MLP output, before each residual
  bool scale_embeddings = false;  // embedding rows multiplied by sqrt(hidden_size)
  SlidingWindow sliding = SlidingWindow::Refused;
  Activation act = Activation::Silu;  // when config.json names none
  std::string_view text_tower_of;  // a multimodal wrapper (gemma3): its text_config is this model_type
};
const std::vector<Architecture>& architectures();
std::vector<std::string> architecture_names();
// The entry for a model_type; an Error naming `origin` and the supported ones otherwise.
const Architecture& find_architecture(std::string_view model_type, const std::string& origin);

struct ModelConfig;
// Sets c.arch and the fixed flags of that architecture (biases, fusion, norms, embedding scale, activation, local
// RoPE); config values (sizes, windows, RoPE bases) are left as they are.
void apply_architecture(ModelConfig& c, const Architecture& a);

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
  bool norm_plus_one = false;   // gemma: stored norm weights are w - 1 (the loaded Model holds 1 + w)
  bool sandwich_norms = false;  // gemma: post-attention and post-feed-forward norms (Layer::post_attn_norm, ...)
  bool scale_embeddings = false;  // gemma: embeddings × sqrt(hidden) in fp32
  bool text_tower = false;      // loaded from a multimodal checkpoint: its language model's tensors only
  Activation act = Activation::Silu;
  float query_pre_attn_scalar = 0;  // attention scores × its -1/2 power; 0: head_dim (the usual 1/sqrt(head_dim))
  int sliding_window = 0;       // positions a sliding layer attends over, itself included; 0: no sliding layers
  std::vector<bool> sliding_layers;  // per layer: attends over the window (empty: none does)
  bool local_rope = false;      // gemma3: sliding layers rotate with rope_local_theta, without scaling
  double rope_local_theta = 10000.0;
  DType dtype = DType::BF16;    // stored weight type
  std::optional<int> bos_id;
  std::vector<int> eos_ids;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  bool is_sliding(int layer) const { return !sliding_layers.empty() && sliding_layers[size_t(layer)]; }
  // Positions layer `layer` attends over, up to `positions` (a sliding layer: at most the window).
  int attended(int layer, int positions) const;
  float attn_scale() const;  // multiplies q·k
  // Whether layer `layer` rotates with the local table (rope_local_theta; gemma3's sliding layers).
  bool uses_local_rope(int layer) const { return local_rope && is_sliding(layer); }
};

// Parses a config.json (transformers v4 `rope_theta`/`rope_scaling` or v5 `rope_parameters`). `origin` names the
// file in errors.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& origin);
ModelConfig load_model_config(const std::filesystem::path& model_dir);
// The config.json transformers would write for this model (v5 spelling when `v5` is set).
nlohmann::json model_config_to_json(const ModelConfig& c, bool v5 = false);

// RoPE inverse frequencies (head_dim / 2 of them), with the config's scaling, in double precision; `local`: those
// of the sliding layers where they differ (rope_local_theta, unscaled).
std::vector<double> rope_inv_freq(const ModelConfig& c, bool local = false);

// Real shapes of the models the study and our users run, for `synth --preset` and synthetic benchmarks.
ModelConfig preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace bq
