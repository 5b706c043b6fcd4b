// What runs record and how `table` and `report` read them: a quantized checkpoint recorded at its stored precision,
// overlapping runs refused by one rule, unfinished run folders skipped and listed, and the CPU memory figure being
// what the model holds (so nf4 is below bf16, as in the study).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "core/files.h"
#include "model/quantize_model.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// One OpenMP thread: the tiny model gains nothing from more, and spinning threads crawl on a busy 2-core machine.
int run(const std::string& args, std::string* out) {
  return bq::test::run_command("OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() + " " + args, out);
}

std::string run_ok(const std::string& args) {
  std::string out;
  EXPECT_EQ(run(args, &out), 0) << args << "\n" << out;
  return out;
}

std::string run_fails(const std::string& args) {
  std::string out;
  EXPECT_NE(run(args, &out), 0) << args << "\n" << out;
  return out;
}

// eval of one pubmedqa example (or `limit`) on the shipped example data, into `out`.
std::string eval_args(const std::string& model, const fs::path& out, const std::string& extra = "",
                      const fs::path& data = bq::test::source_dir() / "examples/data") {
  return "eval " + model + " --tasks pubmedqa --limit 1 --no-progress --bootstrap 20 --tasks-dir " +
         (bq::test::source_dir() / "tasks").string() + " --data-dir " + data.string() + " --out " + out.string() +
         " " + extra;
}

json results_of(const fs::path& run_dir) { return json::parse(bq::read_file(run_dir / "results.json")); }

}  // namespace

TEST(RunRecords, ResolvePrecisionFollowsTheStoredFormat) {
  using bq::quant::Scheme;
  bq::quant::QuantOptions nf4;
  nf4.scheme = Scheme::NF4;
  nf4.double_quant = false;
  nf4.blocksize = 128;
  bq::PrecisionOptions defaults;  // nothing given on the command line
  auto p = bq::resolve_precision(defaults, nf4, "ckpt");
  EXPECT_EQ(p.precision->name, "nf4");
  EXPECT_FALSE(p.double_quant);
  EXPECT_EQ(p.blocksize, 128);
  EXPECT_EQ(bq::resolve_precision(defaults, std::nullopt, "ckpt").precision->name, "bf16");

  bq::PrecisionOptions bf16 = defaults;
  bf16.precision_given = true;
  std::string e = bq::test::error_of([&] { bq::resolve_precision(bf16, nf4, "some/ckpt"); });
  EXPECT_NE(e.find("some/ckpt"), std::string::npos) << e;
  EXPECT_NE(e.find("--precision bf16"), std::string::npos) << e;
  bq::PrecisionOptions blocks = defaults;
  blocks.blocksize_given = true;  // 64 against the stored 128
  EXPECT_NE(bq::test::error_of([&] { bq::resolve_precision(blocks, nf4, "c"); }).find("--blocksize 64"),
            std::string::npos);

  bq::quant::QuantOptions eight;
  eight.scheme = Scheme::LLMInt8;
  EXPECT_EQ(bq::resolve_precision(defaults, eight, "c").precision->name, "llm-int8");
  bq::PrecisionOptions int8 = defaults;
  int8.precision = &bq::quant::precision_named("int8");
  int8.precision_given = true;
  EXPECT_EQ(bq::resolve_precision(int8, eight, "c").precision->name, "int8");  // the same stored bytes
  int8.precision = &bq::quant::precision_named("nf4");
  EXPECT_NE(bq::test::error_of([&] { bq::resolve_precision(int8, eight, "c"); }), "");
}

