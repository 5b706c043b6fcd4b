#include "model/config.h"

#include <cmath>
#include <numbers>

#include <fmt/ranges.h>

#include "core/error.h"
#include "core/files.h"
#include "core/json.h"

namespace bq {

using nlohmann::json;

namespace {

int get_int(const json& j, const char* key, const std::string& origin, std::optional<int> fallback = std::nullopt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    fail("{}: missing '{}'", origin, key);
  }
  if (!it->is_number_integer() || it->get<int64_t>() <= 0 || it->get<int64_t>() > (1 << 30))
    fail("{}: '{}' must be a positive integer", origin, key);
  return it->get<int>();
}

double get_num(const json& j, const char* key, const std::string& origin, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) fail("{}: '{}' must be a number", origin, key);
  return it->get<double>();
}

// A number that must be finite and > 0 (rope_theta 0 or -1, rms_norm_eps -1 make every logit NaN).
double get_positive(const json& j, const char* key, const std::string& origin, double fallback) {
  double x = get_num(j, key, origin, fallback);
  if (!std::isfinite(x) || x <= 0) fail("{}: '{}' is {}; it must be a positive number", origin, key, x);
  return x;
}

std::string get_str(const json& j, const char* key, const std::string& origin, const std::string& fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_string()) fail("{}: '{}' must be a string, not {}", origin, key, it->type_name());
  return it->get<std::string>();
}

bool get_bool(const json& j, const char* key, const std::string& origin, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail("{}: '{}' must be true or false, not {}", origin, key, it->type_name());
  return it->get<bool>();
}

void parse_rope(const json& rope, ModelConfig& c, const std::string& origin) {
  if (!rope.is_object()) fail("{}: rope scaling must be an object", origin);
  std::string type = get_str(rope, "rope_type", origin, get_str(rope, "type", origin, "default"));
  c.rope_theta = get_positive(rope, "rope_theta", origin, c.rope_theta);
  if (type == "default") {
    c.rope_scaling = RopeScaling::None;
  } else if (type == "linear") {
    c.rope_scaling = RopeScaling::Linear;
    c.rope_factor = get_positive(rope, "factor", origin, 1.0);
  } else if (type == "llama3") {
    c.rope_scaling = RopeScaling::Llama3;
    c.rope_factor = get_positive(rope, "factor", origin, 8.0);
    c.rope_low_freq_factor = get_positive(rope, "low_freq_factor", origin, 1.0);
    c.rope_high_freq_factor = get_positive(rope, "high_freq_factor", origin, 4.0);
    c.rope_original_max_positions = get_int(rope, "original_max_position_embeddings", origin, 8192);
    if (c.rope_high_freq_factor <= c.rope_low_freq_factor)  // the interpolation divides by their difference
      fail("{}: rope scaling high_freq_factor must be larger than low_freq_factor", origin);
  } else {
    fail("{}: unsupported rope scaling type '{}' (supported: default, linear, llama3)", origin, type);
  }
}

std::vector<int> parse_ids(const json& v, const char* key, const std::string& origin) {
  std::vector<int> ids;
  if (v.is_null()) return ids;
  auto id = [&](const json& x) {
    if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX)
      fail("{}: '{}' must hold token ids (integers from 0 to {})", origin, key, INT32_MAX);
    return x.get<int>();
  };
  if (v.is_number()) return {id(v)};
  if (!v.is_array()) fail("{}: '{}' must be an id or a list of ids", origin, key);
  for (auto& x : v) ids.push_back(id(x));
  return ids;
}

}  // namespace

const std::vector<Architecture>& architectures() {
  static const std::vector<Architecture> table = {
      {"llama", "LlamaForCausalLM", false, false, false, false},
      {"mistral", "MistralForCausalLM", false, false, false, false},
      {"qwen2", "Qwen2ForCausalLM", true, false, false, false},
      {"phi3", "Phi3ForCausalLM", false, true, true, false},
      {"qwen3", "Qwen3ForCausalLM", false, false, false, true},
  };
  return table;
}

