// Checks of batch invariance for every backend: a sequence's logits are the same bits whether its prompt runs alone, in
// chunks, beside other sequences' prompt and decode rows (products of more than 64 rows, the sequence at any place
// in them), or after a prefix copied from another sequence; greedy answers are the same at any batch size, with and
// without prefix reuse and chunked prefill.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/forward.h"
#include "generate/generate.h"
#include "model/model.h"
#include "model/quantize_model.h"
#include "test_util.h"

namespace bq::test {

inline std::vector<int32_t> random_ids(int n, int vocab, std::mt19937& rng) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = int32_t(rng() % uint32_t(vocab));
  return ids;
}

// How the target sequence's tokens go through the model: in chunks, each in one step with `before` rows of another
// sequence's prompt ahead of it and `decoders` one-row sequences behind it; `copied` positions first copied from a
// sequence that ran the same tokens.
struct Schedule {
  std::vector<int> chunks;
  int before = 0, decoders = 0, copied = 0;
};

// The target's logits at every position it computes ([positions from `copied`, vocab]).
inline std::vector<float> target_logits(ForwardBackend& f, const std::vector<int32_t>& ids, const Schedule& s, std::mt19937& rng) {
  const int vocab = f.config().vocab, n = int(ids.size());
  std::vector<int> opened;
  const int target = f.open_sequence(n);
  opened.push_back(target);
  if (s.copied > 0) {
    const int donor = f.open_sequence(n);
    opened.push_back(donor);
    ForwardBatch b;
    for (int i = 0; i < s.copied; ++i) b.tokens.push_back(ids[size_t(i)]), b.seq.push_back(donor);
    b.logit_rows = {s.copied - 1};
    std::vector<float> ignored(static_cast<size_t>(vocab));
    f.run(b, ignored.data());
    EXPECT_TRUE(f.copy_prefix(donor, target, s.copied));
  }
  const int steps = int(s.chunks.size());
  const int other = f.open_sequence(std::max(1, s.before * steps));
  opened.push_back(other);
  std::vector<int> decoders;
  for (int d = 0; d < s.decoders; ++d) decoders.push_back(f.open_sequence(steps + 1)), opened.push_back(decoders.back());
  std::vector<float> out;
  int at = s.copied;
  for (int chunk : s.chunks) {
    ForwardBatch b;
    for (int i = 0; i < s.before; ++i) b.tokens.push_back(int32_t(rng() % uint32_t(vocab))), b.seq.push_back(other);
    const int first = int(b.tokens.size());
    for (int i = 0; i < chunk; ++i) b.tokens.push_back(ids[size_t(at + i)]), b.seq.push_back(target);
    for (int d : decoders) b.tokens.push_back(int32_t(rng() % uint32_t(vocab))), b.seq.push_back(d);
    // Logits of the target's rows, and of the others' last rows (lm_head's launches then hold other rows too).
    if (s.before > 0) b.logit_rows.push_back(first - 1);
    for (int i = 0; i < chunk; ++i) b.logit_rows.push_back(first + i);
    for (int d = 0; d < s.decoders; ++d) b.logit_rows.push_back(first + chunk + d);
    std::vector<float> logits(b.logit_rows.size() * size_t(vocab));
    f.run(b, logits.data());
    const size_t skip = s.before > 0 ? 1 : 0;
    out.insert(out.end(), logits.begin() + long(skip * size_t(vocab)), logits.begin() + long((skip + size_t(chunk)) * size_t(vocab)));
    at += chunk;
  }
  EXPECT_EQ(at, n) << "the chunks cover the tokens after the copied ones";
  for (int id : opened) f.close_sequence(id);
  return out;
}

// The number of the first differing value, or -1 where all bits agree.
inline long first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return long(i);
  return -1;
}

