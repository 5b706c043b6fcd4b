// The CLI as users of lm-eval and llama.cpp meet it: --version, defaults and task names in --help, lm-eval's
// spellings, GGUF and wrong folders named plainly, units required, and an installed binary run from elsewhere.
#include <gtest/gtest.h>

#include "core/files.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

struct Cli {
  int rc;
  std::string out;
};

Cli biomedq(const std::string& args, const std::string& binary = bq::test::biomedq_binary().string()) {
  Cli c;
  c.rc = bq::test::run_command("OMP_NUM_THREADS=1 " + binary + " " + args, &c.out);
  return c;
}

void expect_has(const Cli& c, const std::string& want) { EXPECT_NE(c.out.find(want), std::string::npos) << want << "\n" << c.out; }

}  // namespace

TEST(CliUsability, VersionHelpDefaultsAndTaskNames) {
  Cli v = biomedq("--version");
  EXPECT_EQ(v.rc, 0);
  expect_has(v, "biomedq 0.");
  expect_has(v, "commit ");
  expect_has(v, "CUDA ");
  Cli h = biomedq("eval --help");
  EXPECT_EQ(h.rc, 0);
  for (const char* task : {"bc5cdr-chem", "chemprot", "ddi2013", "hoc", "litcovid", "medqa", "ncbi-disease", "pubmedqa"})
    expect_has(h, task);
  expect_has(h, "=test");   // --split's default
  expect_has(h, "=1234");   // --seed's default
}

TEST(CliUsability, UnknownPresetListsThemAndMemoryNeedsAUnit) {
  Cli c = biomedq("plan --preset llama-3-8b --precision nf4");
  EXPECT_NE(c.rc, 0);
  expect_has(c, "llama-3.1-8b");
  c = biomedq("plan --preset tiny --precision nf4 --device-memory 40");
  EXPECT_NE(c.rc, 0);
  expect_has(c, "no unit");
  EXPECT_EQ(biomedq("plan --preset tiny --precision nf4 --device-memory 40GB").rc, 0);
}

TEST(CliUsability, GgufAndFoldersThatAreNoCheckpointSaySoPlainly) {
  fs::path tmp = bq::test::temp_dir("cli-gguf");
  bq::write_file_atomic(tmp / "model.Q4_0.gguf", "GGUF");
  Cli c = biomedq("generate --model " + (tmp / "model.Q4_0.gguf").string() + " --prompt hi");
  EXPECT_NE(c.rc, 0);
  expect_has(c, "GGUF");
  expect_has(c, "Hugging Face checkpoint folders");
  c = biomedq("generate --model " + tmp.string() + " --prompt hi");
  EXPECT_NE(c.rc, 0);
  expect_has(c, "no config.json (it holds model.Q4_0.gguf");
}

TEST(CliUsability, LmEvalSpellingsAreAcceptedOrPointedToTheirCounterpart) {
  fs::path tmp = bq::test::temp_dir("cli-lm-eval"), run = tmp / "run";
  fs::path src = bq::test::source_dir();
  std::string common = "eval --synthetic tiny --tasks pubmedqa --data-dir " + (src / "examples/data").string() +
                       " --tasks-dir " + (src / "tasks").string() + " --no-progress --bootstrap 20 ";
  Cli c = biomedq(common + "--num_fewshot 1 --batch_size 2 --limit 2 --seed 7 --log_samples --apply_chat_template "
                           "--output_path " + run.string());
  ASSERT_EQ(c.rc, 0) << c.out;
  EXPECT_TRUE(fs::exists(run / "results.json"));
  c = biomedq(common + "--model_args pretrained=meta-llama/Llama-3.1-8B --out " + (tmp / "x").string());
  EXPECT_NE(c.rc, 0);
  expect_has(c, "--model_args is lm-eval's option; in biomedq use --model DIR");
}

TEST(CliUsability, InstalledBinaryFindsItsTasksAndDataFromAnyFolder) {
  fs::path tmp = bq::test::temp_dir("cli-install"), prefix = tmp / "prefix";
  fs::path build = bq::test::biomedq_binary().parent_path();
  std::string out;
  ASSERT_EQ(bq::test::run_command("cmake --install " + build.string() + " --prefix " + prefix.string(), &out), 0) << out;
  ASSERT_TRUE(fs::exists(prefix / "share/biomedq/tasks/hoc.yaml"));
  ASSERT_TRUE(fs::is_directory(prefix / "share/biomedq/examples/data/Hoc"));
  Cli c = biomedq("eval --synthetic tiny --tasks all --limit 1 --no-progress --bootstrap 20 --out " +
                      (tmp / "run").string(),
                  "cd / && env -u BIOMEDQ_TASKS_DIR -u BIOMEDQ_EXAMPLES_DIR " + (prefix / "bin/biomedq").string());
  EXPECT_EQ(c.rc, 0) << c.out;
  expect_has(c, "| pubmedqa |");
}
