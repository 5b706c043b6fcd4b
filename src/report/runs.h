// What a report reads from run folders: each run's results.json reduced to the numbers the figures plot, and the
// pairing of every quantized run with the full-precision run it is compared against.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "eval/run_folder.h"

namespace bq::report {

namespace fs = std::filesystem;

struct TaskResult {
  std::string task, metric;  // metric: the task's primary metric
  double score = 0, ci_lo = 0, ci_hi = 0;
  double latency_mean_s = 0, latency_sd_s = 0, latency_p95_s = 0;
  double prompt_tokens_mean = 0;
  size_t examples = 0;
  bool dev_fallback = false;
};

struct RunSummary {
  fs::path dir;
  std::string model, precision, prompting;
  int shots = 0;
  double memory_gb = 0;
  std::string memory_source;           // the results.json memory key memory_gb came from ("" when none)
  std::optional<double> parameters;    // model size, when the run recorded it
  std::string command;                 // the eval command line, when the run recorded it
  eval::RunConfig config;              // the settings that decided the samples
  std::vector<TaskResult> tasks;

  double mean_score() const;           // over the run's tasks
  double mean_prompt_tokens() const;   // per example, over all scored examples
  std::string label() const;           // "model precision prompting k-shot"
};

// Reads RUN_DIR/results.json (eval::read_run_results). Errors (naming the file): missing, not JSON, not a biomedq
// results file.
RunSummary load_run(const fs::path& dir);


// Everything of a run's configuration but its precision (and the precision's knobs) and its task list: two runs
// with the same key are the same model under the same prompting and can be paired example by example.
nlohmann::json pairing_key(const RunSummary& run);

struct RunPair {
  size_t baseline = 0, quantized = 0;  // indices into the runs
};

// Each run that is not full precision, with the full-precision run of the same pairing key (bf16 preferred, then
// fp16, then fp32); runs without such a baseline are left out.
std::vector<RunPair> pair_runs(const std::vector<RunSummary>& runs);

struct PairedDelta {
  size_t pair = 0;  // index into the pairs
  std::string task, metric;
  double delta = 0, ci_lo = 0, ci_hi = 0;  // quantized minus baseline, primary metric
  size_t paired_examples = 0, right_to_wrong = 0, wrong_to_right = 0;
  double mcnemar_p = 1;
};

// bq::eval::compare_runs on every pair, one entry per task both runs scored.
std::vector<PairedDelta> paired_deltas(const std::vector<RunSummary>& runs, const std::vector<RunPair>& pairs,
                                       uint64_t seed = 1234, int resamples = 1000);

}  // namespace bq::report
