// The memory planner against the CPU engine's tracked allocations, and the recommendation logic.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "analysis/recommend.h"
#include "backend/cpu/cpu_forward.h"
#include "core/error.h"
#include "core/files.h"
#include "core/host_memory.h"
#include "eval/run.h"
#include "generate/generate.h"
#include "model/model.h"
#include "model/quantize_model.h"
#include "plan/memory_planner.h"
#include "plan_test_util.h"
#include "test_util.h"

namespace bq {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

ModelConfig small_config() {  // wider than tiny, with grouped KV heads, so that no one term dominates
  ModelConfig c = preset_config("tiny");
  c.hidden = 256;
  c.intermediate = 688;
  c.n_layers = 3;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.vocab = 1024;
  return c;
}

// Gemma 3's layout: two of three layers sliding over 16 positions, so that prompts past their ring (1040 slots) go
// through in passes of 1024 rows and their caches stay ring-sized.
ModelConfig sliding_config() {
  ModelConfig c = small_config();
  apply_architecture(c, find_architecture("gemma3_text", "test"));
  c.sliding_window = 16;
  c.sliding_layers = {true, false, true};
  c.local_rope = true;
  return c;
}

// Runs B prompts of P tokens to P + G positions as generation does (at most `step` rows a step, 0: no limit),
// returning the tracked peak it reached.
size_t measured_peak(const ModelConfig& c, const std::string& precision, int B, int P, int G, int step = 0) {
  Model m = synthesize_model(c, 7);
  PrecisionOptions p;
  p.precision = &quant::precision_named(precision);
  if (auto q = precision_to_quant(p)) quantize_model(m, *q);
  const size_t before = host_memory::stats().current;
  host_memory::reset_peak();
  {
    CpuForward fwd(m);
    std::vector<TokenRequest> reqs;
    for (int b = 0; b < B; ++b) {
      TokenRequest r;
      for (int i = 0; i < P; ++i) r.prompt.push_back(int32_t((b * 131 + i * 7) % c.vocab));
      r.opt.max_new_tokens = G;
      reqs.push_back(r);
    }
    auto out = generate_tokens(fwd, reqs, {}, nullptr, {.max_step_tokens = step});
    EXPECT_EQ(out[0].tokens.size(), size_t(G));
  }
  EXPECT_EQ(host_memory::stats().current, before) << "every tracked buffer is released";
  return host_memory::stats().peak - before;
}

plan::MemoryEstimate cpu_plan(const ModelConfig& c, const std::string& precision, int B, int P, int G, int step = 0) {
  plan::PlanRequest r;
  r.max_step_tokens = step;
  r.config = c;
  r.model_label = "test";
  r.precision = &quant::precision_named(precision);
  r.device = "cpu";
  r.batch = B;
  r.prompt = P;
  r.context = P + G;
  return plan::plan_memory(r);
}

TEST(Plan, CpuEstimateWithinFivePercentOfTrackedPeak) {
  struct Case {
    ModelConfig c;
    std::string precision;
    int B, P, G, step = 0;
  };
  // The last four prefill in chunks (--max-step-tokens), one with fewer rows a step than sequences.
  std::vector<Case> cases = {{preset_config("tiny"), "bf16", 1, 16, 8},  {preset_config("tiny"), "nf4", 4, 40, 12},
                             {preset_config("tiny"), "int8", 3, 7, 40},  {small_config(), "bf16", 2, 64, 8},
                             {small_config(), "nf4", 1, 120, 8},         {small_config(), "int8", 5, 30, 6},
                             {small_config(), "llm-int8", 2, 48, 4},     {small_config(), "fp4", 1, 2, 60},
                             {sliding_config(), "bf16", 2, 1200, 8},     {sliding_config(), "nf4", 1, 1100, 40},
                             {small_config(), "bf16", 2, 120, 8, 16},    {small_config(), "nf4", 4, 100, 8, 40},
                             {preset_config("tiny"), "int8", 6, 7, 40, 3}, {sliding_config(), "bf16", 1, 1200, 8, 300}};
  for (auto& k : cases) {
    SCOPED_TRACE(k.precision + " hidden " + std::to_string(k.c.hidden) + " batch " + std::to_string(k.B) + " prompt " +
                 std::to_string(k.P) + " gen " + std::to_string(k.G) + " step " + std::to_string(k.step));
    size_t peak = measured_peak(k.c, k.precision, k.B, k.P, k.G, k.step);
    auto e = cpu_plan(k.c, k.precision, k.B, k.P, k.G, k.step);
    double ratio = double(e.allocator_bytes) / double(peak);
    EXPECT_NEAR(ratio, 1.0, 0.05) << "planned " << e.allocator_bytes << ", measured " << peak;
  }
}

TEST(Plan, CpuAccountCountsWhatTheEngineHolds) {
  // The account is a measurement: more sequences hold more, and the weight hold is the model's buffers.
  ModelConfig c = preset_config("tiny");
  size_t one = measured_peak(c, "bf16", 1, 32, 8), four = measured_peak(c, "bf16", 4, 32, 8);
  EXPECT_GT(four, one);
  Model m = synthesize_model(c, 1);
  size_t owned = 0;
  for (auto& b : m.owned) owned += b.size();
  EXPECT_GT(model_host_bytes(m), owned);  // plus the fp32 norms
}

TEST(Plan, CudaFiguresFollowPrecisionAndSplit) {
  plan::PlanRequest r;
  r.config = preset_config("llama-3.1-8b");
  r.model_label = "llama-3.1-8b";
  r.context = 640;
  r.prompt = 512;
  auto total = [&](const std::string& p, int devices = 1, int batch = 1) {
    plan::PlanRequest q = r;
    q.precision = &quant::precision_named(p);
    q.devices = devices;
    q.batch = batch;
    return plan::plan_memory(q);
  };
  auto bf16 = total("bf16"), int8 = total("int8"), nf4 = total("nf4");
  EXPECT_GT(bf16.allocator_bytes, int8.allocator_bytes);
  EXPECT_GT(int8.allocator_bytes, nf4.allocator_bytes);
  // bf16 8B: 7.5e9 decoder + lm_head parameters at 2 bytes, within a GiB of 15 GB.
  EXPECT_NEAR(double(bf16.allocator_bytes) / 1e9, 15.5, 1.0);
  EXPECT_LT(total("bf16", 2).allocator_bytes, bf16.allocator_bytes);
  EXPECT_GT(total("bf16", 1, 32).allocator_bytes, bf16.allocator_bytes);
  EXPECT_TRUE(bf16.cards[0].fits);  // 16 GB: 14 GiB of weights, the KV cache of one sequence, the CUDA context
  EXPECT_FALSE(total("bf16", 1, 32).cards[0].fits);  // not with the KV cache of 32
  EXPECT_TRUE(nf4.cards[0].fits);
  // Chunked prefill: activation buffers of 256-row passes instead of 1,024 (32 prompts of 512 tokens), the rest
  // unchanged; a negative step is an error. (Not a quarter: the tensor-core products' k-split partials, 22 MB for
  // any pass of 17-64 rows such as the 32 sequences' decode steps, do not shrink with the step.)
  auto activations = [](const plan::MemoryEstimate& e) {
    size_t n = 0;
    for (auto& it : e.items) n += it.category == "activations" ? it.bytes : 0;
    return n;
  };
  plan::PlanRequest chunked = r;
  chunked.precision = &quant::precision_named("nf4");
  chunked.batch = 32;
  const auto whole = plan::plan_memory(chunked);
  chunked.max_step_tokens = 256;
  const auto steps = plan::plan_memory(chunked);
  EXPECT_LT(activations(steps), activations(whole) / 2.5);
  EXPECT_EQ(whole.allocator_bytes - activations(whole), steps.allocator_bytes - activations(steps));
  // --batch-invariant: no dequantized weight tile (every product on the tiled kernel), the tiled kernel's partials
  // for every pass, the weights and KV cache unchanged.
  plan::PlanRequest invariant = chunked;
  invariant.batch_invariant = true;
  const auto inv = plan::plan_memory(invariant);
  auto workspace = [](const plan::MemoryEstimate& e, const std::string& name) {
    size_t n = 0;
    for (auto& it : e.items) n += it.name.find(name) != std::string::npos ? it.bytes : 0;
    return n;
  };
  EXPECT_GT(workspace(steps, "dequantized weight tile"), 0u);
  EXPECT_EQ(workspace(inv, "dequantized weight tile"), 0u);
  EXPECT_EQ(inv.allocator_bytes - activations(inv) + workspace(steps, "dequantized weight tile"),
            steps.allocator_bytes - activations(steps));
  chunked.max_step_tokens = -1;
  EXPECT_THROW(plan::plan_memory(chunked), Error);
  r.context = 1 << 20;
  EXPECT_THROW(plan::plan_memory(r), Error);
}

// A split chosen from each GPU's memory: layers in order, all of them, lm_head on the last, every share within its
// GPU; a bigger GPU takes more layers; a model no split fits is an error with the figures; one GPU equals the plan
// without a split.
TEST(Plan, SplitFollowsEachGpusMemory) {
  plan::PlanRequest r = test::request_70b_bf16();
  const size_t gib = size_t(1) << 30;
  for (std::vector<size_t> mem : {std::vector<size_t>{80 * gib, 80 * gib}, {80 * gib, 40 * gib, 40 * gib},
                                  {40 * gib, 40 * gib, 40 * gib, 40 * gib}}) {
    r.device_memory = mem;
    auto e = plan::plan_memory(r);
    ASSERT_EQ(e.split.size(), mem.size());
    int next = 0;
    size_t most = 0;
    for (size_t i = 0; i < mem.size(); ++i) {
      EXPECT_EQ(e.split[i].first_layer, next);
      next += e.split[i].layers;
      EXPECT_EQ(e.split[i].lm_head, i + 1 == mem.size());
      EXPECT_LE(e.split[i].total_bytes, e.split[i].capacity) << "GPU " << i;
      EXPECT_GT(e.split[i].total_bytes, 0u);
      most = std::max(most, e.split[i].total_bytes);
    }
    EXPECT_EQ(next, r.config.n_layers);
    EXPECT_EQ(e.total_bytes, most);  // items and totals: the fullest GPU
  }
  r.device_memory = {80 * gib, 40 * gib, 40 * gib};
  auto uneven = plan::plan_memory(r);
  EXPECT_GT(uneven.split[0].layers, uneven.split[1].layers);
  r.device_memory = {40 * gib, 40 * gib};  // 141 GB of bf16 weights
  try {
    plan::plan_memory(r);
    FAIL() << "70B bf16 fitted two 40 GB cards";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("does not fit these GPUs"), std::string::npos) << err.what();
  }
  r.config = preset_config("llama-3.1-8b");
  r.device_memory = {80 * gib};
  auto one = plan::plan_memory(r);
  r.device_memory.clear();
  auto plain = plan::plan_memory(r);
  ASSERT_EQ(one.split.size(), 1u);
  EXPECT_EQ(one.split[0].layers, 32);
  EXPECT_EQ(one.total_bytes, plain.total_bytes);
  EXPECT_EQ(one.allocator_bytes, plain.allocator_bytes);
}

