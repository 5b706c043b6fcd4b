// The run folder through the CLI: settings refused before anything is written, a folder that is not a run's
// never touched, one process at a time (the lock), repeated records, and the summary eval prints.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "core/files.h"
#include "core/folder_lock.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

struct Cli {
  int rc;
  std::string out;
};

Cli biomedq(const std::string& args) {
  Cli c;
  c.rc = bq::test::run_command("OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() + " " + args, &c.out);
  return c;
}

std::string eval_args(const fs::path& data, const fs::path& run, const std::string& extra = "") {
  fs::path src = bq::test::source_dir();
  return "eval --synthetic tiny --data-dir " + data.string() + " --tasks-dir " + (src / "tasks").string() +
         " --out " + run.string() + " --no-progress --bootstrap 50 --limit 1 " + extra;
}

fs::path example_data() { return bq::test::source_dir() / "examples/data"; }

size_t line_count(const fs::path& p) {
  std::ifstream in(p);
  size_t n = 0;
  for (std::string l; std::getline(in, l);) n++;
  return n;
}

}  // namespace

TEST(EvalRunFolder, BadShotsRefusedBeforeAnyTaskRunsOrAnythingIsWritten) {
  fs::path tmp = bq::test::temp_dir("run-folder-shots"), data = tmp / "data", run = tmp / "run";
  fs::copy(example_data(), data, fs::copy_options::recursive);
  fs::remove(data / "LitCovid/train.tsv");  // as in the benchmark: LitCovid has a test split only
  fs::remove(data / "LitCovid/dev.tsv");
  Cli c = biomedq(eval_args(data, run, "--tasks all --shots 5"));
  EXPECT_NE(c.rc, 0);
  EXPECT_NE(c.out.find("litcovid"), std::string::npos) << c.out;
  EXPECT_FALSE(fs::exists(run)) << "a refused run left a folder behind";
  // The corrected command into the same folder runs.
  c = biomedq(eval_args(data, run, "--tasks all --shots 0"));
  EXPECT_EQ(c.rc, 0) << c.out;
}

TEST(EvalRunFolder, FolderOfARunThatNeverFinishedASampleTakesANewConfiguration) {
  fs::path tmp = bq::test::temp_dir("run-folder-retake"), run = tmp / "run";
  ASSERT_EQ(biomedq(eval_args(example_data(), run, "--tasks pubmedqa")).rc, 0);
  bq::write_file_atomic(run / "samples.jsonl", "");  // as a run that failed before its first sample left it
  Cli c = biomedq(eval_args(example_data(), run, "--tasks medqa"));
  EXPECT_EQ(c.rc, 0) << c.out;
  EXPECT_EQ(line_count(run / "samples.jsonl"), 1u);
  // With finished samples, another configuration is refused.
  c = biomedq(eval_args(example_data(), run, "--tasks hoc"));
  EXPECT_NE(c.rc, 0);
  EXPECT_NE(c.out.find("another configuration"), std::string::npos) << c.out;
}

TEST(EvalRunFolder, AnotherProcessHoldingTheFolderIsNamed) {
  fs::path tmp = bq::test::temp_dir("run-folder-lock"), run = tmp / "run";
  fs::create_directories(run);
  {
    bq::FolderLock held(run, "a test holding the folder");
    Cli c = biomedq(eval_args(example_data(), run, "--tasks pubmedqa"));
    EXPECT_NE(c.rc, 0);
    EXPECT_NE(c.out.find("in use by pid"), std::string::npos) << c.out;
    EXPECT_NE(c.out.find("a test holding the folder"), std::string::npos) << c.out;
    EXPECT_FALSE(fs::exists(run / "samples.jsonl"));
  }
  ASSERT_EQ(biomedq(eval_args(example_data(), run, "--tasks pubmedqa")).rc, 0);
  bq::FolderLock held(run, "another holder");
  Cli c = biomedq("rescore " + run.string());
  EXPECT_NE(c.rc, 0);
  EXPECT_NE(c.out.find("in use by pid"), std::string::npos) << c.out;
}

TEST(EvalRunFolder, FolderThatIsNotARunIsNeverWritten) {
  fs::path tmp = bq::test::temp_dir("run-folder-foreign"), run = tmp / "mine";
  fs::create_directories(run);
  bq::write_file_atomic(run / "samples.jsonl", "{\"my\": \"data\"}\n");
  Cli c = biomedq(eval_args(example_data(), run, "--tasks pubmedqa"));
  EXPECT_NE(c.rc, 0);
  EXPECT_NE(c.out.find("not a biomedq run folder"), std::string::npos) << c.out;
  EXPECT_EQ(bq::read_file(run / "samples.jsonl"), "{\"my\": \"data\"}\n");
  fs::path notes = tmp / "notes";
  fs::create_directories(notes);
  bq::write_file_atomic(notes / "thesis.tex", "x");
  EXPECT_NE(biomedq(eval_args(example_data(), notes, "--tasks pubmedqa")).rc, 0);
  EXPECT_EQ(fs::directory_iterator(notes)->path().filename(), "thesis.tex");
}

TEST(EvalRunFolder, RepeatedRecordsCountOnceAndMixedRunsAreRefused) {
  fs::path tmp = bq::test::temp_dir("run-folder-dupes"), run = tmp / "run";
  ASSERT_EQ(biomedq(eval_args(example_data(), run, "--tasks pubmedqa,medqa")).rc, 0);
  std::string samples = bq::read_file(run / "samples.jsonl");
  std::string first = samples.substr(0, samples.find('\n') + 1);
  bq::write_file_atomic(run / "samples.jsonl", samples + first + first);
  Cli c = biomedq("rescore " + run.string());
  EXPECT_EQ(c.rc, 0) << c.out;
  EXPECT_NE(c.out.find("2 repeated records"), std::string::npos) << c.out;
  auto results = nlohmann::json::parse(bq::read_file(run / "results.json"));
  auto task = nlohmann::json::parse(first)["task"].get<std::string>();
  EXPECT_EQ(results["tasks"][task]["examples_scored"], 1);
  EXPECT_EQ(results["tasks"][task]["duplicate_records_ignored"], 2);
  // The same example with another prompt: two runs were mixed.
  auto other = nlohmann::json::parse(first);
  other["prompt_sha256"] = "0000";
  bq::write_file_atomic(run / "samples.jsonl", samples + other.dump() + "\n");
  c = biomedq("rescore " + run.string());
  EXPECT_NE(c.rc, 0);
  EXPECT_NE(c.out.find("different prompts"), std::string::npos) << c.out;
}

TEST(EvalRunFolder, EvalPrintsTheScoresNotJustAPath) {
  fs::path tmp = bq::test::temp_dir("run-folder-summary"), run = tmp / "run";
  Cli c = biomedq(eval_args(example_data(), run, "--tasks bc5cdr-chem,hoc"));
  ASSERT_EQ(c.rc, 0) << c.out;
  for (const char* want : {"| bc5cdr-chem |", "| hoc |", "| f1 |", "| macro_f1 |", "unparsed", "memory:", "results:"})
    EXPECT_NE(c.out.find(want), std::string::npos) << want << "\n" << c.out;
}
