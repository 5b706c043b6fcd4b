// Task descriptions (tasks/*.yaml) and the datasets they read.
#pragma once
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace bq::eval {

namespace fs = std::filesystem;

// What an example's gold answer is: entity spans over its tokens, or labels from the task's fixed label set.
// Readers produce one kind, answer extractors and metrics need one (or, for metrics, any).
enum class GoldKind { spans, labels, any };

// A task file names three parts by name, each from its own table: the reader of the data (`reader:`, readers.h),
// the answer extractor (`parser:`, parse.h) and the metrics (`metrics:`, metrics.h). `type:` is a preset that
// fills in the parts a file leaves out.
struct TaskConfig {
  std::string name;        // "hoc", "bc5cdr-chem", ...
  std::string description;
  std::string type;        // the preset named by `type:` (ner, re, mlc, qa), "" when the file names none
  std::string reader;      // "conll", "tsv"
  std::string extractor;   // "spans", "multilabel", "label", "option_letter"
  std::vector<std::string> metrics;  // reported, unparsed_rate always among them
  std::string primary_metric;  // one of metrics
  std::string data_folder;     // folder under the data directory
  std::map<std::string, std::string> split_files;  // split name -> file name in data_folder
  std::string id_field;         // tsv column with the example id; empty: "<split>-<row number>"
  std::string label_field;      // tsv column with the gold label(s)
  std::string label_separator;  // separator of several gold labels in label_field ("": one label per example)
  std::string options_field;    // qa: column with a Python list of {'key','value'} dicts
  std::vector<std::string> labels;                 // the fixed label set (ner: unused)
  std::map<std::string, std::string> label_aliases;  // answer spelling (lower case) -> label
  std::string negative_label;   // the "no relation" class that micro_f1_positive leaves out
  std::string entity_name;      // what the spans are ("chemical", "disease"): for readers of the file
  std::string input_template;            // one example's input in biomedq's own prompts, e.g. "{text}"
  std::map<std::string, std::string> benchmark_input;  // "zeroshot"/"oneshot"/"fiveshot" -> input template
  std::string instruction_prompt;  // holds {input} and {examples}
  std::string cot_prompt;          // the same, asking for reasoning then "Answer: ..."
  std::string example_template;    // one few-shot example: {input}, {answer}
  std::map<std::string, std::string> split_notes;  // split -> how results must name it ("ChemProt test (reconstructed)")
  int max_new_tokens = 50;
  int max_new_tokens_cot = 512;
  fs::path source;  // the YAML file
};

// A preset (`type:` in a task file): the parts and defaults it fills in.
struct TaskPreset {
  std::string_view name, reader, extractor;
  std::vector<std::string> metrics;
  std::string_view primary_metric;
  int max_new_tokens = 50;
};
const std::vector<TaskPreset>& task_presets();
// The preset named `type`; Error naming the known ones when there is none.
const TaskPreset& task_preset(std::string_view type);
// Fills what `task` leaves empty (reader, extractor, metrics, primary_metric) from the preset task.type.
void apply_task_preset(TaskConfig& task);

TaskConfig load_task_config(const fs::path& yaml_file);
TaskConfig parse_task_yaml(const std::string& yaml, const fs::path& source);  // load_task_config's parser
// Every *.yaml in `dir`, sorted by task name; duplicate names are an error.
std::vector<TaskConfig> load_task_configs(const fs::path& dir);
// $BIOMEDQ_TASKS_DIR, else the first of <exe dir>/../tasks, <exe dir>/../../tasks, <exe dir>/../share/biomedq/tasks
// that exists.
fs::path default_tasks_dir();
// The small example data set shipped with biomedq (examples/data: a few examples per task, same layout as
// biomed-nlp-benchmarks): $BIOMEDQ_EXAMPLES_DIR, else next to the executable, else ./examples/data.
fs::path default_data_dir();
const TaskConfig& find_task(const std::vector<TaskConfig>& tasks, const std::string& name);

struct EntitySpan {
  int start = 0, end = 0;  // token range [start, end)
  bool operator==(const EntitySpan&) const = default;
  auto operator<=>(const EntitySpan&) const = default;
};

struct Example {
  std::string id;
  size_t line = 0;
  std::map<std::string, std::string> fields;  // tsv columns by header name; ner: "sentence"; qa: "options"
  std::vector<std::string> tokens;            // ner
  std::vector<EntitySpan> entities;           // ner gold
  std::vector<std::string> gold;              // labels gold: the example's labels (one unless label_separator)
  std::vector<std::pair<std::string, std::string>> options;  // qa with options: (letter, text)
};

struct Dataset {
  std::string task, split;
  fs::path file;
  std::string sha256;
  std::vector<Example> examples;
  size_t skipped = 0;
  std::vector<std::string> problems;
};

bool has_split(const TaskConfig& task, const fs::path& data_dir, const std::string& split);
fs::path split_path(const TaskConfig& task, const fs::path& data_dir, const std::string& split);
Dataset load_split(const TaskConfig& task, const fs::path& data_dir, const std::string& split, bool lenient);

// Gold entities of a B/I/O tag sequence: B starts an entity, I continues one (an I after O starts one).
std::vector<EntitySpan> entities_from_tags(const std::vector<std::string>& tags);

// The split evaluated when `requested` is asked for: "test" falls back to "dev" when the folder has no test file.
struct SplitChoice {
  std::string split;
  bool fallback = false;  // dev used because test is absent
};
SplitChoice choose_eval_split(const TaskConfig& task, const fs::path& data_dir, const std::string& requested);
// Where few-shot examples come from: train, else dev; never `eval_split`. Empty when there is none.
std::string choose_shot_split(const TaskConfig& task, const fs::path& data_dir, const std::string& eval_split);

std::string sha256_file(const fs::path& path);
std::string sha256_hex(std::string_view bytes);

}  // namespace bq::eval