TEST(Plan, MemorySizes) {
  EXPECT_EQ(plan::parse_memory_size("40GB", "--gpu-memory"), size_t(40) << 30);
  EXPECT_EQ(plan::parse_memory_size("24576MiB", "--gpu-memory"), size_t(24) << 30);
  EXPECT_EQ(plan::parse_memory_size("1.5g", "--gpu-memory"), size_t(3) << 29);
  EXPECT_THROW(plan::parse_memory_size("lots", "--gpu-memory"), Error);
  EXPECT_THROW(plan::parse_memory_size("40 parsecs", "--gpu-memory"), Error);
  EXPECT_THROW(plan::parse_memory_size("-3GB", "--gpu-memory"), Error);
}

analysis::Candidate cand(const std::string& model, const std::string& precision, double gib, bool measured, double score = 0,
                     std::vector<analysis::PairedDifference> vs = {}) {
  analysis::Candidate c;
  c.model = model;
  c.precision = precision;
  c.planned_bytes = size_t(gib * double(1ull << 30));
  c.measured = measured;
  c.score = score;
  c.scored_examples = 100;  // enough evidence unless a test says otherwise
  c.vs_full = std::move(vs);
  return c;
}

const analysis::Decision& find(const analysis::Recommendation& r, const std::string& model, const std::string& precision) {
  for (auto* list : {&r.ranked, &r.others})
    for (auto& d : *list)
      if (d.candidate.model == model && d.candidate.precision == precision) return d;
  throw std::runtime_error("no decision for " + model + " " + precision);
}

