// Sweeps: the study as a matrix of cells (model × precision × prompting), each cell an ordinary resumable run
// folder evaluated on the sweep's tasks. A sweep file (YAML) names the matrix; the planner sizes every cell; cells are
// dealt to shards largest first, so that the shards of a job array take the same work every time.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "eval/run.h"
#include "quant/precision.h"

namespace bq::sweep {

namespace fs = std::filesystem;

struct SweepModel {
  std::string name;  // the cell folders' first part
  fs::path path;     // a checkpoint folder; empty: a synthetic model of `preset` (timing)
  std::string preset;  // shapes for planning where the checkpoint is not here (and a synthetic model's shapes)
};

struct Prompting {
  std::string strategy = "instruction";  // instruction | cot | sc
  int shots = 0;
  int samples = 1;  // sc: answers sampled per example
};

struct SweepFile {
  fs::path file;  // the sweep file; relative paths in it are relative to its folder
  fs::path out;   // the cells' run folders go under it
  std::vector<SweepModel> models;
  std::vector<const quant::Precision*> precisions;
  std::vector<Prompting> promptings;
  std::vector<std::string> tasks;  // names, or "all"
  fs::path data_dir, tasks_dir;    // empty: eval's defaults
  std::string prompts = "own";     // own | benchmark (the data's prompt files, as the study)
  size_t limit = 0;                // examples per task; 0: all
  int batch = 1;
  bool batch_invariant = false;    // eval --batch-invariant
  int context = 4096;              // positions per sequence the planner sizes the KV cache for
  std::string device = "cuda";
  int gpus_per_job = 1;
  size_t gpu_memory = 0;  // the GPUs' memory where the cells run (--gpu-memory); 0: any GPU class
};

// Reads and checks a sweep file: unknown keys, unknown precisions or strategies, absurd numbers and duplicate
// names are a bq::Error naming the file and the key.
SweepFile read_sweep(const fs::path& file);

struct Cell {
  size_t model = 0;  // index into SweepFile::models
  const quant::Precision* precision = nullptr;
  Prompting prompting;
  std::string name;  // "<model>/<precision>/<strategy>-<shots>shot" (sc: "sc<samples>-<shots>shot")
  fs::path dir;      // its run folder
  std::optional<size_t> planned_bytes;  // what each GPU must hold (the planner's total); none: could not plan
  std::optional<size_t> host_bytes;     // what the host holds while it loads the model (bf16 weights on the CPU)
  std::string plan_note;                // why not, or what the plan assumed
};

// Where a cell's last failed attempt left its error (removed when an attempt finishes).
inline constexpr const char* kCellErrorFile = "sweep-error.txt";

// Every cell, in file order (models, then precisions, then promptings), each planned.
std::vector<Cell> plan_cells(const SweepFile& s);

// The cell's evaluation settings: the sweep's tasks, data, limit and batch, the cell's prompting and run folder.
eval::EvalConfig cell_eval_config(const SweepFile& s, const Cell& c);
// The `biomedq eval` command that runs the cell by hand (the sweep runs it in-process and records this).
std::string eval_command(const SweepFile& s, const Cell& c, const std::string& binary = "biomedq");

// The GPU class a cell needs: the smallest in the table with room for its planned bytes per GPU (with 5% headroom);
// none when no class has room.
struct GpuClass {
  std::string_view name;
  size_t bytes;
};
const std::vector<GpuClass>& gpu_classes();
const GpuClass* gpu_class_for(size_t bytes_per_gpu);

// The cells of shard `index` of `count` (0-based): the runnable cells sorted by planned bytes, largest first (ties by
// name), then the others (reported, not run), dealt in turn; indices into `cells`.
std::vector<size_t> shard_cells(const SweepFile& s, const std::vector<Cell>& cells, int index, int count);

// --shard I/N (1-based I, as people count shards) to a 0-based index and a count; a bq::Error naming the option.
std::pair<int, int> parse_shard(const std::string& text);
// The shard `sweep run` takes: --shard I/N when given (`option`), else the Slurm array task's (SLURM_ARRAY_TASK_ID
// of SLURM_ARRAY_TASK_COUNT, ids counted from SLURM_ARRAY_TASK_MIN), else the one shard of all cells.
std::pair<int, int> shard_to_run(const std::string& option);

enum class CellState { pending, running, failed, done };
std::string_view state_name(CellState s);
// From the run folder alone: done (a finished results.json), running (its lock is held), failed (the last attempt
// left an error record), pending (nothing, or samples of an interrupted attempt).
CellState cell_state(const fs::path& dir);

// Whether `sweep run` runs the cell: planned, and on CUDA fitting some GPU class (and s.gpu_memory when given);
// else why not.
std::string unrunnable_reason(const SweepFile& s, const Cell& c);

}  // namespace bq::sweep
