// Real shapes of the models the study and our users run (config.h: preset_config), for `synth --preset`, `plan`,
// `bench` and synthetic evaluation.
#include <string>
#include <vector>

#include "core/error.h"
#include "model/config.h"

namespace bq {

namespace {

ModelConfig make(std::string arch, int hidden, int inter, int layers, int heads, int kv, int vocab, double theta) {
  ModelConfig c;
  c.arch = std::move(arch);
  c.hidden = hidden;
  c.intermediate = inter;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv;
  c.head_dim = hidden / heads;
  c.vocab = vocab;
  c.rope_theta = theta;
  return c;
}

ModelConfig llama3(ModelConfig c) {
  c.rope_scaling = RopeScaling::Llama3;
  c.rope_factor = 8.0;
  c.rope_original_max_positions = 8192;
  c.max_positions = 131072;
  c.bos_id = 128000;
  c.eos_ids = {128001, 128008, 128009};
  c.rms_eps = 1e-5f;
  return c;
}

ModelConfig qwen(ModelConfig c, bool tie) {
  c.attn_bias = true;
  c.tie_embeddings = tie;
  c.max_positions = 32768;
  c.rms_eps = 1e-6f;
  c.bos_id = 151643;
  c.eos_ids = {151645, 151643};
  return c;
}

// Qwen3: Qwen2's tokens and norms, but no biases, q/k norms, and head_dim 128 whatever the width (so q_dim may
// differ from hidden).
ModelConfig qwen3(ModelConfig c, bool tie) {
  c = qwen(std::move(c), tie);
  c.attn_bias = false;
  c.qk_norm = true;
  c.head_dim = 128;
  c.max_positions = 40960;
  return c;
}

// Gemma 3 (MedGemma 4B's text tower, MedGemma 27B): norms as 1 + w around both blocks, scaled embeddings, GELU,
// q/k norms, five sliding layers (window 1024, local RoPE base 1e4) to one global one (linear RoPE scaling × 8).
ModelConfig gemma3(ModelConfig c, int head_dim, float query_pre_attn_scalar) {
  c.head_dim = head_dim;
  c.query_pre_attn_scalar = query_pre_attn_scalar;
  apply_architecture(c, find_architecture("gemma3_text", "preset"));
  c.rms_eps = 1e-6f;
  c.max_positions = 131072;
  c.rope_scaling = RopeScaling::Linear;
  c.rope_factor = 8.0;
  c.rope_local_theta = 10000.0;
  c.sliding_window = 1024;
  for (int l = 0; l < c.n_layers; ++l) c.sliding_layers.push_back((l + 1) % 6 != 0);
  c.tie_embeddings = true;
  c.bos_id = 2;
  c.eos_ids = {1, 106};
  return c;
}

}  // namespace

ModelConfig preset_config(const std::string& name) {
  if (name == "tiny") {  // the embedded default: small enough to synthesize and run in a second
    auto c = make("llama", 64, 172, 2, 4, 2, 512, 500000.0);
    c.bos_id = 507; c.eos_ids = {508, 511}; c.max_positions = 8192;  // room for 5-shot prompts
    return c;
  }
  if (name == "small-100m") {  // ~100M parameters, for CPU decode benchmarks
    auto c = make("llama", 768, 2048, 12, 12, 4, 32000, 500000.0);
    c.bos_id = 31995; c.eos_ids = {31996, 31999}; c.max_positions = 4096;
    return c;
  }
  if (name == "llama-3.1-8b") return llama3(make("llama", 4096, 14336, 32, 32, 8, 128256, 500000.0));
  if (name == "llama-3.3-70b") return llama3(make("llama", 8192, 28672, 80, 64, 8, 128256, 500000.0));
  if (name == "llama-2-70b") {
    auto c = make("llama", 8192, 28672, 80, 64, 8, 32000, 10000.0);
    c.bos_id = 1; c.eos_ids = {2}; c.rms_eps = 1e-5f;
    return c;
  }
  if (name == "qwen2.5-3b") return qwen(make("qwen2", 2048, 11008, 36, 16, 2, 151936, 1000000.0), true);
  if (name == "qwen2.5-7b") return qwen(make("qwen2", 3584, 18944, 28, 28, 4, 152064, 1000000.0), false);
  if (name == "qwen2.5-14b") return qwen(make("qwen2", 5120, 13824, 48, 40, 8, 152064, 1000000.0), false);
  if (name == "qwen2.5-32b") return qwen(make("qwen2", 5120, 27648, 64, 40, 8, 152064, 1000000.0), false);
  if (name == "qwen2.5-72b") return qwen(make("qwen2", 8192, 29568, 80, 64, 8, 152064, 1000000.0), false);
  if (name == "qwen3-0.6b") return qwen3(make("qwen3", 1024, 3072, 28, 16, 8, 151936, 1000000.0), true);
  if (name == "qwen3-8b") return qwen3(make("qwen3", 4096, 12288, 36, 32, 8, 151936, 1000000.0), false);
  if (name == "qwen3-32b") return qwen3(make("qwen3", 5120, 25600, 64, 64, 8, 151936, 1000000.0), false);
  if (name == "medgemma-4b") return gemma3(make("gemma3_text", 2560, 10240, 34, 8, 4, 262208, 1000000.0), 256, 256);
  if (name == "medgemma-27b") return gemma3(make("gemma3_text", 5376, 21504, 62, 32, 16, 262208, 1000000.0), 128, 168);
  if (name == "phi-4") {
    auto c = make("phi3", 5120, 17920, 40, 40, 10, 100352, 250000.0);
    c.fused_qkv = true; c.max_positions = 16384; c.bos_id = 100257; c.eos_ids = {100265};
    return c;
  }
  if (name == "deepseek-llm-67b") {
    auto c = make("llama", 8192, 22016, 95, 64, 8, 102400, 10000.0);
    c.bos_id = 100000; c.eos_ids = {100001}; c.rms_eps = 1e-6f;
    return c;
  }
  if (name == "mistral-7b") {
    auto c = make("mistral", 4096, 14336, 32, 32, 8, 32000, 1000000.0);
    c.bos_id = 1; c.eos_ids = {2}; c.rms_eps = 1e-5f; c.max_positions = 32768;
    return c;
  }
  std::string known;
  for (auto& p : preset_names()) known += (known.empty() ? "" : ", ") + p;
  fail("unknown preset '{}' (presets: {})", name, known);
}

std::vector<std::string> preset_names() {
  return {"tiny", "small-100m", "llama-3.1-8b", "llama-3.3-70b", "llama-2-70b", "qwen2.5-3b", "qwen2.5-7b",
          "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b", "qwen3-0.6b", "qwen3-8b", "qwen3-32b", "medgemma-4b", "medgemma-27b", "phi-4", "deepseek-llm-67b",
          "mistral-7b"};
}

}  // namespace bq