std::vector<std::string> architecture_names() {
  std::vector<std::string> out;
  for (auto& a : architectures()) out.emplace_back(a.model_type);
  return out;
}

const Architecture& find_architecture(std::string_view model_type, const std::string& origin) {
  for (auto& a : architectures())
    if (a.model_type == model_type) return a;
  fail("{}: unknown model_type '{}' (supported: {})", origin, model_type, fmt::join(architecture_names(), ", "));
}

ModelConfig parse_model_config(const json& j, const std::string& origin) {
  if (!j.is_object()) fail("{}: config must be a JSON object", origin);
  ModelConfig c;
  c.arch = get_str(j, "model_type", origin, "");
  const Architecture& arch = find_architecture(c.arch, origin);
  c.hidden = get_int(j, "hidden_size", origin);
  c.intermediate = get_int(j, "intermediate_size", origin);
  c.n_layers = get_int(j, "num_hidden_layers", origin);
  c.n_heads = get_int(j, "num_attention_heads", origin);
  c.n_kv_heads = get_int(j, "num_key_value_heads", origin, c.n_heads);
  c.head_dim = get_int(j, "head_dim", origin, c.hidden / c.n_heads);
  c.vocab = get_int(j, "vocab_size", origin);
  c.max_positions = get_int(j, "max_position_embeddings", origin, 4096);
  c.rms_eps = float(get_positive(j, "rms_norm_eps", origin, 1e-6));
  if (c.rms_eps == 0) fail("{}: 'rms_norm_eps' is too small for float32", origin);
  c.rope_theta = get_positive(j, "rope_theta", origin, 10000.0);
  if (c.n_heads % c.n_kv_heads != 0) fail("{}: num_attention_heads must be a multiple of num_key_value_heads", origin);
  if (c.head_dim % 2 != 0) fail("{}: head_dim must be even", origin);
  if (int64_t(c.n_heads) * c.head_dim > (1 << 30))  // q_dim() is an int
    fail("{}: num_attention_heads x head_dim is implausibly large", origin);
  if (!arch.partial_rotary && get_num(j, "partial_rotary_factor", origin, 1.0) != 1.0)
    fail("{}: partial_rotary_factor other than 1 is not supported", origin);
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) parse_rope(j["rope_parameters"], c, origin);
  else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) parse_rope(j["rope_scaling"], c, origin);
  c.attn_bias = arch.attn_bias || get_bool(j, "attention_bias", origin, false);
  c.tie_embeddings = get_bool(j, "tie_word_embeddings", origin, false);
  c.fused_qkv = arch.fused_qkv;
  c.qk_norm = arch.qk_norm;
  // Qwen's sliding window applies only with use_sliding_window (off in every released Qwen3 config).
  if (get_bool(j, "use_sliding_window", origin, false))
    fail("{}: use_sliding_window (sliding-window attention) is not supported", origin);
  std::string dt = get_str(j, "dtype", origin, get_str(j, "torch_dtype", origin, "bfloat16"));
  c.dtype = dt == "float32" ? DType::F32 : dt == "float16" ? DType::F16 : DType::BF16;
  if (j.contains("bos_token_id")) {
    auto b = parse_ids(j["bos_token_id"], "bos_token_id", origin);
    if (!b.empty()) c.bos_id = b[0];
  }
  if (j.contains("eos_token_id")) c.eos_ids = parse_ids(j["eos_token_id"], "eos_token_id", origin);
  return c;
}

namespace {

// What biomedq loads, said plainly to someone who brought a llama.cpp file or the wrong folder.
void check_checkpoint_folder(const std::filesystem::path& dir) {
  constexpr const char* loads = "biomedq loads Hugging Face checkpoint folders (config.json, *.safetensors, "
                                "tokenizer.json), bitsandbytes-quantized ones included";
  std::string ext = dir.extension().string();
  for (char& c : ext) c = char(std::tolower((unsigned char)c));
  if (ext == ".gguf") fail("{}: a GGUF file (llama.cpp's format), which biomedq does not load; {}", dir.string(), loads);
  if (!std::filesystem::exists(dir)) fail("{}: no such folder; {}", dir.string(), loads);
  if (!std::filesystem::is_directory(dir)) fail("{}: a file, not a checkpoint folder; {}", dir.string(), loads);
  if (!std::filesystem::exists(dir / "config.json")) {
    std::string gguf;
    for (const auto& e : std::filesystem::directory_iterator(dir))
      if (e.path().extension() == ".gguf") gguf = " (it holds " + e.path().filename().string() + ": GGUF is not supported)";
    fail("{}: no config.json{}; {}", dir.string(), gguf, loads);
  }
}

}  // namespace