TEST(Recommend, DecisionLogic) {
  const double margin = 0.02;
  std::vector<analysis::Candidate> c = {
      cand("m8", "bf16", 16, true, 0.70),
      cand("m8", "int8", 9, true, 0.69, {{"hoc", -0.01, -0.015, 0.004, 100}}),   // non-inferior
      cand("m8", "nf4", 5.5, true, 0.60, {{"hoc", -0.10, -0.14, -0.06, 100}}),   // inferior
      cand("m8", "fp4", 5.5, false),                                              // unmeasured
      cand("m70", "bf16", 140, true, 0.80),                                       // does not fit
      cand("m70", "nf4", 38, true, 0.79, {{"hoc", 0.0, -0.01, 0.01, 100}, {"pubmedqa", 0.0, -0.03, 0.02, 50}}),
      cand("m3", "nf4", 2, true, 0.50),  // no full-precision run
  };
  auto r = analysis::decide(c, size_t(40) << 30, margin);
  EXPECT_EQ(find(r, "m8", "bf16").verdict, "baseline");
  EXPECT_EQ(find(r, "m8", "int8").verdict, "non-inferior");
  EXPECT_TRUE(find(r, "m8", "int8").recommended);  // lowest memory among baseline and non-inferior
  EXPECT_FALSE(find(r, "m8", "bf16").recommended);
  EXPECT_EQ(find(r, "m8", "nf4").verdict, "inferior");
  EXPECT_EQ(find(r, "m8", "fp4").verdict, "not measured");
  EXPECT_TRUE(find(r, "m8", "fp4").fits);
  EXPECT_NE(find(r, "m8", "fp4").reason.find("not measured"), std::string::npos);
  EXPECT_FALSE(find(r, "m70", "bf16").fits);
  EXPECT_NE(find(r, "m70", "bf16").reason.find("does not fit"), std::string::npos);
  EXPECT_NE(find(r, "m70", "bf16").reason.find("100.00 GiB over 40.00 GiB"), std::string::npos) << find(r, "m70", "bf16").reason;
  // One task's lower bound (-0.03) under -margin makes it inferior, though the other is fine.
  EXPECT_EQ(find(r, "m70", "nf4").verdict, "inferior");
  EXPECT_NE(find(r, "m70", "nf4").reason.find("pubmedqa"), std::string::npos);
  EXPECT_EQ(find(r, "m3", "nf4").verdict, "no baseline");
  EXPECT_FALSE(find(r, "m3", "nf4").recommended);
  // Ranked: measured and fitting, by score; unmeasured never ranked.
  ASSERT_EQ(r.ranked.size(), 5u);
  EXPECT_EQ(r.ranked[0].candidate.model, "m70");
  EXPECT_EQ(r.ranked[1].candidate.precision, "bf16");
  for (auto& d : r.ranked) EXPECT_TRUE(d.candidate.measured && d.fits);
  ASSERT_EQ(r.per_model.size(), 3u);
  EXPECT_NE(r.per_model[0].find("run int8"), std::string::npos) << r.per_model[0];
  EXPECT_NE(r.per_model[1].find("no measured precision"), std::string::npos) << r.per_model[1];
  EXPECT_NE(r.per_model[2].find("no full-precision run"), std::string::npos) << r.per_model[2];

  // A wider margin admits m70 nf4; a budget nothing fits recommends nothing.
  auto wide = analysis::decide(c, size_t(40) << 30, 0.05);
  EXPECT_TRUE(find(wide, "m70", "nf4").recommended);
  auto none = analysis::decide(c, size_t(1) << 30, margin);
  EXPECT_TRUE(none.ranked.empty());
  for (auto& d : none.others) EXPECT_FALSE(d.recommended);
}

