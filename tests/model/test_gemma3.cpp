// Gemma 3's config and checkpoint forms: released text_config with fields left to their defaults, both RoPE
// spellings, the two tensor prefixes of a multimodal checkpoint, and what is refused (Gemma 2, soft-capping).
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "backend/cpu/cpu_forward.h"
#include "core/error.h"
#include "core/files.h"
#include "backend/kv_layout.h"
#include "model/model.h"
#include "model_reference.h"
#include "test_util.h"

namespace bq {
namespace {

using nlohmann::json;

std::string error_of(const json& j) {
  try {
    parse_model_config(j, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The text_config of a released Gemma 3 4B config.json: what it states, the rest transformers' defaults.
json released_4b() {
  return {{"architectures", {"Gemma3ForConditionalGeneration"}},
          {"model_type", "gemma3"},
          {"eos_token_id", {1, 106}},
          {"torch_dtype", "bfloat16"},
          {"text_config",
           {{"hidden_size", 2560},
            {"intermediate_size", 10240},
            {"model_type", "gemma3_text"},
            {"num_hidden_layers", 34},
            {"rope_scaling", {{"factor", 8.0}, {"rope_type", "linear"}}},
            {"sliding_window", 1024}}},
          {"vision_config", {{"model_type", "siglip_vision_model"}}}};
}

TEST(Gemma3Config, ReleasedTextConfigTakesTheDefaults) {
  ModelConfig c = parse_model_config(released_4b(), "config.json");
  ModelConfig p = preset_config("medgemma-4b");
  EXPECT_TRUE(c.text_tower);
  EXPECT_EQ(c.arch, "gemma3_text");
  EXPECT_EQ(c.vocab, 262208);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.query_pre_attn_scalar, 256.0f);
  EXPECT_EQ(c.act, Activation::GeluTanh);
  EXPECT_TRUE(c.tie_embeddings && c.norm_plus_one && c.sandwich_norms && c.scale_embeddings && c.qk_norm);
  EXPECT_EQ(c.eos_ids, (std::vector<int>{1, 106})) << "the wrapper's eos ids where text_config names none";
  // Every sixth layer (from 1) global, the others sliding over 1024 positions.
  ASSERT_EQ(c.sliding_layers.size(), 34u);
  for (int l = 0; l < 34; ++l) EXPECT_EQ(c.is_sliding(l), (l + 1) % 6 != 0) << l;
  EXPECT_EQ(c.attended(0, 5000), 1024);
  EXPECT_EQ(c.attended(5, 5000), 5000);
  // Global layers: base 1e6 with linear scaling by 8; sliding ones: base 1e4, unscaled.
  EXPECT_DOUBLE_EQ(rope_inv_freq(c)[1], std::pow(1e6, -2.0 / 256) / 8);
  EXPECT_DOUBLE_EQ(rope_inv_freq(c, true)[1], std::pow(1e4, -2.0 / 256));
  EXPECT_EQ(rope_inv_freq(c), rope_inv_freq(p));
  EXPECT_EQ(rope_inv_freq(c, true), rope_inv_freq(p, true));
  EXPECT_FLOAT_EQ(c.attn_scale(), 1.0f / 16);
}

TEST(Gemma3Config, BothSpellingsRoundTrip) {
  for (const char* preset : {"medgemma-4b", "medgemma-27b"})
    for (bool v5 : {false, true}) {
      SCOPED_TRACE(std::string(preset) + (v5 ? " v5" : " v4"));
      ModelConfig c = preset_config(preset);
      ModelConfig r = parse_model_config(model_config_to_json(c, v5), "config.json");
      EXPECT_EQ(r.sliding_layers, c.sliding_layers);
      EXPECT_EQ(r.sliding_window, c.sliding_window);
      EXPECT_EQ(r.query_pre_attn_scalar, c.query_pre_attn_scalar);
      EXPECT_EQ(r.act, c.act);
      EXPECT_EQ(rope_inv_freq(r), rope_inv_freq(c));
      EXPECT_EQ(rope_inv_freq(r, true), rope_inv_freq(c, true));
      EXPECT_NE(rope_inv_freq(r), rope_inv_freq(r, true));
    }
  // MedGemma 27B: head_dim 128 but scores scaled by 168^-1/2 (hidden / heads).
  EXPECT_FLOAT_EQ(preset_config("medgemma-27b").attn_scale(), float(1 / std::sqrt(168.0)));
}

TEST(Gemma3Config, SlidingWindowPatternWithoutLayerTypes) {
  json j = released_4b()["text_config"];
  j["num_hidden_layers"] = 8;
  j["sliding_window_pattern"] = 4;
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.sliding_layers, (std::vector<bool>{true, true, true, false, true, true, true, false}));
  EXPECT_FALSE(c.text_tower);
}

TEST(Gemma3Config, RefusesWhatItDoesNotRun) {
  json text = released_4b()["text_config"];
  EXPECT_NE(error_of({{"model_type", "gemma2"}}).find("Gemma 2"), std::string::npos);
  json capped = text;
  capped["final_logit_softcapping"] = 30.0;
  EXPECT_NE(error_of(capped).find("'final_logit_softcapping' (logit soft-capping"), std::string::npos);
  json types = text;
  types["num_hidden_layers"] = 2;
  types["layer_types"] = {"sliding_attention", "chunked_attention"};
  EXPECT_NE(error_of(types).find("layer_types[1]"), std::string::npos);
  types["layer_types"] = {"sliding_attention"};
  EXPECT_NE(error_of(types).find("one type per layer (2)"), std::string::npos);
  json act = text;
  act["hidden_activation"] = "relu";
  EXPECT_NE(error_of(act).find("unsupported activation 'relu'"), std::string::npos);
  json no_text = released_4b();
  no_text.erase("text_config");
  EXPECT_NE(error_of(no_text).find("needs a 'text_config' object"), std::string::npos);
  json wrong_text = released_4b();
  wrong_text["text_config"]["model_type"] = "llama";
  EXPECT_NE(error_of(wrong_text).find("expected \"gemma3_text\""), std::string::npos);
}

std::vector<float> prompt_logits(const Model& m, const std::vector<int32_t>& ids) {
  CpuForward fwd(m);
  int s = fwd.open_sequence(int(ids.size()));
  ForwardBatch b;
  for (size_t i = 0; i < ids.size(); ++i) b.tokens.push_back(ids[i]), b.seq.push_back(s), b.logit_rows.push_back(int(i));
  std::vector<float> out(ids.size() * size_t(m.cfg.vocab));
  fwd.run(b, out.data());
  return out;
}

// transformers v5 saves a Gemma3ForConditionalGeneration under "model.language_model.*" where the released
// checkpoints have "language_model.model.*": the same tensors under either prefix give the same model.
TEST(Gemma3Checkpoint, TextTowerUnderEitherPrefix) {
  const auto fixture = test::source_dir() / "tests/fixtures/parity/gemma3-mm-tower";
  auto dir = test::temp_dir("gemma3-v5-names");
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(fixture / "config.json", dir / "config.json");
  Checkpoint ck = Checkpoint::open(fixture);
  std::vector<TensorToWrite> renamed;
  std::vector<std::string> names;
  names.reserve(ck.tensors().size());
  for (const auto& [name, t] : ck.tensors()) {
    const std::string from = "language_model.model.";
    names.push_back(name.rfind(from, 0) == 0 ? "model.language_model." + name.substr(from.size()) : "model." + name);
    renamed.push_back({names.back(), t.dtype, t.shape, t.data, t.nbytes});
  }
  write_safetensors(dir / "model.safetensors", renamed);
  const std::vector<int32_t> ids = {5, 17, 3, 96, 42, 42, 8, 0, 61, 33, 200, 7, 9, 250, 1, 12, 77};
  Model released = load_model(fixture), v5 = load_model(dir);
  EXPECT_EQ(prompt_logits(released, ids), prompt_logits(v5, ids));

  // Without a language model (only the vision tower kept) the error says what was looked for.
  std::vector<TensorToWrite> vision;
  for (const auto& t : renamed)
    if (t.name.find("vision_tower") != std::string::npos) vision.push_back(t);
  ASSERT_FALSE(vision.empty());
  write_safetensors(dir / "model.safetensors", vision);
  try {
    load_model(dir);
    FAIL() << "loaded a checkpoint without a language model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds no language model"), std::string::npos) << e.what();
  }
}

// The 1 + w norms and sqrt(hidden) embedding scale are applied once, at load: a synthesized checkpoint round-trips to
// the weights its reference applies.
TEST(Gemma3Checkpoint, NormsHeldAsApplied) {
  ModelConfig c = preset_config("medgemma-4b");
  c.hidden = 32, c.intermediate = 48, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 16, c.vocab = 64;
  c.sliding_layers = {true, false};
  auto dir = test::temp_dir("gemma3-norms");
  save_synthetic_checkpoint(synthesize_model(c, 5), dir);
  Model m = load_model(dir);
  const TensorInfo* stored = m.checkpoint->find("model.layers.1.post_feedforward_layernorm.weight");
  ASSERT_NE(stored, nullptr);
  std::vector<float> w(size_t(c.hidden));
  to_f32(stored->dtype, stored->data, w.data(), w.size());
  for (int i = 0; i < c.hidden; ++i) EXPECT_EQ(m.layers[1].post_mlp_norm[size_t(i)], w[size_t(i)] + 1.0f);
  std::vector<float> row(size_t(c.hidden)), raw(row.size());
  m.embed_row(3, row.data());
  to_f32(m.embed_dtype, static_cast<const uint8_t*>(m.embed) + 3 * c.hidden * 2, raw.data(), raw.size());
  for (int i = 0; i < c.hidden; ++i) EXPECT_EQ(row[size_t(i)], raw[size_t(i)] * float(std::sqrt(32.0)));
}

}  // namespace
}  // namespace bq

