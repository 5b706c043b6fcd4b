// The decode loop as a server drives it: requests joining while others decode, cancellation, results handed once.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "generate/engine.h"
#include "generate/generate.h"
#include "backend/cpu/cpu_forward.h"
#include "backend/kv_layout.h"
#include "model/model.h"
#include "test_util.h"

namespace {

using namespace bq;

ModelConfig loop_config() {
  ModelConfig c = preset_config("tiny");
  c.max_positions = 128;
  return c;
}

TokenRequest request(std::vector<int32_t> prompt, int max_new, float temperature = 0, uint64_t seed = 0) {
  SamplingOptions o;
  o.max_new_tokens = max_new;
  o.temperature = temperature;
  o.seed = seed;
  return {std::move(prompt), o};
}

// Requests submitted while others are mid-decode get the same tokens as alone (greedy and seeded sampling), and
// every step reports exactly the tokens that the results end up holding.
TEST(DecodeLoop, RequestsJoiningMidDecodeMatchTheirSoloRuns) {
  Model m = synthesize_model(loop_config(), 21, 0.3f);
  CpuForward fwd(m);
  std::vector<TokenRequest> reqs = {request({1, 2, 3}, 9), request({7, 8}, 5, 0.8f, 42), request({11}, 7),
                                    request({20, 21, 22, 23}, 4, 1.0f, 7)};
  DecodeLoop loop(fwd, {}, {.max_in_flight = 3});
  std::map<size_t, std::vector<int32_t>> streamed;
  std::map<size_t, TokenResult> results;
  auto run_step = [&] {
    auto s = loop.step();
    for (auto [id, tok] : s.tokens) streamed[id].push_back(tok);
    for (size_t id : s.finished) results[id] = loop.take_result(id);
  };
  EXPECT_EQ(loop.submit(reqs[0]), 0u);
  run_step();
  run_step();
  EXPECT_EQ(loop.submit(reqs[1]), 1u);  // joins at step 3, while request 0 decodes
  run_step();
  EXPECT_EQ(loop.submit(reqs[2]), 2u);
  EXPECT_EQ(loop.submit(reqs[3]), 3u);  // waits for a free place (3 at most)
  while (!loop.idle()) run_step();
  ASSERT_EQ(results.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto alone = generate_tokens(fwd, {reqs[i]}, {});
    EXPECT_EQ(results[i].tokens, alone[0].tokens) << i;
    EXPECT_EQ(streamed[i], results[i].tokens) << i;
    EXPECT_EQ(results[i].finish_reason, "length") << i;
  }
  EXPECT_EQ(fwd.memory().kv_cache_bytes, 0u);
}

// Cancelling frees the sequence at once, queued or live; the rest go on unchanged; results are handed over once.
TEST(DecodeLoop, CancelFreesTheSequenceAndReportsIt) {
  Model m = synthesize_model(loop_config(), 22, 0.3f);
  CpuForward fwd(m);
  DecodeLoop loop(fwd, {}, {.max_in_flight = 1});
  size_t a = loop.submit(request({1, 2}, 20)), b = loop.submit(request({3, 4}, 6)), c = loop.submit(request({5}, 3));
  loop.step();
  loop.step();
  size_t cache_with_a = fwd.memory().kv_cache_bytes;
  EXPECT_GT(cache_with_a, 0u);
  loop.cancel(a);  // live: its cache goes now
  EXPECT_EQ(fwd.memory().kv_cache_bytes, 0u);
  loop.cancel(c);  // still queued
  loop.cancel(c);  // twice: ignored
  auto s = loop.step();
  EXPECT_EQ(s.finished, (std::vector<size_t>{a, c}));
  TokenResult ra = loop.take_result(a);
  EXPECT_EQ(ra.finish_reason, "cancelled");
  EXPECT_EQ(ra.tokens.size(), 2u);
  EXPECT_EQ(loop.take_result(c).finish_reason, "cancelled");
  EXPECT_NE(bq::test::error_of([&] { loop.take_result(a); }).find("has not ended"), std::string::npos);
  EXPECT_NE(bq::test::error_of([&] { loop.take_result(b); }).find("has not ended"), std::string::npos);
  while (!loop.idle())
    for (size_t id : loop.step().finished) EXPECT_EQ(id, b);
  EXPECT_EQ(loop.take_result(b).tokens, generate_tokens(fwd, {request({3, 4}, 6)}, {})[0].tokens);
  EXPECT_EQ(fwd.memory().kv_cache_bytes, 0u);
}

TEST(DecodeLoop, RefusesWhatCannotFitBeforeQueueing) {
  Model m = synthesize_model(loop_config(), 23, 0.3f);
  CpuForward fwd(m);
  DecodeLoop loop(fwd, {}, {.max_in_flight = 2});
  EXPECT_THROW(loop.submit(request({1, 2, 3}, 126)), PromptTooLong);
  EXPECT_NE(bq::test::error_of([&] { loop.submit(request({}, 3)); }).find("empty"), std::string::npos);
  EXPECT_TRUE(loop.idle());
  EXPECT_EQ(loop.submit(request({1}, 2)), 0u);  // refused requests take no id
}

// Wraps a backend, counting which kind of step the loop asks for; `poison_row` makes run_greedy report that row's
// logits as non-finite.
class CountingBackend : public ForwardBackend {
 public:
  explicit CountingBackend(ForwardBackend& inner) : inner_(inner) {}
  int open_sequence(int capacity) override { return inner_.open_sequence(capacity); }
  void close_sequence(int id) override { inner_.close_sequence(id); }
  int sequence_length(int id) const override { return inner_.sequence_length(id); }
  void run(const ForwardBatch& b, float* logits) override {
    ++runs;
    max_rows = std::max(max_rows, b.tokens.size());
    inner_.run(b, logits);
  }
  void run_greedy(const ForwardBatch& b, int32_t* next) override {
    ++greedy_runs;
    max_rows = std::max(max_rows, b.tokens.size());
    inner_.run_greedy(b, next);
    if (poison_row >= 0 && size_t(poison_row) < b.logit_rows.size()) next[poison_row] = -1;
  }
  void set_kv_cache_limit(size_t bytes) override { inner_.set_kv_cache_limit(bytes); }
  const ModelConfig& config() const override { return inner_.config(); }
  MemoryFigures memory() const override { return inner_.memory(); }
  int runs = 0, greedy_runs = 0, poison_row = -1;
  size_t max_rows = 0;  // the most rows of one step