TEST(RunRecords, QuantizedCheckpointIsRecordedAtItsStoredPrecision) {
  fs::path tmp = bq::test::temp_dir("records-stored");
  fs::path m = tmp / "m", q4 = tmp / "q4", q8 = tmp / "q8";
  run_ok("synth --preset tiny --out " + m.string());
  run_ok("quantize --model " + m.string() + " --precision nf4 --double-quant off --blocksize 128 --out " + q4.string());
  run_ok("quantize --model " + m.string() + " --precision int8 --out " + q8.string());

  // eval without --precision: recorded as stored, layout included, in the config and the memory record.
  run_ok(eval_args("--model " + q4.string(), tmp / "run-q4"));
  json r = results_of(tmp / "run-q4");
  EXPECT_EQ(r["config"]["model_info"]["precision"], "nf4") << r["config"].dump(2);
  EXPECT_EQ(r["config"]["model_info"]["double_quant"], false);
  EXPECT_EQ(r["config"]["model_info"]["blocksize"], 128);
  EXPECT_EQ(r["memory"]["precision"], "nf4");
  run_ok(eval_args("--model " + q8.string(), tmp / "run-q8"));
  EXPECT_EQ(results_of(tmp / "run-q8")["config"]["model_info"]["precision"], "llm-int8");
  run_ok(eval_args("--model " + q8.string() + " --precision int8", tmp / "run-q8-int8"));
  EXPECT_EQ(results_of(tmp / "run-q8-int8")["config"]["model_info"]["precision"], "int8");

  // A contradicting precision or layout is an error naming the checkpoint, in every command that loads it.
  const std::string q = " --model " + q4.string();
  for (std::string cmd : {eval_args(q, tmp / "run-bad", "--precision bf16"),
                          eval_args(q, tmp / "run-bad", "--blocksize 64"),
                          "generate" + q + " --prompt hi --max-new-tokens 1 --precision fp4",
                          "logits" + q + " --ids 1,2 --out " + (tmp / "l.npy").string() + " --precision int8",
                          "inspect" + q + " --precision bf16",
                          "plan" + q + " --precision bf16 --device cpu",
                          "bench --device cpu" + q + " --precision nf4 --double-quant on --reps 1"}) {
    std::string out = run_fails(cmd);
    EXPECT_NE(out.find(q4.string() + ": the checkpoint is stored quantized as nf4"), std::string::npos)
        << cmd << "\n" << out;
  }
  EXPECT_FALSE(fs::exists(tmp / "run-bad" / "results.json"));

  // inspect, plan and bench without --precision print or record what is stored.
  json inspect = json::parse(run_ok("inspect --json --model " + q4.string()));
  EXPECT_EQ(inspect["precision"], "nf4 (stored)");
  EXPECT_EQ(inspect["blocksize"], 128);
  EXPECT_EQ(inspect["double_quant"], false);
  EXPECT_EQ(json::parse(run_ok("plan --json --device cpu --model " + q8.string()))["precision"], "llm-int8 (stored)");
  json bench = json::parse(run_ok("bench --device cpu --json --prompt-len 4 --gen-len 2 --reps 1" + q));
  EXPECT_EQ(bench["precision"], "nf4");
}

TEST(RunRecords, OverlappingRunsAreRefusedAlikeByTableAndReport) {
  fs::path tmp = bq::test::temp_dir("records-overlap"), src = bq::test::source_dir();
  // Two bf16 runs of one model on different data (a copy of the example data elsewhere), one with cot prompting.
  fs::copy(src / "examples/data", tmp / "data2", fs::copy_options::recursive);
  fs::path a = tmp / "a", b = tmp / "b", cot = tmp / "cot";
  run_ok(eval_args("--synthetic tiny", a));
  run_ok(eval_args("--synthetic tiny", b, "", tmp / "data2"));
  run_ok(eval_args("--synthetic tiny", cot, "--prompting cot"));

  std::string table = run_fails("table " + a.string() + " " + b.string());
  std::string report = run_fails("report " + a.string() + " " + b.string() + " --out " + (tmp / "rep").string());
  for (const std::string& out : {table, report}) {
    EXPECT_NE(out.find(a.string() + " and " + b.string() + " both hold synthetic-tiny at bf16"), std::string::npos)
        << out;
    EXPECT_NE(out.find("data_dir"), std::string::npos) << out;
  }
  EXPECT_FALSE(fs::exists(tmp / "rep" / "report.html"));  // no page with the two drawn as one

  // Other prompting is another place: a row each in the table, its own table and series in the report.
  std::string md = run_ok("table " + a.string() + " " + cot.string());
  EXPECT_NE(md.find("| pubmedqa | accuracy | synthetic-tiny (instruction, 0-shot) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| pubmedqa | accuracy | synthetic-tiny (cot, 0-shot) |"), std::string::npos) << md;
  run_ok("report " + a.string() + " " + cot.string() + " --out " + (tmp / "rep").string());
  EXPECT_TRUE(fs::exists(tmp / "rep" / "report.html"));
}

