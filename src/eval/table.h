// The study's Table 1 from finished runs: one row per task and model, one column group per precision with peak
// memory, latency per sample and the primary score.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace bq::eval {

namespace fs = std::filesystem;

// Reads RUN_DIR/results.json of every run. Markdown (with a legend under the table) or CSV (one header line,
// one line per row; empty cells where a model lacks a precision). Errors: a run without results.json, two runs
// giving the same task, model and precision.
std::string format_results_table(const std::vector<fs::path>& run_dirs, bool csv);

// The peak memory of a run's results.json "memory" block in GB (1e9 bytes) and the key it came from ("" and 0
// when none is recorded): the device's peak, the allocator's, the host process's, else the weights alone.
std::pair<double, std::string> memory_gb(const nlohmann::json& memory);

// Sort key of precisions from full to fewest bits (fp32, bf16, fp16, int8, llm-int8, nf4, fp4; others last).
int precision_rank(const std::string& precision);

}  // namespace bq::eval