TEST(Recommend, NoVerdictWithoutEvidence) {
  // The case: 3 examples, every answer unparsed, a degenerate interval [0, 0]: no "non-inferior".
  std::vector<analysis::Candidate> c = {cand("m", "bf16", 16, true, 0.0),
                                    cand("m", "nf4", 5, true, 0.0, {{"hoc", 0, 0, 0, 3}})};
  for (auto& x : c) {
    x.scored_examples = 3;
    x.unparsed_rate = 1.0;
  }
  auto r = analysis::decide(c, size_t(40) << 30, 0.02);
  for (const char* p : {"bf16", "nf4"}) {
    const analysis::Decision& d = find(r, "m", p);
    EXPECT_EQ(d.verdict, "not enough evidence") << p;
    EXPECT_FALSE(d.recommended) << p;
    EXPECT_NE(d.reason.find("3 scored examples"), std::string::npos) << d.reason;
    EXPECT_NE(d.reason.find("100.0% of answers unparsed"), std::string::npos) << d.reason;
  }
  EXPECT_NE(find(r, "m", "nf4").lacking.find("3 paired examples on hoc"), std::string::npos);
  ASSERT_EQ(r.per_model.size(), 1u);
  EXPECT_NE(r.per_model[0].find("not enough evidence"), std::string::npos) << r.per_model[0];
  auto j = analysis::to_json(r);
  EXPECT_EQ(j["min_examples"], analysis::kMinScoredExamples);
  EXPECT_EQ(j["ranked"][0]["enough_evidence"], false);
  EXPECT_TRUE(j["ranked"][0]["not_enough_evidence"].is_string());

  // Enough examples, but a baseline that could not be parsed: the quantized run cannot be judged against it.
  for (auto& x : c) x.scored_examples = 200;
  c[1].vs_full[0].paired_examples = 200;
  c[1].unparsed_rate = 0;
  auto b = analysis::decide(c, size_t(40) << 30, 0.02);
  EXPECT_EQ(find(b, "m", "nf4").verdict, "not enough evidence");
  EXPECT_NE(find(b, "m", "nf4").lacking.find("its bf16 baseline: 100.0% of answers unparsed"), std::string::npos)
      << find(b, "m", "nf4").lacking;
  // Both clean: judged; the thresholds are options.
  c[0].unparsed_rate = 0;
  EXPECT_EQ(find(analysis::decide(c, size_t(40) << 30, 0.02), "m", "nf4").verdict, "non-inferior");
  EXPECT_EQ(find(analysis::decide(c, size_t(40) << 30, 0.02, {500, 0.2}), "m", "nf4").verdict, "not enough evidence");
}