TEST(RunRecords, TableAndReportSkipAndListUnfinishedRunFolders) {
  fs::path tmp = bq::test::temp_dir("records-skip");
  fs::path runs = tmp / "runs";
  run_ok(eval_args("--synthetic tiny", runs / "done"));
  // A folder a failed validation left (config.json, empty samples), a torn results.json, one short of a task, an
  // empty folder and a stray file.
  fs::create_directories(runs / "refused");
  bq::write_file_atomic(runs / "refused" / "config.json", "{}");
  bq::write_file_atomic(runs / "refused" / "samples.jsonl", "");
  fs::create_directories(runs / "torn");
  std::string done = bq::read_file(runs / "done" / "results.json");
  bq::write_file_atomic(runs / "torn" / "results.json", done.substr(0, done.size() / 2));
  json partial = json::parse(done);
  partial["config"]["tasks"].push_back("hoc");
  fs::create_directories(runs / "partial");
  bq::write_file_atomic(runs / "partial" / "results.json", partial.dump());
  fs::create_directories(runs / "empty");
  bq::write_file_atomic(runs / "notes.txt", "stray");

  std::string expanded;
  for (const char* d : {"done", "empty", "notes.txt", "partial", "refused", "torn"})
    expanded += " " + (runs / d).string();
  // The parent folder (one level down) and the shell's runs/* alike.
  for (const std::string& args : {runs.string(), expanded}) {
    std::string out = run_ok("table " + args);
    EXPECT_NE(out.find("| pubmedqa | accuracy | synthetic-tiny |"), std::string::npos) << out;
    for (const char* d : {"empty", "partial", "refused", "torn"})
      EXPECT_NE(out.find("skipped " + (runs / d).string()), std::string::npos) << d << "\n" << out;
    EXPECT_NE(out.find("(a partial run)"), std::string::npos) << out;
    EXPECT_NE(out.find("not valid JSON"), std::string::npos) << out;
  }
  std::string out = run_ok("report " + runs.string() + " --out " + (tmp / "rep").string());
  EXPECT_NE(out.find("skipped " + (runs / "torn").string()), std::string::npos) << out;
  std::string md = bq::read_file(tmp / "rep" / "report.md");
  EXPECT_NE(md.find("1 runs"), std::string::npos) << md;
  EXPECT_NE(md.find("- `" + (runs / "refused").string() + ": no results.json"), std::string::npos) << md;
  EXPECT_NE(bq::read_file(tmp / "rep" / "report.html").find("report-skipped"), std::string::npos);

  // Nothing usable: a clear error saying why each was left out.
  out = run_fails("table " + (runs / "refused").string() + " " + (runs / "torn").string());
  EXPECT_NE(out.find("no finished run among the folders given"), std::string::npos) << out;
  EXPECT_NE(out.find((runs / "refused").string() + ": no results.json"), std::string::npos) << out;
  out = run_fails("report " + (runs / "empty").string() + " --out " + (tmp / "rep2").string());
  EXPECT_NE(out.find("no finished run"), std::string::npos) << out;
}

TEST(RunRecords, CpuMemoryIsWhatTheModelHoldsSoNf4IsBelowBf16) {
  fs::path tmp = bq::test::temp_dir("records-memory");
  fs::path m = tmp / "m";
  // Weights that outweigh one prompt's activations, as in any real model (the tiny preset's do not).
  run_ok("synth --hidden 256 --layers 2 --heads 4 --intermediate 1024 --vocab 512 --out " + m.string());
  run_ok(eval_args("--model " + m.string(), tmp / "bf16", "--precision bf16"));
  run_ok(eval_args("--model " + m.string(), tmp / "nf4", "--precision nf4"));
  json bf16 = results_of(tmp / "bf16")["memory"], nf4 = results_of(tmp / "nf4")["memory"];
  // The model-held peak: weights as used (not the bf16 checkpoint nf4 was quantized from), KV cache, activations.
  EXPECT_LT(nf4["weight_bytes"].get<double>(), bf16["weight_bytes"].get<double>()) << nf4.dump(2) << bf16.dump(2);
  EXPECT_LT(nf4["allocator_peak_bytes"].get<double>(), bf16["allocator_peak_bytes"].get<double>())
      << nf4.dump(2) << bf16.dump(2);
  for (const json* r : {&bf16, &nf4}) {
    EXPECT_GT((*r)["kv_cache_peak_bytes"].get<double>(), 0);
    EXPECT_EQ((*r)["weight_bytes"].get<size_t>() + (*r)["kv_cache_peak_bytes"].get<size_t>() +
                  (*r)["activations_peak_bytes"].get<size_t>(),
              (*r)["allocator_peak_bytes"].get<size_t>());
    EXPECT_GT((*r)["host_peak_rss_bytes"].get<double>(), (*r)["allocator_peak_bytes"].get<double>());  // the process
  }
  // Table 1 shows that figure and says so.
  std::string md = run_ok("table " + (tmp / "bf16").string() + " " + (tmp / "nf4").string());
  EXPECT_NE(md.find("Mem: GB, model-held peak: weights as used, KV cache, activations (allocator_peak_bytes)"),
            std::string::npos) << md;
}
