// The whole evaluation through the CLI on a tiny random-weight model and the shipped example data: an interrupted
// run resumed without recomputing finished samples, rescore reproducing results.json, the Table 1 printout.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "core/files.h"
#include "eval/task.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::vector<std::string> lines_of(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// One OpenMP thread: the tiny model gains nothing from more, and spinning threads crawl on a busy 2-core machine.
std::string run_ok(const std::string& args) {
  std::string out;
  int rc = bq::test::run_command("OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() + " " + args, &out);
  EXPECT_EQ(rc, 0) << args << "\n" << out;
  return out;
}

// eval --synthetic tiny on pubmedqa and ddi2013 (6 examples) with `args`, into dir/name: each example's raw answer by
// task/id, results.json, and the output.
struct TinyRun {
  std::map<std::string, json> raw;
  json results;
  std::string out;
};
TinyRun eval_tiny(const fs::path& dir, const std::string& name, const std::string& args) {
  TinyRun r;
  const std::string cmd = "OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() +
                          " eval --synthetic tiny --tasks pubmedqa,ddi2013 --no-progress --bootstrap 10 --tasks-dir " +
                          (bq::test::source_dir() / "tasks").string() + " --out " + (dir / name).string() + " " + args;
  EXPECT_EQ(bq::test::run_command(cmd, &r.out), 0) << r.out;
  std::ifstream samples(dir / name / "samples.jsonl");
  for (std::string line; std::getline(samples, line);) {
    json rec = json::parse(line);
    r.raw[rec["task"].get<std::string>() + "/" + rec["id"].get<std::string>()] = rec["raw"];
  }
  r.results = json::parse(bq::read_file(dir / name / "results.json"));
  return r;
}

}  // namespace

TEST(EvalEndToEnd, SynthEvalInterruptResumeRescoreTable) {
  fs::path tmp = bq::test::temp_dir("eval-e2e"), src = bq::test::source_dir();
  fs::path model = tmp / "tiny", run = tmp / "run";
  run_ok("synth --preset tiny --out " + model.string());
  std::string eval = "eval --model " + model.string() + " --tasks all --data-dir " + (src / "examples/data").string() +
                     " --tasks-dir " + (src / "tasks").string() + " --out " + run.string() +
                     " --no-progress --bootstrap 100 --limit ";

  // A full run, then made to look interrupted: its last 4 records lost, the first of them torn mid-write.
  run_ok(eval + "3");
  {  // the checkpoint's files were hashed, and the load timed
    const json load = json::parse(bq::read_file(run / "results.json"))["throughput"]["model_load"];
    EXPECT_GT(load["content_hash_s"].get<double>(), 0.0) << load.dump();
    EXPECT_GT(load["engine_s"].get<double>(), 0.0) << load.dump();
  }
  fs::path samples = run / "samples.jsonl";
  auto full = lines_of(samples);
  ASSERT_EQ(full.size(), 24u);
  std::vector<std::string> first(full.begin(), full.end() - 4);
  {
    std::ofstream out(samples, std::ios::trunc);
    for (auto& l : first) out << l << "\n";
    out << full[20].substr(0, full[20].size() / 2);
  }

  run_ok(eval + "3");
  auto all = lines_of(samples);
  ASSERT_EQ(all.size(), 24u);
  for (size_t i = 0; i < first.size(); i++) EXPECT_EQ(all[i], first[i]) << "finished sample " << i << " was rewritten";
  std::set<std::string> keys;
  for (auto& l : all) {
    json r = json::parse(l);
    keys.insert(r["task"].get<std::string>() + "/" + r["id"].get<std::string>());
  }
  EXPECT_EQ(keys.size(), 24u) << "a sample was computed twice";

  std::string results = bq::read_file(run / "results.json");
  json res = json::parse(results);
  ASSERT_EQ(res["tasks"].size(), 8u);
  for (auto& name : {"hoc", "litcovid", "bc5cdr-chem", "ncbi-disease", "chemprot", "ddi2013", "medqa", "pubmedqa"}) {
    ASSERT_TRUE(res["tasks"].contains(name)) << name;
    EXPECT_EQ(res["tasks"][name]["examples_scored"], 3) << name;
  }
  EXPECT_EQ(res["config"]["model_info"]["precision"], "bf16");

  // A second resume has nothing left to do; rescore rewrites results.json byte for byte, without a model.
  run_ok(eval + "3");
  EXPECT_EQ(lines_of(samples).size(), 24u);
  results = bq::read_file(run / "results.json");
  run_ok("rescore --bootstrap 100 " + run.string());
  EXPECT_EQ(bq::read_file(run / "results.json"), results);

  // Table 1: one row per task for this model, a bf16 column group, the primary metric x 100 as the score.
  std::string table = run_ok("table " + run.string());
  EXPECT_NE(table.find("| Task | Metric | Model | bf16 Mem | bf16 Late | bf16 Score |"), std::string::npos) << table;
  for (auto& [name, t] : res["tasks"].items()) {
    std::string metric = t["primary_metric"];
    std::string row = fmt::format("| {} | {} | tiny | ", name, metric);
    size_t at = table.find(row);
    ASSERT_NE(at, std::string::npos) << row << "\n" << table;
    std::string score = fmt::format("{:.1f} |\n", 100 * t["metrics"][metric]["value"].get<double>());
    EXPECT_EQ(table.substr(table.find('\n', at) - score.size() + 1, score.size()), score) << table;
  }
  std::string csv = run_ok("table --csv " + run.string());
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 9) << csv;
}

