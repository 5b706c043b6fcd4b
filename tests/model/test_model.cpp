#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/cpu_forward.h"
#include "generate/generate.h"
#include "model_reference.h"
#include "test_util.h"

namespace bq {
namespace {

ModelConfig small_config(const std::string& arch) {
  ModelConfig c;
  c.arch = arch;
  c.hidden = 48;
  c.intermediate = 80;
  c.n_layers = 2;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.vocab = 97;
  c.rms_eps = 1e-5f;
  c.rope_theta = 10000;
  c.max_positions = 256;
  if (arch == "qwen2") {
    c.attn_bias = true;
    c.tie_embeddings = true;
  }
  if (arch == "phi3") c.fused_qkv = true;
  if (arch == "qwen3") {  // heads x head_dim (60) differs from hidden (48)
    c.qk_norm = true;
    c.head_dim = 10;
    c.tie_embeddings = true;
  }
  if (arch == "gemma3_text") {  // windows of 9 (< the 40-token prompt) on layers 0 and 2, the local base there
    apply_architecture(c, find_architecture(arch, "test"));
    c.n_layers = 3;
    c.head_dim = 10;
    c.query_pre_attn_scalar = 12;
    c.sliding_window = 9;
    c.sliding_layers = {true, false, true};
    c.rope_theta = 1e6;
    c.rope_scaling = RopeScaling::Linear;
    c.rope_factor = 2;
    c.tie_embeddings = true;
  }
  if (arch == "llama") {
    c.rope_scaling = RopeScaling::Llama3;
    c.rope_factor = 8;
    c.rope_low_freq_factor = 1;
    c.rope_high_freq_factor = 4;
    c.rope_original_max_positions = 32;  // small, so that the three wavelength bands all occur at head_dim 8
  }
  return c;
}

std::vector<float> all_logits(CpuForward& fwd, const ModelConfig& c, const std::vector<int>& ids) {
  int s = fwd.open_sequence(int(ids.size()));
  ForwardBatch b;
  for (size_t i = 0; i < ids.size(); ++i) {
    b.tokens.push_back(ids[i]);
    b.seq.push_back(s);
    b.logit_rows.push_back(int(i));
  }
  std::vector<float> out(ids.size() * size_t(c.vocab));
  fwd.run(b, out.data());
  fwd.close_sequence(s);
  return out;
}

class ArchTest : public ::testing::TestWithParam<std::string> {};

// The engine, loading a checkpoint written by our writer, agrees with the plain double-precision reference.
TEST_P(ArchTest, MatchesPlainReference) {
  ModelConfig c = small_config(GetParam());
  auto dir = test::temp_dir("ref-" + GetParam());
  save_synthetic_checkpoint(synthesize_model(c, 7, 0.2f), dir, /*shard_bytes=*/40000);  // several shards
  Model m = load_model(dir);
  CpuForward fwd(m);
  std::mt19937 rng(3);
  std::vector<int> ids(40);
  for (auto& t : ids) t = int(rng() % uint32_t(c.vocab));
  auto ours = all_logits(fwd, m.cfg, ids);
  auto ref = test::reference_logits(*m.checkpoint, m.cfg, ids);
  double max_ref = 0, max_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(ref[i]));
    max_diff = std::max(max_diff, std::fabs(ref[i] - ours[i]));
  }
  EXPECT_GT(max_ref, 0.1);
  EXPECT_LE(max_diff, 1e-4 * max_ref) << "max |diff| " << max_diff << " of max |ref| " << max_ref;
}

