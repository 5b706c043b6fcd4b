// The study's Table 1 from finished runs: one row per task and model, one column group per precision with peak
// memory, latency per sample and the primary score.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "eval/run_folder.h"

namespace bq::eval {

namespace fs = std::filesystem;

// Runs a table or figure would draw in one place are refused, the same way for `table` and `report`: two runs of
// the same model at the same precision, prompting and shots (one table cell, one bar or point of a figure), e.g.
// the same model on other data. The error names both folders and the first setting they differ in.
// `configs`: each run's folder and its configuration.
void check_no_overlap(const std::vector<std::pair<fs::path, RunConfig>>& configs);

enum class TableFormat { markdown, csv, latex };

// Reads RUN_DIR/results.json of every run. Markdown (with a legend under the table), CSV (one header line,
// one line per row; empty cells where a model lacks a precision) or a LaTeX booktabs tabular (a column group per
// precision, the legend as comments above it; the numbers as in Markdown). Runs of one model under several
// prompting configurations get a row each, the model named with its configuration ("tiny (cot, 0-shot)").
// Errors: a run without a readable results.json, runs that overlap (check_no_overlap).
std::string format_results_table(const std::vector<fs::path>& run_dirs, TableFormat format);

// Text set literally by LaTeX in body text: & % $ # _ { } ~ ^ \ escaped.
std::string latex_escape(const std::string& text);

// The memory figure Table 1 shows from a run's results.json "memory" block, in GB (1e9 bytes), and the key it came
// from ("" and 0 when none is recorded): on CUDA the device's peak (context included); on the CPU what the model
// holds at its peak (allocator_peak_bytes: weights as used, KV cache, activations), not the process's resident
// set; else the best there is (the process's peak, the weights alone).
std::pair<double, std::string> memory_gb(const nlohmann::json& memory);
// What a memory key of memory_gb measures, in words for legends ("model-held peak: ...").
std::string memory_source_words(const std::string& key);

}  // namespace bq::eval