std::string run_ok(const std::string& args) {
  std::string out;
  int rc = test::run_command("OMP_NUM_THREADS=1 " + test::biomedq_binary().string() + " " + args, &out);
  EXPECT_EQ(rc, 0) << args << "\n" << out;
  return out;
}

TEST(Recommend, OnRealRunsOfTheTinyModel) {
  fs::path tmp = test::temp_dir("recommend"), src = test::source_dir();
  std::string eval = "eval --synthetic tiny --tasks pubmedqa --limit 3 --no-progress --bootstrap 50 --tasks-dir " +
                     (src / "tasks").string() + " --data-dir " + (src / "examples/data").string();
  run_ok(eval + " --precision bf16 --out " + (tmp / "bf16").string());
  run_ok(eval + " --precision nf4 --out " + (tmp / "nf4").string());
  std::string runs = " --runs " + (tmp / "bf16").string() + " " + (tmp / "nf4").string();

  json r = json::parse(run_ok("recommend --gpu-memory 16GB --json --bootstrap 50" + runs));
  ASSERT_EQ(r["ranked"].size(), 2u) << r.dump(2);
  json nf4;
  for (auto& d : r["ranked"]) {
    EXPECT_TRUE(d["fits"].get<bool>());
    if (d["precision"] == "nf4") nf4 = d;
  }
  ASSERT_TRUE(nf4.is_object());
  ASSERT_EQ(nf4["vs_full_precision"].size(), 1u);
  EXPECT_EQ(nf4["vs_full_precision"][0]["paired_examples"], 3);
  // Three examples are no evidence either way (the paired interval can be [0, 0]); with the threshold lowered
  // the interval decides.
  EXPECT_EQ(nf4["verdict"], "not enough evidence") << nf4.dump(2);
  EXPECT_NE(nf4["reason"].get<std::string>().find("3 scored examples"), std::string::npos) << nf4.dump(2);
  json lowered =
      json::parse(run_ok("recommend --gpu-memory 16GB --json --bootstrap 50 --min-examples 3 --max-unparsed 1" + runs));
  for (auto& d : lowered["ranked"])
    if (d["precision"] == "nf4") {
      double lo = d["vs_full_precision"][0]["ci95"][0].get<double>();
      EXPECT_EQ(d["verdict"], lo > -0.02 ? "non-inferior" : "inferior");
    }
  // The precisions not run are listed as unmeasured, never scored.
  int unmeasured = 0;
  for (auto& d : r["others"]) {
    EXPECT_FALSE(d["measured"].get<bool>());
    EXPECT_FALSE(d.contains("score"));
    unmeasured += d["verdict"] == "not measured";
  }
  EXPECT_EQ(unmeasured, 3);  // int8, llm-int8, fp4

  // A task type the runs did not score, a budget nothing fits, bad input.
  std::string out;
  EXPECT_NE(test::run_command(test::biomedq_binary().string() + " recommend --gpu-memory 16GB --task-type ner" + runs, &out), 0);
  json tight = json::parse(run_ok("recommend --gpu-memory 1MiB --json --bootstrap 50 --task-type qa" + runs));
  EXPECT_TRUE(tight["ranked"].empty());
  EXPECT_NE(test::run_command(test::biomedq_binary().string() + " recommend --gpu-memory lots" + runs, &out), 0);
  EXPECT_NE(out.find("--gpu-memory"), std::string::npos) << out;
  // A folder of runs (a sweep's) stands for its finished runs; a folder with none is refused, saying why.
  EXPECT_EQ(test::run_command(test::biomedq_binary().string() + " recommend --gpu-memory 16GB --runs " + tmp.string(), &out), 0)
      << out;
  EXPECT_NE(out.find("synthetic-tiny nf4"), std::string::npos) << out;
  fs::create_directories(tmp / "nothing" / "here");
  EXPECT_NE(test::run_command(test::biomedq_binary().string() + " recommend --gpu-memory 16GB --runs " +
                                  (tmp / "nothing").string(), &out),
            0);
  EXPECT_NE(out.find("results.json"), std::string::npos) << out;

  // The run's tracked CPU peak is what plan predicts for the context it needed (longest prompt + max new tokens).
  json res = json::parse(read_file(tmp / "nf4" / "results.json"));
  int longest = 0;
  for (auto& line : eval::read_samples(tmp / "nf4" / "samples.jsonl", false))
    longest = std::max(longest, line.prompt_tokens);
  json p = json::parse(run_ok("plan --preset tiny --precision nf4 --device cpu --threads 1 --json --prompt-len " +
                              std::to_string(longest) + " --context " + std::to_string(longest + 32)));
  double measured = res["memory"]["allocator_peak_bytes"].get<double>();  // what the model held at its peak
  EXPECT_NEAR(p["allocator_bytes"].get<double>() / measured, 1.0, 0.05) << p.dump(2);
}

