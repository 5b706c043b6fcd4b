#include "model/model.h"

#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "core/json.h"
#include "core/progress.h"
#include "model/quantize_model.h"

namespace bq {

namespace {


// A stable hash, so a seed gives the same weights on every platform.
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

bool is_float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

std::vector<float> to_vector(const void* data, DType t, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  to_f32(t, data, v.data(), size_t(n));
  return v;
}

// A norm's weights as applied: gemma stores w - 1 and multiplies by 1 + w (in fp32, as transformers does).
std::vector<float> norm_weights(const ModelConfig& c, const void* data, DType t, int64_t n) {
  std::vector<float> w = to_vector(data, t, n);
  if (c.norm_plus_one)
    for (float& x : w) x += 1.0f;
  return w;
}

// Row range [row0, row0 + rows) of a stored [*, in] matrix, as a Linear.
Linear linear_rows(const void* base, DType t, int64_t row0, int64_t rows, int64_t in) {
  Linear l;
  l.out = rows;
  l.in = in;
  l.dtype = t;
  l.w = static_cast<const uint8_t*>(base) + size_t(row0 * in) * dtype_size(t);
  return l;
}

// Wires a Model's views from a lookup of (name -> data, dtype); shared by loading and synthesis.
template <typename Get>
void bind_weights(Model& m, Get get) {
  const ModelConfig& c = m.cfg;
  auto [embed, et] = get("model.embed_tokens.weight");
  m.embed = embed;
  m.embed_dtype = et;
  m.layers.resize(size_t(c.n_layers));
  const auto tensors = layer_tensors(c);
  for (int i = 0; i < c.n_layers; ++i) {
    Layer& L = m.layers[size_t(i)];
    for (const LayerTensor& t : tensors) {
      auto [d, dt] = get(layer_prefix(i) + t.name);
      if (t.norm) L.*t.norm = norm_weights(c, d, dt, t.shape[0]);
      if (t.bias_of) (L.*t.bias_of).bias = to_vector(d, dt, t.shape[0]);
      int64_t row0 = 0;
      for (auto [part, rows] : t.linears) {
        Linear bias_kept = std::move(L.*part);  // a bias may have been bound before its weight
        L.*part = linear_rows(d, dt, row0, rows, t.shape[1]);
        (L.*part).bias = std::move(bias_kept.bias);
        row0 += rows;
      }
    }
  }
  {
    auto [d, t] = get("model.norm.weight");
    m.final_norm = norm_weights(c, d, t, c.hidden);
  }
  if (c.tie_embeddings) {
    m.lm_head = linear_rows(m.embed, m.embed_dtype, 0, c.vocab, c.hidden);
  } else {
    auto [d, t] = get("lm_head.weight");
    m.lm_head = linear_rows(d, t, 0, c.vocab, c.hidden);
  }
}

}  // namespace

std::string layer_prefix(int layer) { return "model.layers." + std::to_string(layer) + "."; }

std::vector<LayerTensor> layer_tensors(const ModelConfig& c) {
  const int64_t H = c.hidden, I = c.intermediate, Q = c.q_dim(), KV = c.kv_dim();
  using L = Layer;
  auto linear = [](std::string name, std::vector<std::pair<Linear Layer::*, int64_t>> parts, int64_t in) {
    int64_t rows = 0;
    for (auto& p : parts) rows += p.second;
    return LayerTensor{std::move(name), {rows, in}, nullptr, nullptr, std::move(parts)};
  };
  auto norm = [](std::string name, std::vector<float> Layer::*to, int64_t n) { return LayerTensor{std::move(name), {n}, to, nullptr, {}}; };
  auto bias = [](std::string name, Linear Layer::*of, int64_t n) { return LayerTensor{std::move(name), {n}, nullptr, of, {}}; };
  std::vector<LayerTensor> t;
  t.push_back(norm("input_layernorm.weight", &L::attn_norm, H));
  if (c.fused_qkv) {
    t.push_back(linear("self_attn.qkv_proj.weight", {{&L::q, Q}, {&L::k, KV}, {&L::v, KV}}, H));
  } else {
    t.push_back(linear("self_attn.q_proj.weight", {{&L::q, Q}}, H));
    t.push_back(linear("self_attn.k_proj.weight", {{&L::k, KV}}, H));
    t.push_back(linear("self_attn.v_proj.weight", {{&L::v, KV}}, H));
  }
  if (c.attn_bias) {
    t.push_back(bias("self_attn.q_proj.bias", &L::q, Q));
    t.push_back(bias("self_attn.k_proj.bias", &L::k, KV));
    t.push_back(bias("self_attn.v_proj.bias", &L::v, KV));
  }
  t.push_back(linear("self_attn.o_proj.weight", {{&L::o, H}}, Q));
  if (c.qk_norm) {
    t.push_back(norm("self_attn.q_norm.weight", &L::q_norm, c.head_dim));
    t.push_back(norm("self_attn.k_norm.weight", &L::k_norm, c.head_dim));
  }
  if (c.sandwich_norms) {  // gemma's names: post_attention_layernorm is the attention output's
    t.push_back(norm("post_attention_layernorm.weight", &L::post_attn_norm, H));
    t.push_back(norm("pre_feedforward_layernorm.weight", &L::mlp_norm, H));
    t.push_back(norm("post_feedforward_layernorm.weight", &L::post_mlp_norm, H));
  } else {
    t.push_back(norm("post_attention_layernorm.weight", &L::mlp_norm, H));
  }
  if (c.fused_qkv) {
    t.push_back(linear("mlp.gate_up_proj.weight", {{&L::gate, I}, {&L::up, I}}, H));
  } else {
    t.push_back(linear("mlp.gate_proj.weight", {{&L::gate, I}}, H));
    t.push_back(linear("mlp.up_proj.weight", {{&L::up, I}}, H));
  }
  t.push_back(linear("mlp.down_proj.weight", {{&L::down, H}}, I));
  return t;
}

std::vector<TensorSpec> tensor_specs(const ModelConfig& c) {
  std::vector<TensorSpec> s;
  s.push_back({"model.embed_tokens.weight", {c.vocab, c.hidden}});
  const auto tensors = layer_tensors(c);
  for (int i = 0; i < c.n_layers; ++i)
    for (const LayerTensor& t : tensors) s.push_back({layer_prefix(i) + t.name, t.shape, !t.linears.empty()});
  s.push_back({"model.norm.weight", {c.hidden}});
  if (!c.tie_embeddings) s.push_back({"lm_head.weight", {c.vocab, c.hidden}});
  return s;
}

void Model::embed_row(int32_t token, float* out) const {
  if (token < 0 || token >= cfg.vocab) fail("token id {} outside the vocabulary of {}", token, cfg.vocab);
  size_t esz = dtype_size(embed_dtype);
  to_f32(embed_dtype, static_cast<const uint8_t*>(embed) + size_t(token) * size_t(cfg.hidden) * esz, out,
         size_t(cfg.hidden));
  if (cfg.scale_embeddings) {
    const float scale = float(std::sqrt(double(cfg.hidden)));  // transformers' fp32 embed_scale
    for (int i = 0; i < cfg.hidden; ++i) out[i] *= scale;
  }
}

namespace {

// Replaces the decoder linears' views by the quantized matrices stored in bitsandbytes' layout.
void load_prequantized_linears(Model& m, float llm_int8_threshold) {
  const Checkpoint& ck = *m.checkpoint;
  std::map<std::string, quant::TensorRef> refs;
  auto get = [&](const std::string& name) -> const quant::TensorRef* {
    const TensorInfo* t = ck.find(name);
    if (!t) return nullptr;
    return &(refs[name] = quant::TensorRef{t->dtype, t->shape, t->data, t->nbytes});
  };
  auto load = [&](const std::string& prefix, int64_t rows, int64_t cols) {
    const TensorInfo* t = ck.find(prefix + ".weight");
    std::string origin = t ? *t->file : prefix;
    auto q = quant::from_bnb_tensors(prefix, get, origin, llm_int8_threshold);
    if (q.rows != rows || q.cols != cols)
      fail("{}: {}.weight is quantized as [{}, {}], expected [{}, {}]", origin, prefix, q.rows, q.cols, rows, cols);
    return q;
  };
  const auto tensors = layer_tensors(m.cfg);
  for (int i = 0; i < m.cfg.n_layers; ++i) {
    Layer& L = m.layers[size_t(i)];
    for (const LayerTensor& t : tensors) {
      if (t.linears.empty()) continue;
      std::string prefix = layer_prefix(i) + t.name.substr(0, t.name.size() - std::string(".weight").size());
      std::vector<Linear*> parts;
      for (auto [part, rows] : t.linears) parts.push_back(&(L.*part));
      assign_fused(parts, load(prefix, t.shape[0], t.shape[1]));
    }
  }
}

// A multimodal checkpoint's language model under the names of a text-only one; the vision tower and projector are
// dropped. Gemma 3 as released stores "language_model.model.*" and "language_model.lm_head.*"; transformers v5 saves
// "model.language_model.*" and "lm_head.*".
void keep_text_tower(Checkpoint& ck, const std::string& config_path) {
  const bool released = ck.find("language_model.model.embed_tokens.weight") != nullptr;
  const bool v5 = ck.find("model.language_model.embed_tokens.weight") != nullptr;
  if (!released && !v5)
    fail("{}: a multimodal config, but the checkpoint holds no language model "
         "(language_model.model.embed_tokens.weight or model.language_model.embed_tokens.weight)", config_path);
  if (released) ck.keep_renamed({{"language_model.model.", "model."}, {"language_model.lm_head.", "lm_head."}});
  else ck.keep_renamed({{"model.language_model.", "model."}, {"lm_head.", "lm_head."}});
}

// The layer index of a "model.layers.<i>...." tensor name; -1 for other names, INT64_MAX for a malformed index.
int64_t layer_of(const std::string& name) {
  static const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return -1;
  size_t k = prefix.size(), e = name.find('.', k);
  if (e == std::string::npos || e == k || e - k > 9) return INT64_MAX;
  int64_t i = 0;
  for (; k < e; ++k) {
    if (name[k] < '0' || name[k] > '9') return INT64_MAX;
    i = i * 10 + (name[k] - '0');
  }
  return i;
}

// Checks config.json against the checkpoint before anything is sized by the config: a num_hidden_layers of 2^30
// must fail here, not while a list of its tensors grows; a config with fewer layers than the checkpoint must not
// silently ignore the rest.
void check_config_against_checkpoint(const ModelConfig& c, const Checkpoint& ck, const std::string& config_path) {
  const TensorInfo* embed = ck.find("model.embed_tokens.weight");
  if (!embed) fail("{}: the checkpoint lacks model.embed_tokens.weight", config_path);
  if (embed->shape != std::vector<int64_t>{c.vocab, c.hidden})
    fail("{}: vocab_size {} and hidden_size {} disagree with {}'s model.embed_tokens.weight of shape {}", config_path,
         c.vocab, c.hidden, *embed->file, shape_str(embed->shape));
  int64_t layers_held = 0;
  for (const auto& [name, t] : ck.tensors()) {
    int64_t i = layer_of(name);
    if (i == INT64_MAX) fail("{}: tensor '{}' has a malformed layer index", *t.file, name);
    if (i >= c.n_layers)
      fail("{}: tensor '{}' belongs to layer {}, but {} says num_hidden_layers is {} (it would be ignored)", *t.file,
           name, i, config_path, c.n_layers);
    layers_held = std::max(layers_held, i + 1);
  }
  if (layers_held < c.n_layers)
    fail("{}: num_hidden_layers is {} but the checkpoint's tensors hold {} layers", config_path, c.n_layers,
         layers_held);
}

}  // namespace

Model load_model(const std::filesystem::path& dir) {
  Model m;
  m.cfg = load_model_config(dir);
  m.checkpoint = std::make_shared<Checkpoint>(Checkpoint::open(dir));
  if (m.cfg.text_tower) keep_text_tower(*m.checkpoint, (dir / "config.json").string());
  const std::string config_path = (dir / "config.json").string();
  check_config_against_checkpoint(m.cfg, *m.checkpoint, config_path);
  // transformers writes "quantization_config" into config.json when it saves a bitsandbytes-quantized model.
  std::optional<float> bnb_threshold;
  try {
    auto j = parse_json(read_file(config_path, limits::kJsonFileBytes), config_path);
    if (j.is_object() && j.contains("quantization_config")) {
      const auto& qc = j["quantization_config"];
      if (!qc.is_object() || qc.value("quant_method", "") != "bitsandbytes")
        fail("{}: quantization_config is not bitsandbytes' (only bitsandbytes checkpoints are supported)", config_path);
      if (!qc.value("load_in_4bit", false) && !qc.value("load_in_8bit", false))
        fail("{}: quantization_config has neither load_in_4bit nor load_in_8bit", config_path);
      auto thr = qc.value("llm_int8_threshold", 6.0);
      if (!std::isfinite(thr) || thr < 0)
        fail("{}: llm_int8_threshold {} is not a non-negative number", config_path, thr);
      bnb_threshold = float(thr);
    }
  } catch (const nlohmann::json::exception& e) {  // a value of the wrong type
    fail("{}: quantization_config: {}", config_path, e.what());
  }
  std::set<std::string> used;
  for (auto& s : tensor_specs(m.cfg)) {
    used.insert(s.name);
    if (bnb_threshold && s.decoder_linear) continue;  // checked by from_bnb_tensors
    const TensorInfo& t = m.checkpoint->require(s.name, s.shape);
    if (!is_float_type(t.dtype))
      fail("{}: tensor '{}' has dtype {}; expected F32, F16 or BF16", *t.file, s.name, dtype_name(t.dtype));
  }
  for (const auto& [name, t] : m.checkpoint->tensors()) {
    // bitsandbytes keeps a quantized linear's state next to it: "<...>_proj.weight.absmax", "<...>_proj.SCB"...
    size_t proj = name.find("_proj.");
    bool bnb_state = bnb_threshold && proj != std::string::npos && used.count(name.substr(0, proj) + "_proj.weight");
    bool rope_buffer = name.ends_with(".rotary_emb.inv_freq");  // older transformers saved it; it is recomputed
    if (layer_of(name) >= 0 && !used.count(name) && !bnb_state && !rope_buffer)
      fail("{}: tensor '{}' is not used by the architecture {} describes", *t.file, name, config_path);
  }
  bind_weights(m, [&](const std::string& name) {
    const TensorInfo* t = m.checkpoint->find(name);
    return std::pair<const void*, DType>(t ? t->data : nullptr, t ? t->dtype : m.cfg.dtype);
  });
  if (bnb_threshold) load_prequantized_linears(m, *bnb_threshold);
  return m;
}

Model synthesize_model(const ModelConfig& c, uint64_t seed, float std) {
  Model m;
  m.cfg = c;
  auto specs = tensor_specs(c);
  std::map<std::string, size_t> index;
  double total = 0;
  for (auto& s : specs) total += 2e-9 * double(std::accumulate(s.shape.begin(), s.shape.end(), int64_t(1), std::multiplies<>()));
  ProgressMeter progress("making random weights", total, "GB");
  for (auto& s : specs) {
    int64_t n = 1;
    for (auto d : s.shape) n *= d;
    index[s.name] = m.owned.size();
    m.owned.emplace_back(size_t(n) * 2);
  }
  // Each tensor from its own generator (seeded by its name), so the weights do not depend on the threads: an 8B
  // model's 8 G draws take minutes on one core.
#pragma omp parallel for schedule(dynamic)
  for (size_t t = 0; t < specs.size(); ++t) {
    const auto& s = specs[t];
    auto* p = reinterpret_cast<uint16_t*>(m.owned[t].data());
    const int64_t n = int64_t(m.owned[t].size() / 2);
    std::mt19937_64 rng(seed ^ fnv1a(s.name));
    bool is_norm = s.shape.size() == 1 && s.name.find("bias") == std::string::npos;
    const float norm_mean = c.norm_plus_one ? 0.0f : 1.0f;  // applied weights near 1 either way
    std::normal_distribution<float> d(is_norm ? norm_mean : 0.0f, is_norm ? 0.1f : std);
    for (int64_t i = 0; i < n; ++i) p[i] = f32_to_bf16(d(rng));
    progress.advance(2e-9 * double(n));
  }
  bind_weights(m, [&](const std::string& name) {
    return std::pair<const void*, DType>(m.owned[index.at(name)].data(), DType::BF16);
  });
  return m;
}

}  // namespace bq