// Under --kv-cache-limit the evaluation preempts and recomputes requests that do not fit beside the others (3 of
// DDI2013's prompts of ~440 tokens need 8 pages of 32 KiB each; the limit holds 9), and every answer is the one
// of the run without the limit; results.json and the summary say how often.
TEST(EvalEndToEnd, KvCacheLimitKeepsEveryAnswer) {
  const fs::path dir = bq::test::temp_dir("eval-kv-limit");
  const TinyRun free_run = eval_tiny(dir, "free", "--batch 6");
  const TinyRun limited = eval_tiny(dir, "limited", "--batch 6 --kv-cache-limit 0.3MiB");
  EXPECT_EQ(free_run.results["throughput"]["preemptions"], 0);
  EXPECT_GT(limited.results["throughput"]["preemptions"].get<int>(), 0) << limited.results["throughput"].dump();
  EXPECT_LE(limited.results["memory"]["kv_cache_peak_bytes"].get<double>(), 0.3 * 1024 * 1024);
  EXPECT_GT(free_run.results["memory"]["kv_cache_peak_bytes"].get<double>(), 0.3 * 1024 * 1024);
  ASSERT_EQ(limited.raw.size(), 6u);
  EXPECT_EQ(limited.raw, free_run.raw);
  EXPECT_NE(limited.out.find("kv cache: full"), std::string::npos) << limited.out;
  std::string err;
  EXPECT_NE(bq::test::run_command(bq::test::biomedq_binary().string() + " eval --synthetic tiny --tasks pubmedqa "
                                      "--out " + (dir / "bad").string() + " --kv-cache-limit 5",
                                  &err),
            0);
  EXPECT_NE(err.find("--kv-cache-limit: '5' has no unit"), std::string::npos) << err;
}

// --batch-invariant: the random-weight model's answers (near-ties everywhere) are the same one at a time, 6 at a time,
// and 6 at a time in chunks of 5 rows without prefix reuse; the run records the mode, and LLM.int8 is refused before
// anything is written.
TEST(EvalEndToEnd, BatchInvariantAnswersAtAnyBatch) {
  const fs::path dir = bq::test::temp_dir("eval-invariant");
  const TinyRun one = eval_tiny(dir, "one", "--batch-invariant --batch 1");
  ASSERT_EQ(one.raw.size(), 6u);
  EXPECT_EQ(one.results["config"]["model_info"]["batch_invariant"], true) << one.results["config"].dump();
  EXPECT_EQ(eval_tiny(dir, "six", "--batch-invariant --batch 6").raw, one.raw);
  EXPECT_EQ(eval_tiny(dir, "chunks", "--batch-invariant --batch 6 --max-step-tokens 5 --no-prefix-reuse").raw, one.raw);
  std::string err;
  EXPECT_NE(bq::test::run_command(bq::test::biomedq_binary().string() + " eval --synthetic tiny --tasks pubmedqa "
                                      "--batch-invariant --precision llm-int8 --out " + (dir / "int8").string(),
                                  &err),
            0);
  EXPECT_NE(err.find("LLM.int8 picks its outlier columns over the whole batch"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir / "int8"));
}