ModelConfig load_model_config(const std::filesystem::path& model_dir) {
  check_checkpoint_folder(model_dir);
  auto path = model_dir / "config.json";
  return parse_model_config(parse_json(read_file(path, limits::kJsonFileBytes), path.string()), path.string());
}

json model_config_to_json(const ModelConfig& c, bool v5) {
  json j = {{"architectures", {std::string(find_architecture(c.arch, "model config").hf_class)}},
            {"model_type", c.arch},
            {"hidden_size", c.hidden},
            {"intermediate_size", c.intermediate},
            {"num_hidden_layers", c.n_layers},
            {"num_attention_heads", c.n_heads},
            {"num_key_value_heads", c.n_kv_heads},
            {"head_dim", c.head_dim},
            {"vocab_size", c.vocab},
            {"max_position_embeddings", c.max_positions},
            {"rms_norm_eps", c.rms_eps},
            {"hidden_act", "silu"},
            {"tie_word_embeddings", c.tie_embeddings},
            {v5 ? "dtype" : "torch_dtype", c.dtype == DType::F32 ? "float32" : c.dtype == DType::F16 ? "float16" : "bfloat16"}};
  if (c.arch == "llama" || c.arch == "qwen3") j["attention_bias"] = c.attn_bias;
  if (c.bos_id) j["bos_token_id"] = *c.bos_id;
  if (c.eos_ids.size() == 1) j["eos_token_id"] = c.eos_ids[0];
  else if (!c.eos_ids.empty()) j["eos_token_id"] = c.eos_ids;
  json rope = nullptr;
  if (c.rope_scaling == RopeScaling::Linear) rope = {{"rope_type", "linear"}, {"factor", c.rope_factor}};
  if (c.rope_scaling == RopeScaling::Llama3)
    rope = {{"rope_type", "llama3"}, {"factor", c.rope_factor}, {"low_freq_factor", c.rope_low_freq_factor},
            {"high_freq_factor", c.rope_high_freq_factor}, {"original_max_position_embeddings", c.rope_original_max_positions}};
  if (v5) {
    if (rope.is_null()) rope = {{"rope_type", "default"}};
    rope["rope_theta"] = c.rope_theta;
    j["rope_parameters"] = rope;
  } else {
    j["rope_theta"] = c.rope_theta;
    j["rope_scaling"] = rope;
  }
  return j;
}

std::vector<double> rope_inv_freq(const ModelConfig& c) {
  int half = c.head_dim / 2;
  std::vector<double> f(half);
  for (int i = 0; i < half; ++i) f[i] = 1.0 / std::pow(c.rope_theta, double(2 * i) / c.head_dim);
  if (c.rope_scaling == RopeScaling::Linear) {
    for (auto& x : f) x /= c.rope_factor;
  } else if (c.rope_scaling == RopeScaling::Llama3) {
    // Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated smoothly.
    double old_ctx = c.rope_original_max_positions;
    double low_wavelen = old_ctx / c.rope_low_freq_factor, high_wavelen = old_ctx / c.rope_high_freq_factor;
    for (auto& x : f) {
      double wavelen = 2 * std::numbers::pi / x;
      if (wavelen > low_wavelen) {
        x /= c.rope_factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (old_ctx / wavelen - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
        x = (1 - smooth) * x / c.rope_factor + smooth * x;
      }
    }
  }
  return f;
}

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
          "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b", "qwen3-0.6b", "qwen3-8b", "qwen3-32b", "phi-4", "deepseek-llm-67b", "mistral-7b"};
}

}  // namespace bq