 private:
  ForwardBackend& inner_;
};

// All-greedy steps ask the backend for token ids only (run_greedy: on a GPU the logits never leave it); a step with
// a sampled request gets the logits. The tokens are the same either way.
TEST(DecodeLoop, GreedyStepsAskForIdsOnlyAndAgreeWithLogits) {
  Model m = synthesize_model(loop_config(), 5, 0.3f);
  CpuForward cpu(m);
  CountingBackend fwd(cpu);
  auto greedy = generate_tokens(fwd, {request({1, 2, 3}, 6), request({9}, 6)}, {});
  EXPECT_EQ(fwd.runs, 0);
  EXPECT_EQ(fwd.greedy_runs, 6);  // prefill (first tokens) + 5 decode steps
  // The same greedy requests beside a sampled one: every step brings logits to the host.
  fwd.greedy_runs = 0;
  auto mixed = generate_tokens(fwd, {request({1, 2, 3}, 6), request({9}, 6), request({4, 5}, 6, 0.9f, 3)}, {});
  EXPECT_EQ(fwd.greedy_runs, 0);
  EXPECT_EQ(fwd.runs, 6);
  EXPECT_EQ(mixed[0].tokens, greedy[0].tokens);
  EXPECT_EQ(mixed[1].tokens, greedy[1].tokens);
  EXPECT_EQ(greedy[0].tokens.size(), 6u);
}

// A row the backend reports as non-finite stops the run with an error naming the request and the token.
// The loop's step counts add up: every prompt token prefilled once, every generated token counted, decode-only steps
// never wider than the loop. Requests of lengths 6, 3, 6, 3, 6 in a loop of 2: admissions come in waves.
TEST(DecodeLoop, StatsCountEveryPromptAndGeneratedToken) {
  Model m = synthesize_model(loop_config(), 23, 0.3f);
  CpuForward fwd(m);
  std::vector<TokenRequest> reqs;
  size_t prompt_tokens = 0;
  for (int i = 0; i < 5; ++i) {
    reqs.push_back(request(std::vector<int32_t>(size_t(2 + i), int32_t(10 + i)), i % 2 ? 3 : 6));
    prompt_tokens += size_t(2 + i);
  }
  LoopStats stats;
  stats.generated_tokens = 100;  // added to, not replaced
  auto results = generate_tokens(fwd, reqs, {}, nullptr, {.max_in_flight = 2}, nullptr, nullptr, &stats);
  size_t generated = 0;
  for (auto& r : results) generated += r.tokens.size();
  EXPECT_EQ(generated, 24u);
  EXPECT_EQ(stats.generated_tokens, 100 + generated);
  EXPECT_EQ(stats.prompt_tokens, prompt_tokens);
  EXPECT_GE(stats.prefill_steps, 3u);  // at most two prompts admitted at once
  EXPECT_LE(stats.decode_rows, 2 * stats.decode_steps);
  // Every token but each request's first (from its prefill step) is one decode row, in a decode step or alongside
  // a prefill.
  EXPECT_LE(stats.decode_rows, generated - reqs.size());
  EXPECT_GT(stats.decode_steps, 0u);
  EXPECT_GT(stats.prefill_ms + stats.decode_ms, 0.0);
}

// Prompts as an evaluation sends them: one instruction, then each example; self-consistency samples of one example
// (the same prompt, seeded sampling). With prefix reuse the answers are those computed without it, every prompt
// token is either prefilled or reused, and prompts that share the first one's instruction wait a step to take it from
// its cache, while one that shares nothing passes them. A backend that cannot copy prefixes gets the same answers,
// all prefilled.
TEST(DecodeLoop, PrefixReuseChangesNoAnswer) {
  Model m = synthesize_model(loop_config(), 29, 0.3f);
  CpuForward cpu(m);
  std::vector<int32_t> instruction;
  for (int i = 0; i < 30; ++i) instruction.push_back(int32_t(3 + (i * 7) % 50));
  std::vector<TokenRequest> reqs;
  size_t prompt_tokens = 0;
  for (int example = 0; example < 4; ++example) {
    std::vector<int32_t> prompt = instruction;
    for (int i = 0; i <= example * 3; ++i) prompt.push_back(int32_t(60 + example * 5 + i % 4));
    const int samples = example == 1 ? 3 : 1;
    for (int k = 0; k < samples; ++k) {
      reqs.push_back(samples > 1 ? request(prompt, 6, 0.9f, uint64_t(k)) : request(prompt, 6));
      prompt_tokens += prompt.size();
    }
  }
  reqs.push_back(request({1, 2, 3}, 5));  // shares nothing
  prompt_tokens += 3;
  auto run = [&](ForwardBackend& f, bool reuse, int width, LoopStats& stats) {
    return generate_tokens(f, reqs, {}, nullptr, {.max_in_flight = width, .reuse_prefixes = reuse}, nullptr, nullptr,
                           &stats);
  };
  LoopStats off;
  const auto expected = run(cpu, false, 3, off);
  EXPECT_EQ(off.prompt_tokens_reused, 0u);
  EXPECT_EQ(off.prompt_tokens, prompt_tokens);
  for (int width : {2, 3, 8}) {
    SCOPED_TRACE(fmt::format("{} in flight", width));
    LoopStats on;
    const auto got = run(cpu, true, width, on);
    for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(got[i].tokens, expected[i].tokens) << i;
    EXPECT_GE(on.prompt_tokens_reused, 30u);  // narrower loops admit some prompts with no donor live
    if (width == 8) EXPECT_EQ(on.prompt_tokens_reused, 30 * (reqs.size() - 2));
    EXPECT_EQ(on.prompt_tokens + on.prompt_tokens_reused, prompt_tokens);
    EXPECT_EQ(cpu.memory().kv_cache_bytes, 0u);
  }
  DecodeLoop loop(cpu, {}, {.max_in_flight = 8});
  for (auto& r : reqs) loop.submit(r);
  // Request 0 and the last (which shares nothing); those between share request 0's instruction and wait for it.
  const auto first = loop.step();
  ASSERT_EQ(first.tokens.size(), 2u);
  EXPECT_EQ(first.tokens[0].first, 0u);
  EXPECT_EQ(first.tokens[1].first, reqs.size() - 1);
  EXPECT_EQ(loop.stats().prompt_tokens, reqs[0].prompt.size() + 3);
  EXPECT_EQ(loop.step().tokens.size(), reqs.size());  // then all of them, the instruction copied
  EXPECT_EQ(loop.stats().prompt_tokens_reused, 30 * (reqs.size() - 2));
  CountingBackend no_copy(cpu);
  LoopStats plain;
  const auto without = run(no_copy, true, 3, plain);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(without[i].tokens, expected[i].tokens) << i;
  EXPECT_EQ(plain.prompt_tokens, prompt_tokens);
}

// Chunked prefill: with at most N rows a step, prompts are prefilled over several steps, and the answers (greedy
// and seeded sampling, with prefix reuse on) are those of whole-prompt steps; no step holds more rows than N or the
// decoding sequences, and every prompt token is prefilled or reused once.
TEST(DecodeLoop, ChunkedPrefillKeepsAnswersAndBoundsSteps) {
  Model m = synthesize_model(loop_config(), 31, 0.3f);
  CpuForward cpu(m);
  std::vector<int32_t> instruction;
  for (int i = 0; i < 24; ++i) instruction.push_back(int32_t(5 + (i * 11) % 60));
  std::vector<TokenRequest> reqs;
  size_t prompt_tokens = 0;
  for (int length : {5, 40, 23, 1, 60, 33}) {
    std::vector<int32_t> prompt = length > 30 ? instruction : std::vector<int32_t>{};
    while (int(prompt.size()) < length) prompt.push_back(int32_t(70 + (length * 3 + int(prompt.size())) % 40));
    reqs.push_back(length == 23 ? request(prompt, 7, 0.8f, 9) : request(prompt, 7));
    prompt_tokens += prompt.size();
  }
  const auto expected = generate_tokens(cpu, reqs, {}, nullptr, {.max_in_flight = 3});
  for (int budget : {1, 2, 7, 16, 64}) {
    SCOPED_TRACE(fmt::format("at most {} rows a step", budget));
    CountingBackend fwd(cpu);
    LoopStats stats;
    const auto got =
        generate_tokens(fwd, reqs, {}, nullptr, {.max_in_flight = 3, .max_step_tokens = budget}, nullptr, nullptr, &stats);
    for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(got[i].tokens, expected[i].tokens) << i;
    EXPECT_LE(fwd.max_rows, size_t(std::max(budget, 3)));
    EXPECT_EQ(stats.prompt_tokens + stats.prompt_tokens_reused, prompt_tokens);
    if (budget < 60) {
      EXPECT_GT(stats.prefill_steps, reqs.size() / 3) << "the 60-token prompt takes several steps";
    }
    EXPECT_EQ(cpu.memory().kv_cache_bytes, 0u);
  }
}

// Prompts sharing an instruction with one prefilled in chunks copy the instruction: while its chunks fill the steps
// nothing is admitted, and in the step of its last chunk the others wait for it; the answers are those computed
// without reuse.
TEST(DecodeLoop, ChunkedPrefillStillReusesPrefixes) {
  Model m = synthesize_model(loop_config(), 35, 0.3f);
  CpuForward cpu(m);
  std::vector<int32_t> instruction(40);
  for (size_t i = 0; i < instruction.size(); ++i) instruction[i] = int32_t(3 + (i * 13) % 70);
  std::vector<TokenRequest> reqs;
  for (int example = 0; example < 4; ++example) {
    std::vector<int32_t> prompt = instruction;
    for (int i = 0; i < 3 + example; ++i) prompt.push_back(int32_t(80 + example * 4 + i));
    reqs.push_back(request(prompt, 5));
  }
  LoopStats plain, chunked;
  const auto expected = generate_tokens(cpu, reqs, {}, nullptr, {.max_in_flight = 4, .reuse_prefixes = false}, nullptr,
                                        nullptr, &plain);
  const auto got = generate_tokens(cpu, reqs, {}, nullptr, {.max_in_flight = 4, .max_step_tokens = 8}, nullptr,
                                   nullptr, &chunked);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(got[i].tokens, expected[i].tokens) << i;
  EXPECT_EQ(chunked.prompt_tokens_reused, 40u * 3) << "the first prompt's 6 steps of chunks, then copies";
  EXPECT_EQ(plain.prompt_tokens_reused, 0u);
}

// While a long prompt is prefilled in chunks, the sequence already decoding gets a token every step; a prompt
// cancelled midway frees its cache and reports no decode time.
TEST(DecodeLoop, LongPromptDoesNotStallLiveStreams) {
  Model m = synthesize_model(loop_config(), 33, 0.3f);
  CpuForward cpu(m);
  CountingBackend fwd(cpu);
  DecodeLoop loop(fwd, {}, {.max_in_flight = 4, .max_step_tokens = 8});
  const size_t a = loop.submit(request({1, 2, 3}, 30));
  ASSERT_EQ(loop.step().tokens.size(), 1u);
  std::vector<int32_t> long_prompt(60);
  for (size_t i = 0; i < long_prompt.size(); ++i) long_prompt[i] = int32_t(10 + i % 50);
  const size_t b = loop.submit(request(long_prompt, 3));
  int steps = 0;
  for (bool b_started = false; !b_started; ++steps) {
    const auto s = loop.step();
    ASSERT_FALSE(s.tokens.empty());
    EXPECT_EQ(s.tokens.front().first, a) << "request a decodes in every step";
    for (auto [id, tok] : s.tokens) b_started |= id == b;
  }
  EXPECT_EQ(steps, 9) << "60 prompt rows, 7 a step beside a's one";
  EXPECT_LE(fwd.max_rows, 8u);
  for (auto& t : long_prompt) t += 50;  // shares nothing with b's
  const size_t c = loop.submit(request(long_prompt, 3));
  loop.step();  // c's first chunk
  loop.cancel(c);
  const auto s = loop.step();
  EXPECT_NE(std::find(s.finished.begin(), s.finished.end(), c), s.finished.end());
  const TokenResult r = loop.take_result(c);
  EXPECT_EQ(r.finish_reason, "cancelled");
  EXPECT_EQ(r.decode_ms, 0.0);
  EXPECT_GT(r.prefill_ms, 0.0);
  while (!loop.idle()) loop.step();
  EXPECT_EQ(cpu.memory().kv_cache_bytes, 0u);
}

TEST(DecodeLoop, NonFiniteGreedyRowNamesTheRequest) {
  Model m = synthesize_model(loop_config(), 5, 0.3f);
  CpuForward cpu(m);
  CountingBackend fwd(cpu);
  fwd.poison_row = 1;
  try {
    generate_tokens(fwd, {request({1, 2, 3}, 4), request({9, 9}, 4)}, {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("request 2 (2-token prompt), new token 1"), std::string::npos) << what;
    EXPECT_NE(what.find("not finite"), std::string::npos) << what;
  }
}

// Under a KV cache limit of 5 pages (tiny: 32 KiB each), 8 requests of mixed lengths that hold 9 pages at once
// without it: the loop preempts the newest live one when a step, an admission or a prefix copy finds no page, recomputes
// it later from its prompt and the tokens it had, and every answer (greedy and seeded sampling) is the one of a run
// without the limit. The streamed tokens are each sent once. Whole prompts, and prompts in chunks of 16 rows
// beside the decoding ones; the second half of the requests begin with one 70-token instruction (prefix copies).
TEST(DecodeLoop, KvCacheLimitPreemptsAndKeepsAnswers) {
  Model m = synthesize_model(loop_config(), 17, 0.3f);
  std::vector<TokenRequest> reqs;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> prompt;
    if (i >= 4)
      for (int j = 0; j < 70; ++j) prompt.push_back(int32_t((j * 5 + 3) % 512));
    for (int j = 0; j < 10 + 9 * i - (i >= 4 ? 40 : 0); ++j) prompt.push_back(int32_t((j * 31 + i * 7 + 1) % 512));
    reqs.push_back(i == 5 ? request(prompt, 20, 0.9f, 11) : request(prompt, 20));
  }
  CpuForward free_run(m);
  const auto expected = generate_tokens(free_run, reqs, {}, nullptr, {.max_in_flight = 8});
  const size_t page = size_t(2) * 2 * kKvPageSlots * 32 * sizeof(float);
  ASSERT_GE(free_run.memory().kv_cache_peak_bytes, 9 * page);

  for (int step_tokens : {0, 16}) {
    SCOPED_TRACE(fmt::format("max_step_tokens {}", step_tokens));
    CpuForward limited(m);
    limited.set_kv_cache_limit(5 * page);
    DecodeLoop loop(limited, {}, {.max_in_flight = 8, .max_step_tokens = step_tokens});
    for (auto& r : reqs) loop.submit(r);
    std::map<size_t, std::vector<int32_t>> streamed;
    std::map<size_t, TokenResult> results;
    while (!loop.idle()) {
      auto st = loop.step();
      for (auto [id, tok] : st.tokens) streamed[id].push_back(tok);
      for (size_t id : st.finished) results[id] = loop.take_result(id);
    }
    EXPECT_GT(loop.stats().preemptions, 0u);
    EXPECT_GT(loop.stats().prompt_tokens_reused, 0u);
    EXPECT_LE(limited.memory().kv_cache_peak_bytes, 5 * page);
    ASSERT_EQ(results.size(), reqs.size());
    for (size_t i = 0; i < reqs.size(); ++i) {
      EXPECT_EQ(results[i].tokens, expected[i].tokens) << "request " << i;
      EXPECT_EQ(streamed[i], results[i].tokens) << "request " << i;
    }
    EXPECT_EQ(limited.memory().kv_cache_bytes, 0u);
  }
}

// A request whose own cache does not fit under the limit is an OutOfMemory that says so, not a loop that preempts
// forever; so is a prefix copy that finds no page with nothing live to wait for.
TEST(DecodeLoop, RequestThatCannotFitAloneIsAnError) {
  Model m = synthesize_model(loop_config(), 17, 0.3f);
  CpuForward cpu(m);
  const size_t page = size_t(2) * 2 * kKvPageSlots * 32 * sizeof(float);
  cpu.set_kv_cache_limit(page);
  std::vector<int32_t> prompt(60, 3);
  try {
    generate_tokens(cpu, {request(prompt, 10), request(prompt, 10)}, {});
    FAIL() << "expected an OutOfMemory";
  } catch (const OutOfMemory& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("one request alone does not fit"), std::string::npos) << what;
    EXPECT_NE(what.find("KV cache limit of 32.0 KiB reached"), std::string::npos) << what;
  }
  EXPECT_EQ(cpu.memory().kv_cache_bytes, 0u);
}

}  // namespace

// The engine's memory report counts parameters from the tensor table: the trained fixture model's count as its
// training script recorded it (transformers' num_parameters), at any precision.
TEST(Engine, ParametersFromTheTensorTableEqualTheTrainingRecord) {
  const auto dir = bq::test::source_dir() / "tests/fixtures/trained-llama";
  const auto record = nlohmann::json::parse(std::ifstream(dir / "training.json"));
  for (const char* precision : {"bf16", "nf4"}) {
    bq::EngineOptions opt;
    opt.precision = &bq::quant::precision_named(precision);
    bq::Engine engine(dir, opt);
    EXPECT_EQ(engine.memory_report()["parameters"].get<size_t>(), record["parameters"].get<size_t>()) << precision;
  }
}
