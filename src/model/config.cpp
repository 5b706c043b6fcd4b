#include "model/config.h"

#include <algorithm>
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
      {.model_type = "llama", .hf_class = "LlamaForCausalLM"},
      {.model_type = "mistral", .hf_class = "MistralForCausalLM", .sliding = SlidingWindow::AllLayers},
      {.model_type = "qwen2", .hf_class = "Qwen2ForCausalLM", .attn_bias = true},
      {.model_type = "phi3", .hf_class = "Phi3ForCausalLM", .fused_qkv = true, .partial_rotary = true},
      {.model_type = "qwen3", .hf_class = "Qwen3ForCausalLM", .qk_norm = true},
      {.model_type = "gemma3_text", .hf_class = "Gemma3ForCausalLM", .qk_norm = true, .norm_plus_one = true,
       .sandwich_norms = true, .scale_embeddings = true, .sliding = SlidingWindow::LayerTypes,
       .act = Activation::GeluTanh},
      {.model_type = "gemma3", .hf_class = "Gemma3ForConditionalGeneration", .text_tower_of = "gemma3_text"},
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

namespace {

// transformers' Gemma3TextConfig defaults: released configs (the text_config of Gemma 3 4B) leave some fields out.
const json& gemma3_text_defaults() {
  static const json d = {{"vocab_size", 262208},          {"hidden_size", 2304},
                         {"intermediate_size", 9216},     {"num_hidden_layers", 26},
                         {"num_attention_heads", 8},      {"num_key_value_heads", 4},
                         {"head_dim", 256},               {"hidden_activation", "gelu_pytorch_tanh"},
                         {"max_position_embeddings", 131072}, {"rms_norm_eps", 1e-6},
                         {"rope_theta", 1000000.0},       {"rope_local_base_freq", 10000.0},
                         {"query_pre_attn_scalar", 256},  {"sliding_window", 4096},
                         {"tie_word_embeddings", true},   {"bos_token_id", 2},
                         {"eos_token_id", 1}};
  return d;
}

Activation parse_activation(const json& j, Activation fallback, const std::string& origin) {
  // gemma3 names it hidden_activation; the others hidden_act.
  std::string act = get_str(j, "hidden_activation", origin, get_str(j, "hidden_act", origin, ""));
  if (act.empty()) return fallback;
  if (act == "silu" || act == "swish") return Activation::Silu;
  if (act == "gelu_pytorch_tanh") return Activation::GeluTanh;
  fail("{}: unsupported activation '{}' (supported: silu, gelu_pytorch_tanh)", origin, act);
}

// layer_types (a list of "sliding_attention" / "full_attention"), else every sliding_window_pattern-th layer (from
// 1) full and the others sliding, as transformers derives it.
std::vector<bool> parse_layer_types(const json& j, int n_layers, const std::string& origin) {
  std::vector<bool> sliding(static_cast<size_t>(n_layers));
  auto it = j.find("layer_types");
  if (it != j.end() && !it->is_null()) {
    if (!it->is_array() || it->size() != size_t(n_layers))
      fail("{}: 'layer_types' must list one type per layer ({})", origin, n_layers);
    for (size_t i = 0; i < it->size(); ++i) {
      const json& t = (*it)[i];
      if (t == "sliding_attention") sliding[i] = true;
      else if (t != "full_attention")
        fail("{}: layer_types[{}] is {}; expected \"sliding_attention\" or \"full_attention\"", origin, i, t.dump());
    }
    return sliding;
  }
  const int pattern = get_int(j, "sliding_window_pattern", origin, 6);
  for (int i = 0; i < n_layers; ++i) sliding[size_t(i)] = (i + 1) % pattern != 0;
  return sliding;
}

void parse_sliding(const json& j, const Architecture& arch, ModelConfig& c, const std::string& origin) {
  if (arch.sliding == SlidingWindow::Refused) {
    // Qwen's sliding window applies only with use_sliding_window (off in every released Qwen3 config).
    if (get_bool(j, "use_sliding_window", origin, false))
      fail("{}: use_sliding_window (sliding-window attention) is not supported", origin);
    return;
  }
  if (!j.contains("sliding_window") || j["sliding_window"].is_null()) return;
  c.sliding_window = get_int(j, "sliding_window", origin);
  if (arch.sliding == SlidingWindow::AllLayers) c.sliding_layers.assign(size_t(c.n_layers), true);
  else c.sliding_layers = parse_layer_types(j, c.n_layers, origin);
  if (std::find(c.sliding_layers.begin(), c.sliding_layers.end(), true) == c.sliding_layers.end()) {
    c.sliding_layers.clear();  // every layer global: nothing slides
    c.sliding_window = 0;
  }
}

// gemma3's RoPE: the global layers' base and scaling (v4: rope_theta + rope_scaling; v5: rope_parameters'
// full_attention entry) and the sliding layers' plain base (rope_local_base_freq; v5: sliding_attention's).
void parse_local_rope(const json& j, ModelConfig& c, const std::string& origin) {
  c.rope_local_theta = get_positive(j, "rope_local_base_freq", origin, 10000.0);
  auto it = j.find("rope_parameters");
  if (it == j.end() || !it->is_object() || !it->contains("full_attention")) return;
  parse_rope((*it)["full_attention"], c, origin);
  if (it->contains("sliding_attention")) {
    ModelConfig local;
    parse_rope((*it)["sliding_attention"], local, origin);
    if (local.rope_scaling != RopeScaling::None)
      fail("{}: rope scaling on the sliding layers is not supported", origin);
    c.rope_local_theta = local.rope_theta;
  }
}

ModelConfig parse_text_model(const json& j, const std::string& origin);

// A multimodal wrapper's language model: its text_config, with what the wrapper says at the top level where the
// text config is silent.
ModelConfig parse_text_tower(const json& j, const Architecture& arch, const std::string& origin) {
  auto it = j.find("text_config");
  if (it == j.end() || !it->is_object()) fail("{}: a {} config needs a 'text_config' object", origin, arch.model_type);
  json text = *it;
  if (!text.contains("model_type")) text["model_type"] = std::string(arch.text_tower_of);
  if (text["model_type"] != std::string(arch.text_tower_of))
    fail("{}: text_config has model_type {}; expected \"{}\"", origin, text["model_type"].dump(), arch.text_tower_of);
  for (const char* key : {"bos_token_id", "eos_token_id", "tie_word_embeddings", "dtype", "torch_dtype"})
    if (!text.contains(key) && j.contains(key)) text[key] = j[key];
  ModelConfig c = parse_text_model(text, origin + " (text_config)");
  c.text_tower = true;
  return c;
}

ModelConfig parse_text_model(const json& given, const std::string& origin) {
  if (!given.is_object()) fail("{}: config must be a JSON object", origin);
  ModelConfig c;
  c.arch = get_str(given, "model_type", origin, "");
  if (c.arch == "gemma2" || c.arch == "gemma")
    fail("{}: model_type '{}' (Gemma {}) is not supported; Gemma 3 is (gemma3_text, gemma3)", origin, c.arch,
         c.arch == "gemma2" ? "2, with its logit soft-capping" : "1");
  const Architecture& arch = find_architecture(c.arch, origin);
  if (!arch.text_tower_of.empty()) return parse_text_tower(given, arch, origin);
  json j = given;
  if (arch.model_type == "gemma3_text") {
    j = gemma3_text_defaults();
    for (auto& [k, v] : given.items())
      if (!v.is_null()) j[k] = v;
  }
  for (const char* cap : {"final_logit_softcapping", "attn_logit_softcapping"})
    if (j.contains(cap) && !j[cap].is_null())
      fail("{}: '{}' (logit soft-capping, as in Gemma 2) is not supported", origin, cap);
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
  const bool per_layer_type_rope =
      j.contains("rope_parameters") && j["rope_parameters"].is_object() && j["rope_parameters"].contains("full_attention");
  if (per_layer_type_rope) {
    if (arch.sliding != SlidingWindow::LayerTypes)
      fail("{}: rope_parameters per layer type are only read for gemma3_text", origin);
  } else if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    parse_rope(j["rope_parameters"], c, origin);
  } else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    parse_rope(j["rope_scaling"], c, origin);
  }
  apply_architecture(c, arch);
  c.attn_bias = arch.attn_bias || get_bool(j, "attention_bias", origin, false);
  c.tie_embeddings = get_bool(j, "tie_word_embeddings", origin, false);
  c.act = parse_activation(j, arch.act, origin);
  if (j.contains("query_pre_attn_scalar") && !j["query_pre_attn_scalar"].is_null())
    c.query_pre_attn_scalar = float(get_positive(j, "query_pre_attn_scalar", origin, 0));
  parse_sliding(j, arch, c, origin);
  if (c.local_rope) parse_local_rope(j, c, origin);
  std::string dt = get_str(j, "dtype", origin, get_str(j, "torch_dtype", origin, "bfloat16"));
  c.dtype = dt == "float32" ? DType::F32 : dt == "float16" ? DType::F16 : DType::BF16;
  if (j.contains("bos_token_id")) {
    auto b = parse_ids(j["bos_token_id"], "bos_token_id", origin);
    if (!b.empty()) c.bos_id = b[0];
  }
  if (j.contains("eos_token_id")) c.eos_ids = parse_ids(j["eos_token_id"], "eos_token_id", origin);
  return c;
}

}  // namespace