TEST(Plan, CheckpointFoldersMappedOrPrequantized) {
  // --model: the checkpoint's files are mapped (and a pre-quantized one loads as stored); an eval of one example
  // reports the peak plan predicts for its prompt plus the task's 50 new tokens.
  fs::path tmp = test::temp_dir("plan-ckpt"), src = test::source_dir();
  run_ok("synth --preset tiny --out " + (tmp / "m").string());
  run_ok("quantize --model " + (tmp / "m").string() + " --precision nf4 --out " + (tmp / "q").string());
  for (const char* m : {"m", "q"}) {
    SCOPED_TRACE(m);
    fs::path run = tmp / (std::string("run-") + m);
    run_ok("eval --model " + (tmp / m).string() + " --precision nf4 --tasks pubmedqa --limit 1 --no-progress "
           "--bootstrap 10 --tasks-dir " + (src / "tasks").string() + " --data-dir " + (src / "examples/data").string() +
           " --out " + run.string());
    int prompt = eval::read_samples(run / "samples.jsonl", false).at(0).prompt_tokens;
    json p = json::parse(run_ok("plan --model " + (tmp / m).string() + " --precision nf4 --device cpu --threads 1 --json "
                                "--prompt-len " + std::to_string(prompt) + " --context " + std::to_string(prompt + 50)));
    if (std::string(m) == "q") {
      EXPECT_EQ(p["precision"], "nf4 (stored)");
    }
    double measured = json::parse(read_file(run / "results.json"))["memory"]["allocator_peak_bytes"].get<double>();
    EXPECT_NEAR(p["allocator_bytes"].get<double>() / measured, 1.0, 0.05) << p.dump(2);
  }
  std::string out;
  EXPECT_EQ(test::run_command(test::biomedq_binary().string() + " plan --model " + (tmp / "q").string() +
                                  " --precision int8 --device cpu", &out), 1);
  EXPECT_NE(out.find("quantized as nf4"), std::string::npos) << out;
}