// Decoding one token at a time through the KV cache gives the logits of a full prefill.
TEST_P(ArchTest, IncrementalDecodeEqualsPrefill) {
  ModelConfig c = small_config(GetParam());
  Model m = synthesize_model(c, 11, 0.2f);
  CpuForward fwd(m);
  std::vector<int> ids = {5, 17, 3, 96, 42, 42, 8, 0, 61, 33};
  auto full = all_logits(fwd, c, ids);
  int s = fwd.open_sequence(int(ids.size()));
  std::vector<float> step(size_t(c.vocab));
  for (size_t i = 0; i < ids.size(); ++i) {
    ForwardBatch b{{ids[i]}, {s}, {0}};
    fwd.run(b, step.data());
    for (int v = 0; v < c.vocab; ++v) ASSERT_NEAR(step[size_t(v)], full[i * size_t(c.vocab) + size_t(v)], 1e-4) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, ArchTest, ::testing::Values("llama", "qwen2", "phi3", "mistral", "qwen3", "gemma3_text"));

// Sequences batched together give the same logits as each run alone.
TEST(Forward, BatchedSequencesAreIndependent) {
  ModelConfig c = small_config("llama");
  Model m = synthesize_model(c, 5, 0.2f);
  CpuForward fwd(m);
  std::vector<int> a = {1, 2, 3, 4, 5, 6, 7}, b = {9, 8, 7};
  auto la = all_logits(fwd, c, a), lb = all_logits(fwd, c, b);
  int sa = fwd.open_sequence(7), sb = fwd.open_sequence(3);
  ForwardBatch batch;
  for (size_t i = 0; i < a.size(); ++i) batch.tokens.push_back(a[i]), batch.seq.push_back(sa);
  for (size_t i = 0; i < b.size(); ++i) batch.tokens.push_back(b[i]), batch.seq.push_back(sb);
  batch.logit_rows = {6, 9};
  std::vector<float> out(2 * size_t(c.vocab));
  fwd.run(batch, out.data());
  for (int v = 0; v < c.vocab; ++v) {
    EXPECT_NEAR(out[size_t(v)], la[6 * size_t(c.vocab) + size_t(v)], 1e-4);
    EXPECT_NEAR(out[size_t(c.vocab + v)], lb[2 * size_t(c.vocab) + size_t(v)], 1e-4);
  }
}

// Batched generation: greedy continuations equal those of each prompt alone; lengths and EOS are honoured.
TEST(Generate, BatchedGreedyEqualsSingle) {
  ModelConfig c = small_config("qwen2");
  Model m = synthesize_model(c, 13, 0.3f);
  CpuForward fwd(m);
  SamplingOptions o;
  o.max_new_tokens = 12;
  std::vector<TokenRequest> reqs = {{{1, 2, 3}, o}, {{50, 60, 70, 80, 90}, o}, {{4}, o}};
  auto together = generate_tokens(fwd, reqs, {});
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto alone = generate_tokens(fwd, {reqs[i]}, {});
    EXPECT_EQ(together[i].tokens, alone[0].tokens) << i;
    EXPECT_EQ(together[i].tokens.size(), 12u);
    EXPECT_EQ(together[i].finish_reason, "length");
  }
  // Making the 4th greedy token an EOS id ends the sequence there.
  int32_t eos = together[0].tokens[3];
  auto stopped = generate_tokens(fwd, {reqs[0]}, {eos});
  auto first = std::find(together[0].tokens.begin(), together[0].tokens.end(), eos) - together[0].tokens.begin();
  EXPECT_EQ(stopped[0].tokens.size(), size_t(first));
  EXPECT_EQ(stopped[0].finish_reason, "eos");
}

// Continuous batching: with two places for five requests of different lengths, prompts are admitted into the
// places others free, in the middle of their decoding; every continuation still equals the request alone, each
// request is reported once as it ends, and no cache is left open.
TEST(Generate, ContinuousBatchingAdmitsAsOthersFinish) {
  ModelConfig c = small_config("llama");
  Model m = synthesize_model(c, 17, 0.3f);
  CpuForward fwd(m);
  std::vector<TokenRequest> reqs;
  const int lengths[] = {3, 9, 1, 6, 4};
  for (int i = 0; i < 5; ++i) {
    SamplingOptions o;
    o.max_new_tokens = lengths[i];
    std::vector<int32_t> prompt;
    for (int t = 0; t <= i; ++t) prompt.push_back(int32_t(10 * i + t + 1));
    reqs.push_back({prompt, o});
  }
  std::vector<size_t> order;
  auto results = generate_tokens(fwd, reqs, {}, nullptr, {.max_in_flight = 2}, [&](size_t i, const TokenResult& r) {
    EXPECT_EQ(int(r.tokens.size()), lengths[i]) << i;
    order.push_back(i);
  });
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto alone = generate_tokens(fwd, {reqs[i]}, {});
    EXPECT_EQ(results[i].tokens, alone[0].tokens) << i;
    EXPECT_EQ(results[i].finish_reason, "length");
  }
  // Request 0 (3 tokens) ends at step 3 while 1 (9 tokens) goes on to step 9; request 2 takes 0's place at step 4
  // and ends there (1 token); 3 takes it at step 5 and ends at step 10, after 1; 4 comes last.
  EXPECT_EQ(order, (std::vector<size_t>{0, 2, 1, 3, 4}));
  EXPECT_EQ(fwd.memory().kv_cache_bytes, 0u);
  // A prompt that cannot fit is refused before any work, naming the request.
  reqs[3].opt.max_new_tokens = c.max_positions;
  try {
    generate_tokens(fwd, reqs, {}, nullptr, {.max_in_flight = 2});
    ADD_FAILURE() << "no error";
  } catch (const PromptTooLong& e) {
    EXPECT_EQ(e.request, 3u);
  }
  EXPECT_EQ(fwd.memory().kv_cache_bytes, 0u);
}

TEST(Generate, SeededSamplingIsReproducibleAndVaries) {
  ModelConfig c = small_config("llama");
  Model m = synthesize_model(c, 21, 0.05f);  // flat logits: sampling has real choices
  CpuForward fwd(m);
  SamplingOptions o;
  o.max_new_tokens = 16;
  o.temperature = 1.0f;
  o.top_p = 0.95f;
  std::vector<TokenRequest> reqs;
  for (uint64_t s = 0; s < 4; ++s) {
    o.seed = s;
    reqs.push_back({{1, 2, 3}, o});
  }
  auto r1 = generate_tokens(fwd, reqs, {});
  auto r2 = generate_tokens(fwd, reqs, {});
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(r1[i].tokens, r2[i].tokens);
  EXPECT_NE(r1[0].tokens, r1[1].tokens);
}

}  // namespace
}  // namespace bq