TEST(EvalEndToEnd, SyntheticModelOnTheShippedExamplesByDefault) {
  fs::path run = bq::test::temp_dir("eval-synthetic") / "run";
  std::string cmd = "OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() + " eval --tasks pubmedqa,ddi2013 --limit 2 "
                    "--no-progress --bootstrap 50 --tasks-dir " + (bq::test::source_dir() / "tasks").string() + " --out " +
                    run.string();
  std::string out;
  ASSERT_EQ(bq::test::run_command(cmd + " --synthetic tiny", &out), 0) << out;
  json res = json::parse(bq::read_file(run / "results.json"));
  EXPECT_EQ(res["config"]["model"], "synthetic-tiny");
  EXPECT_EQ(res["config"]["model_info"]["synthetic"], "tiny");
  // No --data-dir: the example data shipped in examples/data, recorded by its file hash.
  EXPECT_EQ(fs::weakly_canonical(res["config"]["data_dir"].get<std::string>()),
            fs::weakly_canonical(bq::test::source_dir() / "examples/data"));
  fs::path test_file = bq::test::source_dir() / "examples/data/PubMedQA/test.tsv";
  EXPECT_EQ(res["tasks"]["pubmedqa"]["data_files"].begin().value(), bq::eval::sha256_file(test_file));
  EXPECT_EQ(res["tasks"]["ddi2013"]["examples_scored"], 2);
  // The generation's throughput: its token counts are the samples' own.
  const json& t = res["throughput"];
  size_t prompt_tokens = 0, generated_tokens = 0;
  std::ifstream samples(run / "samples.jsonl");
  for (std::string line; std::getline(samples, line);) {
    json r = json::parse(line);
    prompt_tokens += r["prompt_tokens"].get<size_t>();
    generated_tokens += r["generated_tokens"].get<size_t>();
  }
  EXPECT_EQ(t["prompt_tokens"].get<size_t>(), prompt_tokens) << t.dump();
  EXPECT_EQ(t["generated_tokens"].get<size_t>(), generated_tokens) << t.dump();
  EXPECT_GT(t["occupancy"].get<double>(), 0.0) << t.dump();
  EXPECT_LE(t["occupancy"].get<double>(), 1.0) << t.dump();
  EXPECT_GT(t["wall_s"].get<double>(), 0.0) << t.dump();
  // The wall time's parts: forward steps, the caches (opened and closed once per example), the rest.
  EXPECT_GT(t["prefill_s"].get<double>(), 0.0) << t.dump();
  EXPECT_GT(t["cache_s"].get<double>(), 0.0) << t.dump();
  EXPECT_LE(t["prefill_s"].get<double>() + t["decode_s"].get<double>() + t["cache_s"].get<double>(),
            t["wall_s"].get<double>()) << t.dump();
  EXPECT_NEAR(t["prefill_s"].get<double>() + t["decode_s"].get<double>() + t["cache_s"].get<double>() +
                  t["other_s"].get<double>(), t["wall_s"].get<double>(), 1e-6) << t.dump();
  // How long the model took to be ready (a preset: no checkpoint to hash).
  EXPECT_GT(t["model_load"]["engine_s"].get<double>(), 0.0) << t.dump();
  EXPECT_EQ(t["model_load"]["content_hash_s"].get<double>(), 0.0) << t.dump();

  // Exactly one of --model and --synthetic.
  EXPECT_NE(bq::test::run_command(cmd + "2", &out), 0);
  EXPECT_NE(out.find("--model DIR or --synthetic PRESET"), std::string::npos) << out;
  EXPECT_NE(bq::test::run_command(cmd + "3 --synthetic tiny --model /nonexistent", &out), 0);
}