TEST(Plan, CliTextJsonAndErrors) {
  std::string out = run_ok("plan --preset llama-3.3-70b --precision nf4 --context 4096");
  EXPECT_NE(out.find("kv cache"), std::string::npos) << out;
  EXPECT_NE(out.find("fits:"), std::string::npos) << out;
  json j = json::parse(run_ok("plan --preset llama-3.1-8b --precision bf16 --devices 2 --json"));
  EXPECT_EQ(j["layers_per_device"], 16);
  EXPECT_EQ(j["cards"].size(), 6u);
  size_t sum = 0;
  for (auto& it : j["items"]) sum += it["bytes"].get<size_t>();
  EXPECT_EQ(sum, j["total_bytes"].get<size_t>());
  j = json::parse(run_ok("plan --preset llama-3.3-70b --precision int8 --context 4096 --device-memory 48GB,40GB --json"));
  ASSERT_EQ(j["split"].size(), 2u);
  EXPECT_EQ(j["split"][0]["layers"].get<int>() + j["split"][1]["layers"].get<int>(), 80);
  EXPECT_TRUE(j["split"][1]["lm_head"].get<bool>());
  for (const char* bad : {"--context -1", "--batch 0", "--context 100 --prompt-len 200", "--device cpu --devices 2",
                          "--device-memory 40GB,lots", "--device-memory 0.5GB,0.5GB"}) {
    EXPECT_EQ(test::run_command(test::biomedq_binary().string() + " plan --preset tiny --precision nf4 " + bad, &out), 1)
        << bad;
    EXPECT_NE(out.find("biomedq: error:"), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace bq
