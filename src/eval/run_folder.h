// A run folder, as `eval` writes it and `rescore`, `compare`, `table`, `recommend` and `report` read it; the one
// place that knows its files and their keys:
//   config.json    the settings that decide the run's samples (RunConfig), written atomically
//   samples.jsonl  one SampleRecord per finished example, appended and fsynced one at a time
//   results.json   the scores (RunResults), written atomically
// and the rule for a finished run (select_finished_runs).
#pragma once
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "eval/metrics.h"

namespace bq::eval {

namespace fs = std::filesystem;

inline constexpr const char* kRunConfigFile = "config.json";
inline constexpr const char* kSamplesFile = "samples.jsonl";
inline constexpr const char* kResultsFile = "results.json";

// config.json: the settings that decide a run's samples. Resuming into a run folder requires the same ones.
struct RunConfig {
  std::string model;
  nlohmann::json model_info = nlohmann::json::object();  // the caller's model facts: path or preset, precision, ...
  std::vector<std::string> tasks;
  std::string tasks_dir, data_dir;  // absolute
  std::string split = "test";
  bool limit_random = false;
  int shots = 0;
  std::string prompting = "instruction";  // instruction | cot | sc
  int sc_samples = 1;
  double temperature = 0, top_p = 1;  // sc sampling (written as the float they were given as)
  uint64_t seed = 1234;
  std::string prompts = "own";  // own | benchmark
  bool chat_template = true;
  bool lenient = false;
  std::string answer_lengths = "task";  // task | gold (EvalConfig)

  // Biomedq's own prompts asking for reasoning before the answer line.
  bool cot() const { return prompting != "instruction" && prompts == "own"; }
  std::string precision() const;  // model_info.precision, "?" when not recorded
  nlohmann::json to_json() const;
  // Keys left out take their defaults; a key of the wrong type is an Error naming `where`.
  static RunConfig from_json(const nlohmann::json& j, const std::string& where);
};

// One line of samples.jsonl: an example's prompt, raw outputs and what was read from them.
struct SampleRecord {
  std::string task, split, id;
  std::optional<std::string> prompt;  // left out only by records written by hand
  std::string prompt_sha256;
  std::vector<std::string> raw, finish_reason;  // one per sample (several with self-consistency)
  nlohmann::json answer;  // ParsedAnswer::to_json of the (majority) answer
  nlohmann::json gold;    // the gold labels, or [start, end] token ranges; null when left out
  bool correct = false;
  int prompt_tokens = 0, generated_tokens = 0;
  double latency_ms = 0, prefill_ms = 0, decode_ms = 0;
  std::optional<nlohmann::json> votes;              // self-consistency: every sample's answer
  std::optional<std::array<int, 3>> entity_counts;  // span gold: tp, fp, fn

  nlohmann::json to_json() const;
  // Needs task, id and raw; an Error naming `where` when they, or a key of the wrong type, are off.
  static SampleRecord from_json(const nlohmann::json& j, const std::string& where);
};

// One task's entry in results.json.
struct TaskScores {
  std::string task, type, task_file, task_file_sha256, split;
  bool split_fallback = false;  // dev scored because the data has no test split
  std::string split_label;
  nlohmann::json data_files = nlohmann::json::object();  // path -> sha256
  size_t examples_available = 0, examples_selected = 0, examples_scored = 0, malformed_rows_skipped = 0;
  struct Shots {
    int k = 0;
    std::string split;             // where biomedq's own prompts drew them from
    std::vector<std::string> ids;
    std::string source;            // the benchmark's prompt file that holds them ("" otherwise)
  } shots;
  std::string primary_metric;
  std::map<std::string, Interval> metrics;
  size_t unparsed = 0, duplicate_records_ignored = 0;
  double unparsed_rate = 0;
  struct Latency {
    double mean = 0, sd = 0, p50 = 0, p95 = 0;
  } latency_s;
  double prompt_tokens = 0, generated_tokens = 0, tokens_per_s = 0;