// The timing mode: random weights with a real tokenizer (here the trained fixture model's), each answer stopped at
// its gold answer's token length; a tokenizer larger than the preset's vocabulary is refused by name.
TEST(EvalEndToEnd, SyntheticWithARealTokenizerAndGoldAnswerLengths) {
  const fs::path tokenizer = bq::test::source_dir() / "tests/fixtures/trained-llama";
  fs::path run = bq::test::temp_dir("eval-gold-lengths") / "run";
  std::string cmd = "OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() + " eval --tasks pubmedqa --limit 2 "
                    "--no-progress --bootstrap 20 --answer-lengths gold --tokenizer " + tokenizer.string() +
                    " --tasks-dir " + (bq::test::source_dir() / "tasks").string() + " --out " + run.string();
  std::string out;
  ASSERT_EQ(bq::test::run_command(cmd + " --synthetic small-100m", &out), 0) << out;
  json res = json::parse(bq::read_file(run / "results.json"));
  EXPECT_EQ(res["config"]["answer_lengths"], "gold");
  EXPECT_EQ(fs::path(res["config"]["model_info"]["tokenizer"].get<std::string>()), fs::absolute(tokenizer).lexically_normal());
  auto tok = bq::Tokenizer::load(tokenizer);
  std::ifstream samples(run / "samples.jsonl");
  int records = 0;
  for (std::string line; std::getline(samples, line); records++) {
    json r = json::parse(line);
    const int gold_tokens = int(tok.encode(r["gold"][0].get<std::string>(), false).size());
    EXPECT_GE(r["generated_tokens"].get<int>(), 1) << line;
    EXPECT_LE(r["generated_tokens"].get<int>(), gold_tokens) << line;  // fewer only where the model ended it
  }
  EXPECT_EQ(records, 2);

  EXPECT_NE(bq::test::run_command(cmd + "-tiny --synthetic tiny", &out), 0);
  EXPECT_NE(out.find("more than the 512 of preset tiny"), std::string::npos) << out;
}

// Every task under every prompting strategy at 0, 1 and 5 shots: one example each, on the tiny model. What is
// checked is that each combination runs through to a scored result with the prompt it was asked for.
TEST(EvalEndToEnd, EveryTaskUnderEveryStrategyAndShotCount) {
  fs::path tmp = bq::test::temp_dir("eval-strategies"), src = bq::test::source_dir();
  for (std::string prompting : {"instruction", "cot", "sc"})
    for (int shots : {0, 1, 5}) {
      SCOPED_TRACE(prompting + " " + std::to_string(shots) + "-shot");
      fs::path run = tmp / fmt::format("{}-{}", prompting, shots);
      run_ok(fmt::format("eval --synthetic tiny --tasks all --limit 1 --prompting {} --shots {} --sc-samples 2 "
                         "--data-dir {} --tasks-dir {} --out {} --no-progress --bootstrap 20",
                         prompting, shots, (src / "examples/data").string(), (src / "tasks").string(), run.string()));
      json r = json::parse(bq::read_file(run / "results.json"));
      EXPECT_EQ(r["config"]["prompting"], prompting);
      ASSERT_EQ(r["tasks"].size(), 8u);
      for (auto& item : r["tasks"].items()) {
        EXPECT_EQ(item.value()["examples_scored"], 1) << item.key();
        EXPECT_EQ(item.value()["shots"]["k"], shots) << item.key();
      }
      for (auto& line : lines_of(run / "samples.jsonl")) {
        json s = json::parse(line);
        EXPECT_EQ(s["raw"].size(), prompting == "sc" ? 2u : 1u) << s["task"];
        if (prompting != "instruction") {
          EXPECT_NE(s["prompt"].get<std::string>().find("Answer"), std::string::npos) << s["task"];
        }
      }
    }
}