namespace bq {

void save_synthetic_checkpoint(const Model& m, const std::filesystem::path& dir, size_t shard_bytes, bool v5_config) {
  auto specs = tensor_specs(m.cfg);
  if (specs.size() != m.owned.size()) fail("save_synthetic_checkpoint: the model was not synthesized");
  std::filesystem::create_directories(dir);
  // Group tensors into shards in order, each at most shard_bytes (a single larger tensor gets a shard of its own).
  std::vector<std::vector<TensorToWrite>> shards(1);
  size_t in_shard = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    size_t nb = m.owned[i].size();
    if (in_shard > 0 && in_shard + nb > shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back({specs[i].name, DType::BF16, specs[i].shape, m.owned[i].data(), nb});
    in_shard += nb;
  }
  if (shards.size() == 1) {
    write_safetensors(dir / "model.safetensors", shards[0]);
  } else {
    nlohmann::json weight_map = nlohmann::json::object();
    size_t total = 0;
    for (size_t s = 0; s < shards.size(); ++s) {
      std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
      write_safetensors(dir / name, shards[s]);
      for (auto& t : shards[s]) {
        weight_map[t.name] = name;
        total += t.nbytes;
      }
    }
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_atomic(dir / "model.safetensors.index.json", index.dump(2));
  }
  write_file_atomic(dir / "config.json", model_config_to_json(m.cfg, v5_config).dump(2));
}

}  // namespace bq