// The trained fixture model (tests/fixtures/trained-llama) at a precision: bf16 as stored, or quantized: "nf4/f16",
// "nf4/bf16", "int8/f16" (compute dtype after the slash), "llm-int8".
inline Model trained_fixture(const std::string& precision) {
  Model m = load_model(source_dir() / "tests/fixtures/trained-llama");
  if (precision == "bf16") return m;
  quant::QuantOptions opt;
  opt.scheme = precision == "llm-int8"              ? quant::Scheme::LLMInt8
               : precision.rfind("int8", 0) == 0 ? quant::Scheme::Int8
                                                 : quant::Scheme::NF4;
  if (precision.ends_with("/f16")) opt.compute = DType::F16;
  if (precision.ends_with("/bf16")) opt.compute = DType::BF16;
  quantize_model(m, opt);
  return m;
}

// A 90-token prompt alone, then in the schedules below: where its logits differ in any bit (none: empty).
inline std::vector<std::string> schedule_differences(ForwardBackend& f) {
  std::mt19937 rng(11);
  const int n = 90, vocab = f.config().vocab;
  const std::vector<int32_t> ids = random_ids(n, vocab, rng);
  const std::vector<float> alone = target_logits(f, ids, Schedule{{n}}, rng);
  const std::vector<Schedule> schedules = {
      {{1, 16, 17, 40, 16}},         // chunks of the kernels' switch points, alone
      {{n}, 70, 10},                 // behind 70 rows (GPU launches of 64 cut the prompt), 10 decoders after
      {{3, 1, 60, 26}, 5, 40},       // chunks beside decoders, one row among them
      {{1, 1, 1, 1, 1, 85}, 0, 63},  // one-row chunks (the prompt's rows as decode rows would be)
      {{50}, 0, 0, 40},              // after a prefix of 40 positions copied from another sequence
      {{7, 43}, 30, 9, 40},          // the same, beside others
  };
  std::vector<std::string> out;
  for (size_t i = 0; i < schedules.size(); ++i) {
    const int copied = schedules[i].copied;
    const std::vector<float> want(alone.begin() + long(copied) * vocab, alone.end());
    const long at = first_difference(target_logits(f, ids, schedules[i], rng), want);
    if (at >= 0) out.push_back("schedule " + std::to_string(i) + ": position " + std::to_string(copied + at / vocab));
  }
  EXPECT_EQ(f.memory().kv_cache_bytes, 0u);
  return out;
}

// Greedy answers of `examples` prompts that share a 120-token instruction, as evaluation sends them: one at a time
// without prefix reuse, then 5 or all in flight, with and without reuse, and in chunks of 7 rows. The requests whose
// answer differs from the first run's, per run.
inline std::vector<std::string> greedy_answer_differences(ForwardBackend& f, int examples) {
  std::mt19937 rng(3);
  const int vocab = f.config().vocab;
  const std::vector<int32_t> instruction = random_ids(120, vocab, rng);
  std::vector<TokenRequest> reqs;
  for (int example = 0; example < examples; ++example) {
    TokenRequest r{instruction, {}};
    for (int32_t t : random_ids(10 + example, vocab, rng)) r.prompt.push_back(t);
    r.opt.max_new_tokens = 16;
    reqs.push_back(r);
  }
  const auto single = generate_tokens(f, reqs, {}, nullptr, {.max_in_flight = 1, .reuse_prefixes = false});
  const std::vector<LoopOptions> runs = {{.max_in_flight = 5},
                                         {.max_in_flight = examples},
                                         {.max_in_flight = examples, .reuse_prefixes = false},
                                         {.max_in_flight = examples, .max_step_tokens = 7}};
  std::vector<std::string> out;
  for (size_t k = 0; k < runs.size(); ++k) {
    const auto got = generate_tokens(f, reqs, {}, nullptr, runs[k]);
    for (size_t i = 0; i < reqs.size(); ++i)
      if (got[i].tokens != single[i].tokens) out.push_back("run " + std::to_string(k) + ", request " + std::to_string(i));
  }
  return out;
}

}  // namespace bq::test
