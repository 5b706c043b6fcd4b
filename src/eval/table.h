// The study's Table 1 from finished runs: one row per task and model, one column group per precision with peak
// memory, latency per sample and the primary score.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace bq::eval {

namespace fs = std::filesystem;

// Reads RUN_DIR/results.json of every run. Markdown (with a legend under the table) or CSV (one header line,
// one line per row; empty cells where a model lacks a precision). Errors: a run without results.json, two runs
// giving the same task, model and precision.
std::string format_results_table(const std::vector<fs::path>& run_dirs, bool csv);

}  // namespace bq::eval