namespace bq {
namespace {

ModelConfig ring_config() {
  ModelConfig c = preset_config("medgemma-4b");
  c.hidden = 48, c.intermediate = 80, c.n_layers = 3, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 12, c.vocab = 97;
  c.query_pre_attn_scalar = 10;
  c.sliding_window = 9;
  c.sliding_layers = {true, false, true};
  c.max_positions = 4096;
  return c;
}

double max_rel_diff(const std::vector<float>& ours, const std::vector<double>& ref) {
  double max_ref = 0, max_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(ref[i]));
    max_diff = std::max(max_diff, std::fabs(ref[i] - double(ours[i])));
  }
  return max_diff / max_ref;
}

// A sliding layer's cache is a ring of window + kSlidingPassRows slots in whole pages (1088 here): a 2200-position
// sequence wraps it twice, prefilled whole (in passes of 1024 rows) or decoded a token at a time, and its logits still equal the
// plain reference's, which keeps every position.
TEST(SlidingWindowCache, RingWrapsAndLogitsStay) {
  ModelConfig c = ring_config();
  auto dir = test::temp_dir("gemma3-ring");
  save_synthetic_checkpoint(synthesize_model(c, 9, 0.2f), dir);
  Model m = load_model(dir);
  const int n = 2200, ring = 17 * kKvPageSlots, full = 35 * kKvPageSlots;  // 9 + 1024 and 2200 in whole pages
  std::vector<int> ids(n);
  std::mt19937 rng(4);
  for (auto& t : ids) t = int(rng() % uint32_t(c.vocab));
  const auto ref = test::reference_logits(*m.checkpoint, m.cfg, ids);

  CpuForward fwd(m);
  EXPECT_EQ(kv_shape(c, 0, 3).ring, ring);
  EXPECT_EQ(kv_positions(c, 0, 3, n), ring + full + ring) << "two ring layers and one full one";
  const int whole = fwd.open_sequence(n);
  EXPECT_EQ(fwd.memory().kv_cache_bytes, 0u) << "pages come as positions are written";
  ForwardBatch b;
  for (int i = 0; i < n; ++i) b.tokens.push_back(ids[size_t(i)]), b.seq.push_back(whole), b.logit_rows.push_back(i);
  std::vector<float> prefill(size_t(n) * size_t(c.vocab));
  fwd.run(b, prefill.data());
  EXPECT_LT(max_rel_diff(prefill, ref), 1e-4) << "prefill in passes";
  EXPECT_EQ(fwd.memory().kv_cache_bytes, size_t(ring + full + ring) * size_t(c.kv_dim()) * 2 * sizeof(float));

  const int stepped = fwd.open_sequence(n);
  std::vector<float> decoded(prefill.size());
  ForwardBatch head;
  for (int i = 0; i < 2000; ++i) head.tokens.push_back(ids[size_t(i)]), head.seq.push_back(stepped), head.logit_rows.push_back(i);
  fwd.run(head, decoded.data());
  for (int i = 2000; i < n; ++i) fwd.run({{ids[size_t(i)]}, {stepped}, {0}}, decoded.data() + size_t(i) * size_t(c.vocab));
  EXPECT_LT(max_rel_diff(decoded, ref), 1e-4) << "decoded a token at a time";

  // A prefix copy needs the source's ring to still hold the prefix's last window: of the 2200-position sequence,
  // positions from 2200 - 1088 = 1112 on remain, so a 2000-position prefix copies and a 1000-position one cannot.
  const int copy = fwd.open_sequence(n);
  EXPECT_FALSE(fwd.copy_prefix(whole, copy, 1000));
  ASSERT_TRUE(fwd.copy_prefix(whole, copy, 2000));
  ForwardBatch rest;
  for (int i = 2000; i < n; ++i) rest.tokens.push_back(ids[size_t(i)]), rest.seq.push_back(copy), rest.logit_rows.push_back(i - 2000);
  std::vector<float> continued(size_t(n - 2000) * size_t(c.vocab));
  fwd.run(rest, continued.data());
  EXPECT_LT(max_rel_diff(continued, std::vector<double>(ref.begin() + 2000 * c.vocab, ref.end())), 1e-4)
      << "continued after the copy";
}

// A pass takes at most max_per_sequence rows of one sequence (kSlidingPassRows where the model has sliding layers);
// other sequences' rows fill the rest.
TEST(SlidingWindowCache, PassesBoundRowsPerSequence) {
  ForwardBatch b;
  for (int i = 0; i < 600; ++i) b.tokens.push_back(0), b.seq.push_back(0);
  for (int i = 0; i < 10; ++i) b.tokens.push_back(0), b.seq.push_back(1);
  EXPECT_EQ(pass_end(b, 0, 1024, 256), 256);  // bounds other than the built-in one, to see the cuts
  EXPECT_EQ(pass_end(b, 256, 1024, 256), 512);
  EXPECT_EQ(pass_end(b, 512, 1024, 256), 610) << "88 rows of sequence 0, then sequence 1's";
  EXPECT_EQ(pass_end(b, 0, 100, 256), 100);
  EXPECT_EQ(pass_end(b, 0, 1024, INT_MAX), 610);
  EXPECT_EQ(max_sequence_rows_per_pass(ring_config()), kSlidingPassRows);
  EXPECT_EQ(max_sequence_rows_per_pass(preset_config("llama-3.1-8b")), INT_MAX);
}

}  // namespace
}  // namespace bq
