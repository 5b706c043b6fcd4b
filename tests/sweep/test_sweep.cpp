// Sweep files, their cells, the shards a job array deals them into, and the cells' states from run folders.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "core/files.h"
#include "core/folder_lock.h"
#include "sweep/sweep.h"
#include "test_util.h"

namespace bq::sweep {
namespace {

fs::path write_sweep(const fs::path& dir, const std::string& yaml) {
  fs::create_directories(dir);
  std::ofstream(dir / "sweep.yaml") << yaml;
  return dir / "sweep.yaml";
}

const char* kTwoModels = R"(
out: runs
models:
  - {name: tiny-a, preset: tiny}
  - {name: small, preset: small-100m}
precisions: [bf16, int8, nf4]
prompting:
  - {strategy: instruction}
  - {strategy: sc, shots: 1, samples: 3}
tasks: [pubmedqa, hoc]
device: cpu
batch: 2
context: 512
)";

TEST(Sweep, CellsArePlannedInFileOrder) {
  const fs::path dir = test::temp_dir("sweep-cells");
  const SweepFile s = read_sweep(write_sweep(dir, kTwoModels));
  EXPECT_EQ(s.out, (dir / "runs").lexically_normal());
  const std::vector<Cell> cells = plan_cells(s);
  ASSERT_EQ(cells.size(), 12u);
  EXPECT_EQ(cells[0].name, "tiny-a/bf16/instruction-0shot");
  EXPECT_EQ(cells[1].name, "tiny-a/bf16/sc3-1shot");
  EXPECT_EQ(cells[11].name, "small/nf4/sc3-1shot");
  EXPECT_EQ(cells[11].dir, s.out / "small" / "nf4" / "sc3-1shot");
  for (const Cell& c : cells) ASSERT_TRUE(c.planned_bytes.has_value()) << c.name << ": " << c.plan_note;
  // Fewer bits, less memory; self-consistency holds three sequences per example, so more KV cache.
  EXPECT_LT(*cells[10].planned_bytes, *cells[6].planned_bytes);  // small nf4 < small bf16 (instruction)
  EXPECT_GT(*cells[7].planned_bytes, *cells[6].planned_bytes);   // small bf16: sc3 > instruction
}

TEST(Sweep, ShardsCoverEveryCellOnceLargestFirst) {
  const fs::path dir = test::temp_dir("sweep-shards");
  const std::vector<Cell> cells = plan_cells(read_sweep(write_sweep(dir, kTwoModels)));
  std::multiset<size_t> seen;
  for (int i = 0; i < 5; ++i) {
    const auto mine = shard_cells(cells, i, 5);
    EXPECT_EQ(mine, shard_cells(cells, i, 5));  // deterministic
    for (size_t k = 1; k < mine.size(); ++k)
      EXPECT_GE(*cells[mine[k - 1]].planned_bytes, *cells[mine[k]].planned_bytes);
    seen.insert(mine.begin(), mine.end());
  }
  EXPECT_EQ(seen.size(), cells.size());
  EXPECT_EQ(std::set<size_t>(seen.begin(), seen.end()).size(), cells.size());
  size_t largest = 0;
  for (size_t i = 0; i < cells.size(); ++i)
    if (*cells[i].planned_bytes > *cells[largest].planned_bytes) largest = i;
  EXPECT_EQ(shard_cells(cells, 0, 5).front(), largest);

  EXPECT_EQ(parse_shard("2/4"), (std::pair<int, int>{1, 4}));
  for (const char* bad : {"0/4", "5/4", "1/0", "x/2", "2", "1/2/3", "-1/2", ""})
    EXPECT_NE(test::error_of([&] { parse_shard(bad); }).find("--shard"), std::string::npos) << bad;
}

TEST(Sweep, BadFilesNameTheKey) {
  const fs::path dir = test::temp_dir("sweep-bad");
  int n = 0;  // a file per case, so that no case reads another's
  auto error = [&](const std::string& yaml) {
    return test::error_of([&] { read_sweep(write_sweep(dir / std::to_string(n++), yaml)); });
  };
  const std::string ok_tail = "precisions: [nf4]\ntasks: [hoc]\n";
  EXPECT_NE(error("out: r\nmodels: [{preset: tiny}]\n" + ok_tail + "limitt: 3\n").find("unknown key 'limitt'"),
            std::string::npos);
  EXPECT_NE(error("out: r\nmodels: [{preset: tiny}]\nprecisions: [nf3]\ntasks: [hoc]\n").find("unknown 'nf3'"),
            std::string::npos);
  EXPECT_NE(error("out: r\nmodels: [{preset: tiny}, {preset: tiny}]\n" + ok_tail).find("a second model named 'tiny'"),
            std::string::npos);
  EXPECT_NE(error("out: r\nmodels: [{preset: tiny, name: a/b}]\n" + ok_tail).find("without '/'"), std::string::npos);
  EXPECT_NE(error("out: r\nmodels: [{}]\n" + ok_tail).find("give 'path' (a checkpoint) or 'preset'"),
            std::string::npos);
  EXPECT_NE(error("out: r\nmodels: [{preset: tiny}]\n" + ok_tail + "prompting: [{strategy: zero}]\n")
                .find("strategy 'zero'"),
            std::string::npos);
  EXPECT_NE(error("out: r\nmodels: [{preset: tiny}]\n" + ok_tail + "batch: -2\n").find("'batch' must be a whole number"),
            std::string::npos);
  EXPECT_NE(error("out: r\nmodels: [{preset: tiny}]\n" + ok_tail + "prompting: [{samples: 3}]\n")
                .find("'samples' applies to strategy sc only"),
            std::string::npos);
  EXPECT_NE(error("out: [unclosed\n").find("invalid YAML"), std::string::npos);
  EXPECT_NE(error(ok_tail).find("missing 'out'"), std::string::npos);
}

// A model whose checkpoint is not on this machine is planned from its preset's shapes (the study's sweep file lists
// paths of a cluster); without a preset it is listed, unplanned, with the reason.
TEST(Sweep, MissingCheckpointsArePlannedFromPresetsOrSaySo) {
  const fs::path dir = test::temp_dir("sweep-missing");
  const SweepFile s = read_sweep(write_sweep(dir, R"(
out: runs
models:
  - {name: big, path: /nonexistent/Llama-3.3-70B-Instruct, preset: llama-3.3-70b}
  - {name: unknown, path: /nonexistent/other}
precisions: [bf16, nf4]
tasks: [all]
)"));
  const std::vector<Cell> cells = plan_cells(s);
  ASSERT_EQ(cells.size(), 4u);
  ASSERT_TRUE(cells[0].planned_bytes);
  EXPECT_NE(cells[0].plan_note.find("planned from preset llama-3.3-70b"), std::string::npos) << cells[0].plan_note;
  // 70B at bf16 on one GPU (141 GB of weights) needs the largest class; at nf4 a far smaller one holds it.
  const GpuClass* bf16 = gpu_class_for(*cells[0].planned_bytes);
  ASSERT_TRUE(cells[1].planned_bytes);
  const GpuClass* nf4 = gpu_class_for(*cells[1].planned_bytes);
  ASSERT_NE(bf16, nullptr);
  ASSERT_NE(nf4, nullptr);
  EXPECT_GE(bf16->bytes, size_t(141) << 30);
  EXPECT_LE(nf4->bytes, size_t(48) << 30);
  EXPECT_FALSE(cells[2].planned_bytes);
  EXPECT_NE(cells[2].plan_note.find("no checkpoint there"), std::string::npos) << cells[2].plan_note;
}

TEST(Sweep, GpuClassesSmallestThatHolds) {
  ASSERT_NE(gpu_class_for(size_t(10) << 30), nullptr);
  EXPECT_EQ(gpu_class_for(size_t(10) << 30)->bytes, size_t(16) << 30);
  EXPECT_EQ(gpu_class_for(size_t(23) << 30)->bytes, size_t(40) << 30);  // 5% headroom: 24 GB is too tight
  EXPECT_EQ(gpu_class_for(size_t(300) << 30), nullptr);
}

// States come from the run folders alone: nothing, a held lock, an error record, a finished run.
TEST(Sweep, CellStatesFromRunFolders) {
  const fs::path dir = test::temp_dir("sweep-states");
  const SweepFile s = read_sweep(write_sweep(dir, R"(
out: runs
models: [{preset: tiny}]
precisions: [bf16, nf4, int8]
tasks: [pubmedqa]
limit: 1
device: cpu
)"));
  const std::vector<Cell> cells = plan_cells(s);
  ASSERT_EQ(cells.size(), 3u);
  EXPECT_EQ(cell_state(cells[0].dir), CellState::pending);
  fs::create_directories(cells[0].dir);
  {
    FolderLock lock(cells[0].dir, "test");
    EXPECT_EQ(cell_state(cells[0].dir), CellState::running);
  }
  EXPECT_EQ(cell_state(cells[0].dir), CellState::pending);  // released: an interrupted attempt
  fs::create_directories(cells[1].dir);
  std::ofstream(cells[1].dir / "sweep-error.txt") << "out of memory\n";
  EXPECT_EQ(cell_state(cells[1].dir), CellState::failed);
  std::string out;
  ASSERT_EQ(test::run_command(test::biomedq_binary().string() + " eval --synthetic tiny --precision int8 --tasks pubmedqa "
                              "--limit 1 --no-progress --bootstrap 10 --tasks-dir " +
                                  (test::source_dir() / "tasks").string() + " --out " + cells[2].dir.string(),
                              &out),
            0)
      << out;
  EXPECT_EQ(cell_state(cells[2].dir), CellState::done);
  ASSERT_EQ(test::run_command(test::biomedq_binary().string() + " sweep status " + s.file.string(), &out), 0) << out;
  EXPECT_NE(out.find("1 done, 0 running, 1 failed, 1 pending (of 3 cells)"), std::string::npos) << out;
}

}  // namespace
}  // namespace bq::sweep