  const Interval& primary() const { return metrics.at(primary_metric); }
  nlohmann::ordered_json to_json() const;
  static TaskScores from_json(const std::string& task, const nlohmann::json& j, const std::string& where);
};

// results.json.
struct RunResults {
  RunConfig config;
  size_t limit = 0;
  int bootstrap_resamples = 1000;
  nlohmann::json environment = nlohmann::json::object();  // version, host, CPU, device
  nlohmann::json memory = nlohmann::json::object();       // the backend's memory report
  // The last invocation's generation: wall time, tokens, prefill and decode rates, batch occupancy (eval_throughput)
  nlohmann::json throughput = nlohmann::json::object();
  std::vector<TaskScores> tasks;                          // in the configuration's order
  std::string command;                                    // the last invocation ("" when not recorded)

  const TaskScores* find(const std::string& task) const;
  nlohmann::ordered_json to_json() const;
  // An Error naming `where` when it is not a biomedq results file (no config or tasks, a task without its scores).
  static RunResults from_json(const nlohmann::json& j, const std::string& where);
};

// Everything a run folder holds. Errors name the file.
struct RunFolder {
  fs::path dir;
  RunConfig config;
  std::vector<SampleRecord> samples;
  std::optional<RunResults> results;  // none before the first scoring
};
RunFolder read_run_folder(const fs::path& dir);
RunConfig read_run_config(const fs::path& dir);    // Error: no config.json, or not one
RunResults read_run_results(const fs::path& dir);  // Error: no results.json, or not one

// The records of a samples.jsonl. A truncated or garbled last line (an interrupted write) is dropped, and with
// `repair` also cut from the file so appends continue cleanly; a bad line before the last is an Error.
std::vector<SampleRecord> read_samples(const fs::path& file, bool repair);

void write_run_config(const fs::path& dir, const RunConfig& config);     // atomic
void write_run_results(const fs::path& dir, const RunResults& results);  // atomic

// Appends whole records to DIR/samples.jsonl. Each record is in the file (the kernel's) before append returns, so
// a process that is killed loses none. They reach the disk (fsync) in groups: at the first append a second or more
// after the last sync, and on sync() and close, so a machine that crashes loses at most the last second's records
// or the last one. One fsync per record cost about 0.2 ms, 7 s of a 33,015-example suite.
class SampleWriter {
 public:
  explicit SampleWriter(const fs::path& dir);
  ~SampleWriter();  // syncs what is left (errors ignored: call sync() to see them)
  SampleWriter(const SampleWriter&) = delete;
  SampleWriter& operator=(const SampleWriter&) = delete;
  void append(const SampleRecord& record);
  void sync();  // everything appended so far onto the disk

 private:
  std::string path_;
  int fd_ = -1;
  bool unsynced_ = false;
  std::chrono::steady_clock::time_point synced_at_;
};

// A folder `eval --out` may write into: absent, empty, or a run folder (config.json, samples.jsonl, results.json, the
// lock and results.json's temporary files; a samples.jsonl only beside a run's config.json). Anything else is
// someone else's and never written into: an Error.
void check_run_folder(const fs::path& dir);

// The finished runs among the paths given, for `table` and `report`: a folder holding results.json, config.json
// or samples.jsonl is a run folder; any other folder is a parent, whose subfolders are looked at instead, down to
// kRunSearchDepth levels (a sweep's folder holds its cells at <model>/<precision>/<prompting>); hidden folders are
// passed over. A run folder is finished when its results.json is a biomedq results file that scores every task its
// configuration lists; anything else given or found is skipped, with the reason. Error: no finished run at all
// (naming what was skipped and why).
struct RunSelection {
  std::vector<fs::path> finished;
  std::vector<std::string> skipped;  // "PATH: why it is not a finished run" (PATH: the folder or its results.json)
};
inline constexpr int kRunSearchDepth = 4;
RunSelection select_finished_runs(const std::vector<fs::path>& paths);

// `compare` over a folder of runs (a sweep's): every finished run paired with the run of the same model, prompting,
// shots, samples and data at the `baseline` precision, as (baseline, other), in folder order. Error: no pair.
std::vector<std::pair<fs::path, fs::path>> pairs_with_baseline(const fs::path& folder, const std::string& baseline);

}  // namespace bq::eval
