// One task made ready for a run: the evaluated split, the selected examples, few-shot examples or the benchmark's
// prompt file, and the prompt each example gets. Shared by eval, rescore, compare and `data prompts`.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "eval/run_folder.h"
#include "eval/task.h"

namespace bq::eval {

struct PreparedTask {
  TaskConfig task;
  SplitChoice split;
  Dataset data;
  std::vector<size_t> selected;  // indices into data.examples, in file order
  std::string shot_split;
  std::vector<Example> shots;
  nlohmann::json data_files = nlohmann::json::object();  // path -> sha256
  std::string benchmark_template;
  fs::path benchmark_file;
};

// A seed for one purpose ("shots:hoc", "bootstrap:hoc", ...) derived from the run's seed; the same on every platform.
uint64_t derive_seed(uint64_t seed, std::string_view what);

// For a run of configuration `cfg` (data_dir, split, shots, prompts, seed, lenient, limit_random).
// Errors (missing split, too few examples for the shots, no benchmark prompt file) name the file or folder.
PreparedTask prepare_task(const TaskConfig& task, const RunConfig& cfg, size_t limit);

// The user message for one example: the benchmark's prompt file or biomedq's own template (cot unless
// prompting is "instruction").
std::string build_prompt(const PreparedTask& p, const RunConfig& cfg, const Example& ex);

// One JSON object per selected example: task, split, id, prompt (the user message, before any chat template) and
// answer (the gold answer written the way the prompts ask for it). For inspecting prompts and for fine-tuning.
std::vector<nlohmann::json> prompt_records(const PreparedTask& p, const RunConfig& cfg);

}  // namespace bq::eval
