// Sweep files, their cells, the shards a job array deals them into, and the cells' states from run folders.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "core/files.h"
#include "core/folder_lock.h"
#include "eval/run_folder.h"
#include "sweep/run_cells.h"
#include "sweep/slurm.h"
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
  const SweepFile s = read_sweep(write_sweep(dir, kTwoModels));
  const std::vector<Cell> cells = plan_cells(s);
  std::multiset<size_t> seen;
  for (int i = 0; i < 5; ++i) {
    const auto mine = shard_cells(s, cells, i, 5);
    EXPECT_EQ(mine, shard_cells(s, cells, i, 5));  // deterministic
    for (size_t k = 1; k < mine.size(); ++k)
      EXPECT_GE(*cells[mine[k - 1]].planned_bytes, *cells[mine[k]].planned_bytes);
    seen.insert(mine.begin(), mine.end());
  }
  EXPECT_EQ(seen.size(), cells.size());
  EXPECT_EQ(std::set<size_t>(seen.begin(), seen.end()).size(), cells.size());
  size_t largest = 0;
  for (size_t i = 0; i < cells.size(); ++i)
    if (*cells[i].planned_bytes > *cells[largest].planned_bytes) largest = i;
  EXPECT_EQ(shard_cells(s, cells, 0, 5).front(), largest);

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
  EXPECT_NE(error("out: r\nmodels: [{preset: tiny}]\n" + ok_tail + "batch_invariant: yes\n")
                .find("'batch_invariant' must be true or false (it is 'yes')"),
            std::string::npos);
  EXPECT_NE(error("out: r\nmodels: [{preset: tiny}]\nprecisions: [llm-int8]\ntasks: [hoc]\nbatch_invariant: true\n")
                .find("'batch_invariant' with precision llm-int8"),
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

TEST(Sweep, CellsRunAsTheirEvalCommandsSay) {
  const fs::path dir = test::temp_dir("sweep-command");
  const SweepFile s = read_sweep(write_sweep(dir, std::string(kTwoModels) + "prompts: benchmark\nlimit: 7\n"));
  const std::vector<Cell> cells = plan_cells(s);
  const Cell& sc = cells[11];  // small/nf4/sc3-1shot
  const eval::EvalConfig cfg = cell_eval_config(s, sc);
  EXPECT_EQ(cfg.out_dir, sc.dir);
  EXPECT_EQ(cfg.model_name, "small");
  EXPECT_EQ(cfg.prompting, "sc");
  EXPECT_EQ(cfg.sc_samples, 3);
  EXPECT_EQ(cfg.shots, 1);
  EXPECT_EQ(cfg.limit, 7u);
  EXPECT_EQ(cfg.batch, 2);
  EXPECT_EQ(cfg.prompts, "benchmark");
  EXPECT_EQ(cfg.tasks, (std::vector<std::string>{"pubmedqa", "hoc"}));
  EXPECT_EQ(cfg.command_line, eval_command(s, sc));
  EXPECT_EQ(eval_command(s, sc, "/opt/bq"),
            "/opt/bq eval --synthetic small-100m --model-name small --precision nf4 --device cpu --tasks pubmedqa,hoc "
            "--prompting sc --shots 1 --sc-samples 3 --prompts benchmark --limit 7 --batch 2 --out " +
                sc.dir.string());
  EXPECT_EQ(cell_eval_config(s, cells[0]).sc_samples, eval::EvalConfig{}.sc_samples);  // instruction: not sampled
  const SweepFile inv = read_sweep(write_sweep(dir / "inv", std::string(kTwoModels) + "batch_invariant: true\n"));
  EXPECT_NE(eval_command(inv, plan_cells(inv)[0]).find(" --batch 2 --batch-invariant --out "), std::string::npos);
}

TEST(Sweep, ShardFromOptionThenSlurmThenAll) {
  ::unsetenv("SLURM_ARRAY_TASK_ID");
  ::unsetenv("SLURM_ARRAY_TASK_COUNT");
  ::unsetenv("SLURM_ARRAY_TASK_MIN");
  EXPECT_EQ(shard_to_run(""), std::make_pair(0, 1));
  ::setenv("SLURM_ARRAY_TASK_ID", "5", 1);
  ::setenv("SLURM_ARRAY_TASK_COUNT", "4", 1);
  ::setenv("SLURM_ARRAY_TASK_MIN", "3", 1);  // --array=3-6
  EXPECT_EQ(shard_to_run(""), std::make_pair(2, 4));
  EXPECT_EQ(shard_to_run("1/2"), std::make_pair(0, 2));  // the option wins
  ::setenv("SLURM_ARRAY_TASK_ID", "9", 1);                // outside the array's count
  EXPECT_THROW(shard_to_run(""), Error);
  ::setenv("SLURM_ARRAY_TASK_ID", "x", 1);
  EXPECT_THROW(shard_to_run(""), Error);
  ::unsetenv("SLURM_ARRAY_TASK_ID");
  ::unsetenv("SLURM_ARRAY_TASK_COUNT");
  ::unsetenv("SLURM_ARRAY_TASK_MIN");
}

TEST(Sweep, SlurmScriptAsksWhatThePlanSays) {
  const fs::path dir = test::temp_dir("sweep-slurm");
  SweepFile s = read_sweep(write_sweep(dir, R"(
out: runs
models: [{name: big, preset: llama-3.3-70b}, {name: small, preset: llama-3.1-8b}]
precisions: [bf16, nf4]
tasks: [pubmedqa]
gpus_per_job: 2
)"));
  const std::vector<Cell> cells = plan_cells(s);
  SlurmOptions o;
  o.partition = "gpu";
  o.time = "12:00:00";
  o.gpu_type = "h100";
  o.binary = "/opt/biomedq";
  const std::string script = slurm_script(s, cells, o);
  for (const char* line : {"#SBATCH --partition=gpu\n", "#SBATCH --array=0-3\n", "#SBATCH --gres=gpu:h100:2\n",
                           "#SBATCH --time=12:00:00\n", "#SBATCH --requeue\n", "#SBATCH --cpus-per-task=4\n"})
    EXPECT_NE(script.find(line), std::string::npos) << line << "\n" << script;
  EXPECT_NE(script.find("--output=" + (s.out / "slurm").string() + "/%A_%a.out\n"), std::string::npos) << script;
  EXPECT_NE(script.find("exec /opt/biomedq sweep run " + s.file.string() +
                        " --gpus-per-job 2 --shard $((SLURM_ARRAY_TASK_ID + 1))/4\n"),
            std::string::npos)
      << script;
  EXPECT_NE(script.find("# Largest cell big/bf16/instruction-0shot"), std::string::npos) << script;
  // Host memory from the plan: the 70B model's bf16 weights (~131 GiB) and more.
  const size_t at = script.find("--mem=");
  ASSERT_NE(at, std::string::npos);
  EXPECT_GT(std::stoull(script.substr(at + 6)), 131ull * 1024) << script;
  o.shards = 2;
  EXPECT_NE(slurm_script(s, cells, o).find("--array=0-1\n"), std::string::npos);
  o.shards = 99;  // never more array tasks than cells
  EXPECT_NE(slurm_script(s, cells, o).find("--array=0-3\n"), std::string::npos);
  o.shards = 0;
  o.partition = "gpu\n#SBATCH --uid=0";  // a value cannot add a directive
  EXPECT_THROW(slurm_script(s, cells, o), Error);
  o.partition = "gpu";
  o.mem = "64G";
  EXPECT_NE(slurm_script(s, cells, o).find("#SBATCH --mem=64G\n"), std::string::npos);
  s.gpu_memory = size_t(40) << 30;  // a partition of 40 GB GPUs: the 70B model at bf16 (~67 GiB per GPU) is left out
  const std::string small = slurm_script(s, cells, o);
  EXPECT_NE(small.find("--array=0-2\n"), std::string::npos) << small;
  EXPECT_NE(small.find(" --gpu-memory 40960MiB --shard"), std::string::npos) << small;
  EXPECT_EQ(shard_cells(s, cells, 0, 4).size(), 1u);
  EXPECT_NE(unrunnable_reason(s, cells[0]).find("--gpu-memory"), std::string::npos);
  EXPECT_EQ(shard_cells(s, cells, 3, 4), std::vector<size_t>{0});  // dealt last: big/bf16, which runs nowhere here
  s.gpu_memory = 0;
  s.out = dir / "runs with space";  // sbatch does not unquote #SBATCH lines
  EXPECT_THROW(slurm_script(s, cells, o), Error);
}

TEST(Sweep, RunCellsSkipsFinishedAndHeldCellsAndRecordsFailures) {
  const fs::path dir = test::temp_dir("sweep-run");
  std::string out;
  ASSERT_EQ(test::run_command(test::biomedq_binary().string() + " synth --preset tiny --out " + (dir / "m").string(), &out),
            0)
      << out;
  const SweepFile s = read_sweep(write_sweep(dir, "out: runs\nmodels: [{name: good, path: m}, {name: gone, path: "
                                                  "nowhere, preset: tiny}]\nprecisions: [bf16, nf4]\ntasks: [pubmedqa]\n"
                                                  "limit: 2\ndevice: cpu\ntasks_dir: " +
                                                      (test::source_dir() / "tasks").string() + "\n"));
  const std::vector<Cell> cells = plan_cells(s);
  ASSERT_EQ(cells.size(), 4u);
  std::vector<size_t> all = {0, 1, 2, 3};
  fs::create_directories(cells[1].dir);
  std::string log;
  {
    FolderLock held(cells[1].dir, "another shard");  // good/nf4: another process runs it
    std::FILE* f = std::tmpfile();
    const ShardTally t = run_cells(s, cells, all, f);
    EXPECT_EQ(t.finished, 1);   // good/bf16
    EXPECT_EQ(t.elsewhere, 1);  // good/nf4
    EXPECT_EQ(t.failed, 2);     // gone/*: no checkpoint to load
    std::rewind(f);
    char buf[4096];
    log.assign(buf, std::fread(buf, 1, sizeof buf, f));
    std::fclose(f);
  }
  EXPECT_NE(log.find("finished   good/bf16/instruction-0shot"), std::string::npos) << log;
  EXPECT_NE(log.find("elsewhere  good/nf4/instruction-0shot"), std::string::npos) << log;
  EXPECT_EQ(cell_state(cells[0].dir), CellState::done);
  EXPECT_EQ(cell_state(cells[2].dir), CellState::failed);
  EXPECT_NE(read_file(cells[2].dir / kCellErrorFile).find("nowhere"), std::string::npos);
  // The run folder records the sweep's model name and the eval command that reproduces the cell.
  const eval::RunConfig config = eval::read_run_config(cells[0].dir);
  EXPECT_EQ(config.model, "good");
  EXPECT_NE(read_file(cells[0].dir / "results.json").find("--model-name good"), std::string::npos);
  // Next attempt: the finished cell is skipped, the freed one runs; a failed cell that now succeeds loses its record.
  fs::create_directories(cells[3].dir);
  std::ofstream(cells[3].dir / kCellErrorFile) << "an earlier error\n";
  std::FILE* f = std::tmpfile();
  const ShardTally t = run_cells(s, cells, {0, 1}, f);
  std::fclose(f);
  EXPECT_EQ(t.already, 1);
  EXPECT_EQ(t.finished, 1);
  EXPECT_EQ(cell_state(cells[1].dir), CellState::done);
}

TEST(Sweep, TableCompareAndRecommendTakeTheSweepFolder) {
  const fs::path dir = test::temp_dir("sweep-folder");
  const SweepFile s = read_sweep(write_sweep(dir, "out: runs\nmodels: [{name: t, preset: tiny}]\nprecisions: [bf16, "
                                                  "nf4, int8]\ntasks: [pubmedqa]\nlimit: 2\ndevice: cpu\ntasks_dir: " +
                                                      (test::source_dir() / "tasks").string() + "\n"));
  const std::vector<Cell> cells = plan_cells(s);
  std::FILE* f = std::tmpfile();
  ASSERT_EQ(run_cells(s, cells, {0, 1, 2}, f).finished, 3);
  std::fclose(f);
  fs::create_directories(s.out / "slurm");  // job logs beside the cells: skipped, not an error
  const eval::RunSelection found = eval::select_finished_runs({s.out});
  EXPECT_EQ(found.finished.size(), 3u);
  const auto pairs = eval::pairs_with_baseline(s.out, "bf16");
  ASSERT_EQ(pairs.size(), 2u);
  for (const auto& [a, b] : pairs) EXPECT_EQ(a, cells[0].dir);
  EXPECT_THROW(eval::pairs_with_baseline(s.out, "fp4"), Error);
  std::string out;
  const std::string bin = test::biomedq_binary().string();
  ASSERT_EQ(test::run_command(bin + " table " + s.out.string(), &out), 0) << out;
  EXPECT_NE(out.find("| pubmedqa |"), std::string::npos) << out;
  ASSERT_EQ(test::run_command(bin + " compare " + s.out.string() + " --json", &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out.substr(out.find('['))).size(), 2u) << out;
  ASSERT_EQ(test::run_command(bin + " recommend --gpu-memory 1GB --runs " + s.out.string(), &out), 0) << out;
  EXPECT_NE(out.find("t nf4"), std::string::npos) << out;
}

}  // namespace
}  // namespace bq::sweep
