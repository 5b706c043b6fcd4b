// The evaluation loop: prompts every selected example of each task, parses and scores the answers, and keeps a
// run folder (run_folder.h) that survives interruption.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "eval/run_folder.h"
#include "eval/task.h"
#include "generate/text_generator.h"

namespace bq::eval {

struct EvalConfig {
  std::vector<std::string> tasks = {"all"};  // task names, or "all"
  fs::path data_dir;
  fs::path out_dir;
  fs::path tasks_dir;           // empty: default_tasks_dir()
  std::string split = "test";   // "test" falls back to "dev" where the data has no test file (marked)
  size_t limit = 0;             // 0: every example; else the first N, or N drawn with the seed (limit_random)
  bool limit_random = false;
  int shots = 0;
  std::string prompting = "instruction";  // instruction | cot | sc (self-consistency over CoT samples)
  int sc_samples = 5;
  float temperature = 0.7f;     // sc sampling temperature; instruction and cot decode greedily
  float top_p = 1.0f;           // sc only
  uint64_t seed = 1234;         // few-shot draws, random limits, sc sampling seeds, bootstrap
  std::string prompts = "own";  // own | benchmark (the data directory's prompt_*.txt)
  bool chat = true;             // apply the model's chat template
  // task: each answer may run to the task's max_new_tokens; gold: to the token length of its gold answer (a timing
  // mode for random weights, which never stop early, so they do the work a real model would)
  std::string answer_lengths = "task";
  int batch = 1;                // prompts per generate() call; 1 reproduces one-at-a-time latency
  bool lenient = false;         // skip and count malformed data rows instead of failing
  int bootstrap_resamples = 1000;
  bool progress = true;         // progress on stderr (a bar on a terminal, periodic lines otherwise)
  nlohmann::json model_info = nlohmann::json::object();  // caller's model facts (path, hash, precision...)
  std::string model_name;       // the name tables show ("": the model's own, its folder's or preset's)
  std::string command_line;     // the invocation, kept in results.json so reports trace numbers to it ("": none)
  nlohmann::json model_load;    // seconds loading the model took (LoadTimes), kept in results.json ("": none)
};

// The settings that decide a run's samples (its config.json): resuming into a run folder requires the same ones.
// (limit, batch, progress and bootstrap_resamples may change between invocations.)
RunConfig eval_identity(const EvalConfig& cfg, const std::string& model_name);

// Everything about a run that can be checked without the model: options, every task's data, shots and prompt
// files, and that out_dir is absent, empty or a run folder. Call before loading a model; writes nothing.
void check_eval(const EvalConfig& cfg);

// The records of `data prompts` (prepare.h, prompt_records) for cfg's tasks, split, shots and prompts.
std::vector<nlohmann::json> export_prompts(const EvalConfig& cfg);

// Evaluates, resuming from out_dir/samples.jsonl, and writes out_dir/{config.json,results.json}.
// Returns the results. Errors: bad options, data problems, a folder that is not a run's, another configuration
// with finished samples in out_dir, another process holding out_dir (a run folder is locked while in use).
// Nothing is written into out_dir before all of that is checked.
nlohmann::json run_eval(TextGenerator& gen, const EvalConfig& cfg);

// Recomputes results.json from config.json and samples.jsonl (re-parsing the raw outputs), without a model.
nlohmann::json rescore_run(const fs::path& run_dir, int bootstrap_resamples = 1000);

// Pairs two runs by task and example id (re-parsing both): per task, (B - A) of every metric with a paired
// bootstrap 95% interval, answers flipped right->wrong and wrong->right (counts, and the example ids in id order),
// and McNemar's test on correctness (continuity-corrected chi-square). Tasks in only one run are left out;
// different data files are an Error.
// `flips`, when given, receives one record per flipped example, in the order of the ids: task, id, direction
// ("right_to_wrong" or "wrong_to_right"), gold, and for each of "a" and "b" the run folder, prompt, raw outputs,
// answer and correct. Answer and correctness are re-parsed from the raw outputs as the counts are (the records'
// own unless the parser changed since the run).
nlohmann::json compare_runs(const fs::path& run_a, const fs::path& run_b, uint64_t seed = 1234, int resamples = 1000,
                            std::vector<nlohmann::ordered_json>* flips = nullptr);

}  // namespace bq::eval
