// `sweep slurm`: an sbatch job-array script for a sweep, one array task per shard, its requests from the plan.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "sweep/sweep.h"

namespace bq::sweep {

struct SlurmOptions {
  std::string partition;
  int shards = 0;          // array tasks; 0: one per runnable cell
  std::string time;        // --time (e.g. 24:00:00); "": the partition's default
  int cpus_per_task = 4;
  std::string mem;         // --mem as Slurm reads it (e.g. 64G); "": the largest cell's host memory from the plan
  std::string gpu_type;    // --gres=gpu:TYPE:G where the cluster names its GPU types
  std::string account;
  std::filesystem::path binary;  // the biomedq each array task runs (on a file system the nodes share)
};

// The script (s.gpus_per_job GPUs per task on CUDA). Errors: no partition, no runnable cell, a bad option value.
std::string slurm_script(const SweepFile& s, const std::vector<Cell>& cells, const SlurmOptions& o);

// Submits `script` with `sbatch --parsable`; returns the job id. Errors name sbatch's own message.
std::string submit_script(const std::filesystem::path& script);

}  // namespace bq::sweep
