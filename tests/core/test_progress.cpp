// Progress meters: what the line says, silence for short work, and lines while a step is still under way.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/progress.h"
#include "test_util.h"

namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) n++;
  return n;
}

struct Interval {  // plain lines every `s` seconds for one test
  explicit Interval(const char* s) { ::setenv("BIOMEDQ_PROGRESS_SECONDS", s, 1); }
  ~Interval() { ::unsetenv("BIOMEDQ_PROGRESS_SECONDS"); }
};

TEST(Progress, LineShowsDoneTotalPercentRateAndNote) {
  bq::ProgressMeter m("quantizing to nf4", 10, "GB", /*show=*/false);
  m.set_done_before(4);
  m.advance(3);
  m.set_note("layer 7");
  std::string line = m.line();
  EXPECT_NE(line.find("quantizing to nf4: 7/10 GB (70%)"), std::string::npos) << line;
  EXPECT_NE(line.find("GB/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA "), std::string::npos) << line;
  EXPECT_NE(line.find(", layer 7"), std::string::npos) << line;
}

TEST(Progress, ShortWorkPrintsNothing) {
  testing::internal::CaptureStderr();
  {
    bq::ProgressMeter m("short", 3, "tensors");
    m.advance(3);
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(Progress, DrawsWhileOneStepIsUnderWayThenCloses) {
  Interval every("0.05");
  testing::internal::CaptureStderr();
  {
    bq::ProgressMeter m("loading", 4, "layers");
    m.advance(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(400));  // one long step: no advance meanwhile
    m.advance(3);
  }
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_GE(count(err, "loading: 1/4 layers (25%)"), 2u) << err;  // repeated while the step ran
  EXPECT_NE(err.find("loading: 4/4 layers (100%)"), std::string::npos) << err;  // the closing line
}

TEST(Progress, DisabledMetersStaySilent) {
  Interval every("0.05");
  testing::internal::CaptureStderr();
  {
    bq::ProgressMeter m("quiet", 2, "GB", /*show=*/false);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

// The whole run on one line: examples of all tasks, which task, tokens generated; --no-progress silences it.
TEST(Progress, EvalShowsOverallProgressAcrossTasks) {
  auto dir = bq::test::temp_dir("progress-eval");
  std::string cmd = "BIOMEDQ_PROGRESS_SECONDS=0.02 OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() +
                    " eval --synthetic tiny --tasks pubmedqa,medqa --limit 2 --bootstrap 20 --data-dir " +
                    (bq::test::source_dir() / "examples/data").string() + " --out ";
  std::string out;
  ASSERT_EQ(bq::test::run_command(cmd + (dir / "a").string(), &out), 0) << out;
  EXPECT_NE(out.find("eval: "), std::string::npos) << out;
  EXPECT_NE(out.find("/4 examples"), std::string::npos) << out;
  EXPECT_NE(out.find("tokens generated"), std::string::npos) << out;
  EXPECT_NE(out.find("eval: 4/4 examples (100%)"), std::string::npos) << out;
  ASSERT_EQ(bq::test::run_command(cmd + (dir / "b").string() + " --no-progress", &out), 0) << out;
  EXPECT_EQ(out.find("examples ("), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}

}  // namespace

// Making weights and quantizing a checkpoint report GB done while they work (a 100 MB model, lines every 10 ms).
TEST(Progress, SynthAndQuantizeShowProgress) {
  auto dir = bq::test::temp_dir("progress-quantize");
  std::string bin = "BIOMEDQ_PROGRESS_SECONDS=0.01 OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string();
  std::string out;
  ASSERT_EQ(bq::test::run_command(bin + " synth --arch llama --hidden 1024 --layers 4 --heads 8 --kv-heads 8 "
                                        "--intermediate 2816 --vocab 1000 --out " + (dir / "m").string(), &out), 0)
      << out;
  EXPECT_NE(out.find("making random weights: "), std::string::npos) << out;
  ASSERT_EQ(bq::test::run_command(bin + " quantize --model " + (dir / "m").string() + " --precision nf4 --out " +
                                      (dir / "q").string(), &out), 0)
      << out;
  EXPECT_NE(out.find("quantize m to nf4: "), std::string::npos) << out;
  EXPECT_NE(out.find(" GB (100%)"), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}
