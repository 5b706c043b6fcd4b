// sweep: the study's matrix from one file (src/sweep/): its cells planned, and their state from the run folders.
#include <cstdio>
#include <map>

#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "plan/memory_planner.h"
#include "sweep/run_cells.h"
#include "sweep/slurm.h"
#include "sweep/sweep.h"

namespace bq::cli {

namespace {

std::string size_words(size_t bytes) {
  const double mib = double(bytes) / double(1 << 20);
  return mib < 1024 ? fmt::format("{:.0f} MiB", mib) : fmt::format("{:.1f} GiB", mib / 1024);
}

void print_plan(const sweep::SweepFile& s, const std::vector<sweep::Cell>& cells, bool json) {
  nlohmann::json out = nlohmann::json::array();
  int cannot_run = 0;
  const bool cuda = s.device == "cuda";
  if (!json) std::printf("%-48s %12s  %s\n", "cell", cuda ? "per GPU" : "memory", "needs");
  for (const sweep::Cell& c : cells) {
    const sweep::GpuClass* g = c.planned_bytes ? sweep::gpu_class_for(*c.planned_bytes) : nullptr;
    cannot_run += !sweep::unrunnable_reason(s, c).empty();
    const std::string needs = !c.planned_bytes ? "not planned: " + c.plan_note
                              : !cuda        ? "host memory (cpu)"
                              : g            ? fmt::format("{} x {}", s.gpus_per_job, g->name)
                                             : "fits no GPU class: not run";
    if (json) {
      nlohmann::json j = {{"cell", c.name}, {"dir", c.dir.string()}, {"eval_command", sweep::eval_command(s, c)}};
      if (c.planned_bytes) j[cuda ? "planned_bytes_per_gpu" : "planned_bytes"] = *c.planned_bytes;
      if (c.host_bytes) j["host_bytes_loading"] = *c.host_bytes;
      if (cuda) {
        j["gpus"] = s.gpus_per_job;
        j["gpu_class"] = g ? nlohmann::json(std::string(g->name)) : nlohmann::json(nullptr);
      }
      if (!c.plan_note.empty()) j["note"] = c.plan_note;
      out.push_back(j);
    } else {
      std::printf("%-48s %12s  %s\n", c.name.c_str(), c.planned_bytes ? size_words(*c.planned_bytes).c_str() : "-",
                  needs.c_str());
    }
  }
  if (json) std::printf("%s\n", out.dump(1).c_str());
  else
    std::printf("%zu cells (%zu models x %zu precisions x %zu promptings), each on tasks %s; %d cannot run\n",
                cells.size(), s.models.size(), s.precisions.size(), s.promptings.size(),
                fmt::format("{}", fmt::join(s.tasks, ",")).c_str(), cannot_run);
}

void print_status(const std::vector<sweep::Cell>& cells, bool json) {
  std::map<std::string_view, int> counts;
  nlohmann::json out = nlohmann::json::array();
  for (const sweep::Cell& c : cells) {
    const std::string_view state = sweep::state_name(sweep::cell_state(c.dir));
    counts[state]++;
    if (json) out.push_back({{"cell", c.name}, {"state", state}, {"dir", c.dir.string()}});
    else std::printf("%-8s %s\n", std::string(state).c_str(), c.name.c_str());
  }
  if (json) {
    std::printf("%s\n", out.dump(1).c_str());
    return;
  }
  std::printf("%d done, %d running, %d failed, %d pending (of %zu cells)\n", counts["done"], counts["running"],
              counts["failed"], counts["pending"], cells.size());
}

// Options that say where the cells run, shared by plan, run and slurm.
struct Placement {
  int gpus_per_job = 0;    // 0: the file's
  std::string gpu_memory;  // "": any GPU class
};

void add_placement_options(CLI::App* cmd, Placement& p) {
  cmd->add_option("--gpus-per-job", p.gpus_per_job,
                  "GPUs each cell's layers are split over (default: the file's gpus_per_job)");
  cmd->add_option("--gpu-memory", p.gpu_memory,
                  "the memory of the GPUs the cells run on (e.g. 80GB): cells that need more are left out, for an "
                  "array on a partition of larger GPUs");
}

// Reads the sweep file with the command line's placement.
sweep::SweepFile read_with(const std::string& file, const Placement& p) {
  sweep::SweepFile s = sweep::read_sweep(file);
  if (p.gpus_per_job < 0 || p.gpus_per_job > 64) fail("--gpus-per-job {}: expected 1 to 64", p.gpus_per_job);
  if (p.gpus_per_job) s.gpus_per_job = p.gpus_per_job;
  if (!p.gpu_memory.empty()) s.gpu_memory = plan::parse_memory_size(p.gpu_memory, "--gpu-memory");
  return s;
}

}  // namespace

void register_sweep_commands(CLI::App& app) {
  auto* sweep_cmd = app.add_subcommand("sweep", "The study's matrix from one sweep file: plan, run (here or on Slurm) and follow its cells");
  sweep_cmd->require_subcommand(1);
  auto file = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto place = std::make_shared<Placement>();

  auto* plan = sweep_cmd->add_subcommand("plan", "Every cell with the memory it needs per GPU and the GPU class that holds it");
  plan->add_option("file", *file, "sweep file (YAML)")->required();
  plan->add_flag("--json", *json, "print the cells as JSON");
  plan->callback([file, json, place] {
    const sweep::SweepFile s = read_with(*file, *place);
    print_plan(s, sweep::plan_cells(s), *json);
  });
  add_placement_options(plan, *place);

  auto* status = sweep_cmd->add_subcommand("status", "Cells done, running, failed and pending, from the run folders alone");
  status->add_option("file", *file, "sweep file (YAML)")->required();
  status->add_flag("--json", *json, "print the cells' states as JSON");
  status->callback([file, json] {
    const sweep::SweepFile s = sweep::read_sweep(*file);
    print_status(sweep::plan_cells(s), *json);
  });

  auto shard = std::make_shared<std::string>();
  auto* run = sweep_cmd->add_subcommand("run", "Run the cells of one shard in turn (finished cells are skipped, "
                                               "interrupted ones resume); in a Slurm array task, its shard");
  run->add_option("file", *file, "sweep file (YAML)")->required();
  run->add_option("--shard", *shard, "I/N: the I-th of N shards (cells dealt largest first); default: the Slurm array "
                                     "task's (SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT), else all cells");
  add_placement_options(run, *place);
  run->callback([file, shard, place] {
    const sweep::SweepFile s = read_with(*file, *place);
    const std::vector<sweep::Cell> cells = sweep::plan_cells(s);
    const auto [index, count] = sweep::shard_to_run(*shard);
    const std::vector<size_t> mine = sweep::shard_cells(s, cells, index, count);
    std::printf("shard %d/%d: %zu of %zu cells\n", index + 1, count, mine.size(), cells.size());
    std::fflush(stdout);
    const sweep::ShardTally t = sweep::run_cells(s, cells, mine, stdout);
    std::printf("shard %d/%d: %d finished, %d done before, %d running elsewhere, %d not runnable, %d failed\n",
                index + 1, count, t.finished, t.already, t.elsewhere, t.unrunnable, t.failed);
    if (t.failed) fail("{} cells failed; each folder's {} says why", t.failed, sweep::kCellErrorFile);
  });

  auto slurm = std::make_shared<sweep::SlurmOptions>();
  auto script = std::make_shared<std::string>();
  auto submit = std::make_shared<bool>(false);
  auto* sl = sweep_cmd->add_subcommand("slurm", "Write an sbatch job-array script for the sweep (one array task per "
                                                "shard, requests from the plan, --requeue); --submit submits it");
  sl->add_option("file", *file, "sweep file (YAML)")->required();
  sl->add_option("--partition", slurm->partition, "Slurm partition")->required();
  add_placement_options(sl, *place);
  sl->add_option("--time", slurm->time, "time limit per array task, as sbatch takes it (e.g. 24:00:00)");
  sl->add_option("--shards", slurm->shards, "array tasks (default: one per runnable cell)");
  sl->add_option("--cpus-per-task", slurm->cpus_per_task, "CPUs per array task (default 4)");
  sl->add_option("--mem", slurm->mem, "host memory per array task, as sbatch takes it (default: from the plan)");
  sl->add_option("--gpu-type", slurm->gpu_type, "GPU type in --gres, where the cluster names them (e.g. a100)");
  sl->add_option("--account", slurm->account, "Slurm account to charge");
  sl->add_option("--script", *script, "where to write the script (default: <out>/slurm/<sweep name>.sbatch)");
  sl->add_flag("--submit", *submit, "submit it with sbatch and print the job id");
  sl->callback([file, place, slurm, script, submit] {
    const sweep::SweepFile s = read_with(*file, *place);
    const std::vector<sweep::Cell> cells = sweep::plan_cells(s);
    slurm->binary = std::filesystem::read_symlink("/proc/self/exe");
    const std::string text = sweep::slurm_script(s, cells, *slurm);
    const std::filesystem::path path =
        script->empty() ? s.out / "slurm" / (s.file.stem().string() + ".sbatch") : std::filesystem::path(*script);
    std::filesystem::create_directories(s.out / "slurm");  // the array tasks' logs go there
    write_file_atomic(path, text);
    std::printf("%s\n", path.string().c_str());
    if (*submit) std::printf("submitted job %s\n", sweep::submit_script(path).c_str());
  });
}

}  // namespace bq::cli