ModelConfig parse_model_config(const json& j, const std::string& origin) { return parse_text_model(j, origin); }

void apply_architecture(ModelConfig& c, const Architecture& a) {
  c.arch = std::string(a.model_type);
  c.attn_bias = a.attn_bias;
  c.fused_qkv = a.fused_qkv;
  c.qk_norm = a.qk_norm;
  c.norm_plus_one = a.norm_plus_one;
  c.sandwich_norms = a.sandwich_norms;
  c.scale_embeddings = a.scale_embeddings;
  c.local_rope = a.sliding == SlidingWindow::LayerTypes;
  c.act = a.act;
}

int ModelConfig::attended(int layer, int positions) const {
  return is_sliding(layer) ? std::min(positions, sliding_window) : positions;
}

float ModelConfig::attn_scale() const {
  return float(1.0 / std::sqrt(query_pre_attn_scalar > 0 ? double(query_pre_attn_scalar) : double(head_dim)));
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
            {c.act == Activation::GeluTanh ? "hidden_activation" : "hidden_act",
             c.act == Activation::GeluTanh ? "gelu_pytorch_tanh" : "silu"},
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
  if (c.query_pre_attn_scalar > 0) j["query_pre_attn_scalar"] = c.query_pre_attn_scalar;
  if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
  if (c.arch == "gemma3_text") {
    json types = json::array();
    for (int l = 0; l < c.n_layers; ++l) types.push_back(c.is_sliding(l) ? "sliding_attention" : "full_attention");
    j["layer_types"] = types;
    j["final_logit_softcapping"] = nullptr;
    j["attn_logit_softcapping"] = nullptr;
  }
  if (v5) {
    if (rope.is_null()) rope = {{"rope_type", "default"}};
    rope["rope_theta"] = c.rope_theta;
    if (c.local_rope)
      j["rope_parameters"] = {{"full_attention", rope},
                              {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", c.rope_local_theta}}}};
    else j["rope_parameters"] = rope;
  } else {
    if (c.local_rope) j["rope_local_base_freq"] = c.rope_local_theta;
    j["rope_theta"] = c.rope_theta;
    j["rope_scaling"] = rope;
  }
  return j;
}

std::vector<double> rope_inv_freq(const ModelConfig& c, bool local) {
  int half = c.head_dim / 2;
  std::vector<double> f(half);
  const double theta = local && c.local_rope ? c.rope_local_theta : c.rope_theta;
  for (int i = 0; i < half; ++i) f[i] = 1.0 / std::pow(theta, double(2 * i) / c.head_dim);
  if (local && c.local_rope) return f;  // gemma3's sliding layers: the plain table
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

}  // namespace bq
