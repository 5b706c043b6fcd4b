// The whole evaluation through the CLI on a tiny random-weight model and the shipped example data: an interrupted
// run resumed without recomputing finished samples, rescore reproducing results.json, the Table 1 printout.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "core/files.h"
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

std::string run_ok(const std::string& args) {
  std::string out;
  int rc = bq::test::run_command(bq::test::biomedq_binary().string() + " " + args, &out);
  EXPECT_EQ(rc, 0) << args << "\n" << out;
  return out;
}

}  // namespace

TEST(EvalEndToEnd, SynthEvalInterruptResumeRescoreTable) {
  fs::path tmp = bq::test::temp_dir("eval-e2e"), src = bq::test::source_dir();
  fs::path model = tmp / "tiny", run = tmp / "run";
  run_ok("synth --preset tiny --out " + model.string());
  std::string eval = "eval --model " + model.string() + " --tasks all --data-dir " + (src / "examples/data").string() +
                     " --tasks-dir " + (src / "tasks").string() + " --out " + run.string() +
                     " --no-progress --bootstrap 100 --limit ";

  // A run stopped after the first example of each task, its last record torn by the interruption.
  run_ok(eval + "1");
  fs::path samples = run / "samples.jsonl";
  auto first = lines_of(samples);
  ASSERT_EQ(first.size(), 8u);
  { std::ofstream(samples, std::ios::app) << R"({"task":"hoc","id":"90000002","raw":["{\"activ)"; }

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
