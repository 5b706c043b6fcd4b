#include "eval/task.h"

#include <openssl/evp.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "eval/metrics.h"
#include "eval/named_table.h"
#include "eval/parse.h"
#include "eval/readers.h"
#include "tokenizer/text.h"

namespace bq::eval {

const std::vector<TaskPreset>& task_presets() {
  static const std::vector<TaskPreset> table = {
      {"ner", "conll", "spans", {"precision", "recall", "f1"}, "f1", 200},
      {"re", "tsv", "label", {"macro_f1", "micro_f1_positive"}, "macro_f1", 50},
      {"mlc", "tsv", "multilabel", {"macro_f1", "micro_f1"}, "macro_f1", 50},
      {"qa", "tsv", "label", {"accuracy", "macro_f1"}, "accuracy", 50},
  };
  return table;
}

const TaskPreset& task_preset(std::string_view type) {
  if (const TaskPreset* p = find_named(task_presets(), type)) return *p;
  fail("unknown task type '{}' (known: {})", type, known_names(task_presets()));
}

void apply_task_preset(TaskConfig& task) {
  const TaskPreset& p = task_preset(task.type);
  if (task.reader.empty()) task.reader = p.reader;
  if (task.extractor.empty()) task.extractor = p.extractor;
  if (task.metrics.empty()) task.metrics = p.metrics;
  if (task.primary_metric.empty()) task.primary_metric = p.primary_metric;
  if (std::find(task.metrics.begin(), task.metrics.end(), "unparsed_rate") == task.metrics.end())
    task.metrics.push_back("unparsed_rate");
}

namespace {

struct YamlReader {
  const YAML::Node& root;
  std::string file;

  YAML::Node get(const char* key, bool required) const {
    YAML::Node n = root[key];
    if (!n && required) fail("{}: missing required key '{}'", file, key);
    return n;
  }
  std::string str(const char* key, bool required = true, const std::string& def = "") const {
    YAML::Node n = get(key, required);
    if (!n) return def;
    if (!n.IsScalar()) fail("{}: '{}' must be a string", file, key);
    return n.as<std::string>();
  }
  int integer(const char* key, int def) const {
    YAML::Node n = get(key, false);
    if (!n) return def;
    try {
      return n.as<int>();
    } catch (const YAML::Exception&) {
      fail("{}: '{}' must be an integer", file, key);
    }
  }
  std::vector<std::string> list(const char* key, bool required) const {
    YAML::Node n = get(key, required);
    std::vector<std::string> out;
    if (!n) return out;
    if (!n.IsSequence()) fail("{}: '{}' must be a list", file, key);
    for (const auto& x : n) {
      if (!x.IsScalar()) fail("{}: '{}' must be a list of strings", file, key);
      out.push_back(x.as<std::string>());
    }
    return out;
  }
  std::map<std::string, std::string> map(const char* key, bool required) const {
    YAML::Node n = get(key, required);
    std::map<std::string, std::string> out;
    if (!n) return out;
    if (!n.IsMap()) fail("{}: '{}' must be a mapping", file, key);
    for (const auto& kv : n) {
      if (!kv.second.IsScalar()) fail("{}: '{}.{}' must be a string", file, key, kv.first.as<std::string>());
      out[kv.first.as<std::string>()] = kv.second.as<std::string>();
    }
    return out;
  }
};

}  // namespace

// A relative path without "..": a task file may only name files inside the data folder.
static void check_inside(const std::string& file, const std::string& key, const std::string& path) {
  fs::path p(path);
  bool escapes = p.empty() || p.is_absolute() || p.has_root_name();
  for (auto& part : p) escapes = escapes || part == "..";
  if (escapes) fail("{}: '{}' is '{}'; it must be a relative path inside the data folder", file, key, path);
}

// The parts a task file names, each found in its table, and agreeing with one another: the extractor and every
// metric read the gold the reader gives, a one-label metric needs a one-label extractor, and each part's keys are
// there.
static void check_parts(const TaskConfig& t, const YAML::Node& root, const std::string& file) {
  auto require_keys = [&](const std::string& part, const std::vector<std::string_view>& needs) {
    for (auto key : needs)
      if (!root[std::string(key)]) fail("{}: {} needs '{}'", file, part, key);
  };
  auto gold_words = [](GoldKind g) { return g == GoldKind::spans ? "entity spans" : "labels"; };
  const DataReader* reader = find_named(data_readers(), t.reader);
  if (!reader) fail("{}: 'reader' is '{}'; known readers: {}", file, t.reader, known_names(data_readers()));
  require_keys(fmt::format("reader '{}'", t.reader), reader->needs);
  const AnswerExtractor* extractor = find_named(answer_extractors(), t.extractor);
  if (!extractor)
    fail("{}: 'parser' is '{}'; known answer extractors: {}", file, t.extractor, known_names(answer_extractors()));
  if (extractor->gold != reader->gold)
    fail("{}: parser '{}' does not fit reader '{}': it reads {}, and the reader's gold is {}", file, t.extractor,
         t.reader, gold_words(extractor->gold), gold_words(reader->gold));
  require_keys(fmt::format("parser '{}'", t.extractor), extractor->needs);
  for (auto& name : t.metrics) {
    const Metric* m = find_named(metric_table(), name);
    if (!m) fail("{}: 'metrics' names '{}'; known metrics: {}", file, name, known_names(metric_table()));
    if (m->gold != GoldKind::any && m->gold != reader->gold)
      fail("{}: metric '{}' does not fit reader '{}' and parser '{}': it scores {}, and the task's gold is {}", file,
           name, t.reader, t.extractor, gold_words(m->gold), gold_words(reader->gold));
    if (m->one_label && !extractor->one_label)
      fail("{}: metric '{}' does not fit parser '{}': it needs one label per answer, and the parser answers several",
           file, name, t.extractor);
    require_keys(fmt::format("metric '{}'", name), m->needs);
  }
  if (std::find(t.metrics.begin(), t.metrics.end(), t.primary_metric) == t.metrics.end()) {
    std::string listed;
    for (auto& m : t.metrics) listed += (listed.empty() ? "" : ", ") + m;
    fail("{}: primary_metric '{}' is not among the task's metrics ({})", file, t.primary_metric, listed);
  }
}

static TaskConfig parse_task_config(const std::string& yaml, const fs::path& yaml_file) {
  std::string file = yaml_file.string();
  YAML::Node root = YAML::Load(yaml);
  if (!root.IsMap()) fail("{}: expected a mapping at the top level", file);
  static const std::set<std::string> known = {
      "name", "description", "type", "reader", "format", "parser", "metrics", "primary_metric", "data_folder",
      "splits", "id_field", "label_field", "label_separator", "options_field", "labels", "label_aliases",
      "negative_label", "entity_name", "input_template", "benchmark_input", "prompts", "split_notes",
      "max_new_tokens", "max_new_tokens_cot"};
  for (const auto& kv : root)
    if (!known.contains(kv.first.as<std::string>())) fail("{}: unknown key '{}'", file, kv.first.as<std::string>());

  YamlReader r{root, file};
  TaskConfig t;
  t.source = yaml_file;
  t.name = r.str("name");
  t.description = r.str("description", false);
  // The parts: each named, or filled in by the preset `type`.
  t.type = r.str("type", false);
  if (root["reader"] && root["format"]) fail("{}: give 'reader' or its older name 'format', not both", file);
  t.reader = r.str(root["format"] ? "format" : "reader", t.type.empty());
  t.extractor = r.str("parser", t.type.empty());
  t.metrics = r.list("metrics", t.type.empty());
  t.primary_metric = r.str("primary_metric", t.type.empty());
  if (!t.type.empty() && !find_named(task_presets(), t.type))
    fail("{}: 'type' is '{}'; known types: {}", file, t.type, known_names(task_presets()));
  int default_new_tokens = t.type.empty() ? 50 : task_preset(t.type).max_new_tokens;
  if (t.type.empty()) {
    if (std::find(t.metrics.begin(), t.metrics.end(), "unparsed_rate") == t.metrics.end())
      t.metrics.push_back("unparsed_rate");
  } else {
    apply_task_preset(t);
  }
  t.data_folder = r.str("data_folder");
  t.split_files = r.map("splits", true);
  t.id_field = r.str("id_field", false);
  t.label_field = r.str("label_field", false);
  t.label_separator = r.str("label_separator", false);
  t.options_field = r.str("options_field", false);
  t.labels = r.list("labels", false);
  for (auto& [k, v] : r.map("label_aliases", false)) {
    std::string lower = k;
    for (char& c : lower) c = char(std::tolower((unsigned char)c));
    t.label_aliases[lower] = v;
  }
  t.negative_label = r.str("negative_label", false);
  t.entity_name = r.str("entity_name", false);
  t.input_template = r.str("input_template");
  t.benchmark_input = r.map("benchmark_input", false);
  t.split_notes = r.map("split_notes", false);
  YAML::Node prompts = r.get("prompts", true);
  if (!prompts.IsMap()) fail("{}: 'prompts' must be a mapping with instruction, cot and example", file);
  YamlReader pr{prompts, file + " (prompts)"};
  t.instruction_prompt = pr.str("instruction");
  t.cot_prompt = pr.str("cot");
  t.example_template = pr.str("example");
  t.max_new_tokens = r.integer("max_new_tokens", default_new_tokens);
  t.max_new_tokens_cot = r.integer("max_new_tokens_cot", 512);

  // Consistency checks: every mistake here would otherwise surface as wrong scores much later.
  check_parts(t, root, file);
  if (t.split_files.empty()) fail("{}: 'splits' is empty", file);
  for (auto& [split, f] : t.split_files)
    if (split != "train" && split != "dev" && split != "test") fail("{}: split '{}' must be train, dev or test", file, split);
  std::set<std::string> seen;
  for (auto& l : t.labels)
    if (!seen.insert(l).second) fail("{}: label '{}' listed twice", file, l);
  if (!t.negative_label.empty() && !seen.contains(t.negative_label))
    fail("{}: negative_label '{}' is not in labels", file, t.negative_label);
  for (auto& [k, v] : t.label_aliases)
    if (!seen.contains(v)) fail("{}: label_aliases maps '{}' to '{}', which is not a label", file, k, v);
  for (auto& [key, tpl] : {std::pair{"prompts.instruction", t.instruction_prompt}, {"prompts.cot", t.cot_prompt}})
    if (tpl.find("{input}") == std::string::npos) fail("{}: '{}' lacks the {{input}} placeholder", file, key);
  for (auto& [k, v] : t.benchmark_input)
    if (k != "zeroshot" && k != "oneshot" && k != "fiveshot" && k != "default")
      fail("{}: benchmark_input key '{}' must be default, zeroshot, oneshot or fiveshot", file, k);
  if (t.max_new_tokens <= 0 || t.max_new_tokens_cot <= 0) fail("{}: max_new_tokens must be positive", file);
  check_inside(file, "data_folder", t.data_folder);
  for (auto& [split, f] : t.split_files) check_inside(file, "splits." + split, f);
  return t;
}

TaskConfig parse_task_yaml(const std::string& yaml, const fs::path& source) {
  try {
    return parse_task_config(yaml, source);
  } catch (const YAML::Exception& e) {  // malformed YAML, or a key or value of the wrong kind
    fail("{}: invalid YAML: {}", source.string(), e.what());
  }
}

TaskConfig load_task_config(const fs::path& yaml_file) {
  return parse_task_yaml(read_file(yaml_file, limits::kTaskYamlBytes), yaml_file);
}

std::vector<TaskConfig> load_task_configs(const fs::path& dir) {
  if (!fs::is_directory(dir)) fail("{}: task folder not found", dir.string());
  std::vector<TaskConfig> tasks;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".yaml" || e.path().extension() == ".yml") tasks.push_back(load_task_config(e.path()));
  std::sort(tasks.begin(), tasks.end(), [](auto& a, auto& b) { return a.name < b.name; });
  for (size_t i = 1; i < tasks.size(); i++)
    if (tasks[i].name == tasks[i - 1].name)
      fail("{}: task '{}' is also defined in {}", tasks[i].source.string(), tasks[i].name, tasks[i - 1].source.string());
  if (tasks.empty()) fail("{}: no task files (*.yaml)", dir.string());
  return tasks;
}

namespace {

// $env, else the first folder that exists among <exe dir>/../rel, <exe dir>/../../rel (a build tree),
// <exe dir>/../share/biomedq/rel (an installed binary) and ./rel; an Error listing every place looked at.
fs::path find_shipped_folder(const char* env, const std::string& rel, const std::string& what,
                             const std::string& option) {
  if (const char* e = std::getenv(env); e && *e) return e;
  std::vector<fs::path> tried;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (std::string up : {"../", "../../", "../share/biomedq/"}) tried.push_back((exe.parent_path() / (up + rel)).lexically_normal());
  tried.push_back(rel);
  std::string looked;
  for (auto& p : tried) {
    if (fs::is_directory(p)) return p;
    looked += "\n  " + fs::absolute(p).lexically_normal().string();
  }
  fail("no {} found; looked in:{}\nset {} or pass {}", what, looked, env, option);
}

}  // namespace

fs::path default_tasks_dir() {
  return find_shipped_folder("BIOMEDQ_TASKS_DIR", "tasks", "task folder", "--tasks-dir");
}

fs::path default_data_dir() {
  return find_shipped_folder("BIOMEDQ_EXAMPLES_DIR", "examples/data", "example data", "--data-dir");
}

const TaskConfig& find_task(const std::vector<TaskConfig>& tasks, const std::string& name) {
  std::string known;
  for (auto& t : tasks) {
    if (t.name == name) return t;
    if (!known.empty()) known += ", ";
    known += t.name;
  }
  fail("unknown task '{}' (known: {})", name, known);
}

std::vector<EntitySpan> entities_from_tags(const std::vector<std::string>& tags) {
  std::vector<EntitySpan> out;
  int start = -1;
  for (int i = 0; i <= int(tags.size()); i++) {
    char c = i < int(tags.size()) ? tags[i][0] : 'O';
    bool continues = c == 'I' && start >= 0;
    if (start >= 0 && !continues) {
      out.push_back({start, i});
      start = -1;
    }
    if (c == 'B' || (c == 'I' && start < 0)) start = i;
  }
  return out;
}

bool has_split(const TaskConfig& task, const fs::path& data_dir, const std::string& split) {
  return task.split_files.contains(split) && fs::exists(split_path(task, data_dir, split));
}

fs::path split_path(const TaskConfig& task, const fs::path& data_dir, const std::string& split) {
  auto it = task.split_files.find(split);
  if (it == task.split_files.end()) fail("{}: task '{}' has no split '{}'", task.source.string(), task.name, split);
  return data_dir / task.data_folder / it->second;
}

static Dataset read_split(const TaskConfig& task, const fs::path& data_dir, const std::string& split, bool lenient) {
  Dataset ds;
  ds.task = task.name;
  ds.split = split;
  ds.file = split_path(task, data_dir, split);
  std::string bytes = read_file(ds.file, limits::kDataFileBytes);
  ds.sha256 = sha256_hex(bytes);
  if (size_t bad = tok::find_invalid_utf8(bytes); bad != std::string::npos)  // here, not later in the tokenizer
    fail("{}:{}: invalid UTF-8 (byte offset {})", ds.file.string(),
         1 + std::count(bytes.begin(), bytes.begin() + long(bad), '\n'), bad);
  data_reader(task.reader).read(task, bytes, lenient, ds);
  return ds;
}

Dataset load_split(const TaskConfig& task, const fs::path& data_dir, const std::string& split, bool lenient) {
  Dataset ds = read_split(task, data_dir, split, lenient);
  // An empty split would score 0.0 as if the model had failed every example.
  if (ds.examples.empty() && ds.skipped == 0)
    fail("{}: the split holds no examples (a header and no rows?)", ds.file.string());
  if (ds.examples.empty()) fail("{}: all {} examples are malformed (skipped)", ds.file.string(), ds.skipped);
  return ds;
}

SplitChoice choose_eval_split(const TaskConfig& task, const fs::path& data_dir, const std::string& requested) {
  if (has_split(task, data_dir, requested)) return {requested, false};
  if (requested == "test" && has_split(task, data_dir, "dev")) return {"dev", true};
  fail("{}: task '{}' has no '{}' split there{}", (data_dir / task.data_folder).string(), task.name, requested,
       requested == "test" ? " (and no dev split to fall back on)" : "");
}

std::string choose_shot_split(const TaskConfig& task, const fs::path& data_dir, const std::string& eval_split) {
  for (const char* s : {"train", "dev"})
    if (s != eval_split && has_split(task, data_dir, s)) return s;
  return "";
}

namespace {

std::string hex(const unsigned char* md, unsigned len) {
  static const char* hexdigits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; i++) {
    out += hexdigits[md[i] >> 4];
    out += hexdigits[md[i] & 15];
  }
  return out;
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1) fail("sha256 failed");
  return hex(md, len);
}

std::string sha256_file(const fs::path& path) {
  // In pieces: checkpoint shards are several GB.
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) fail("sha256 failed");
  read_file_chunks(path, [&](std::string_view piece) {
    if (EVP_DigestUpdate(ctx.get(), piece.data(), piece.size()) != 1) fail("{}: sha256 failed", path.string());
  });
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) fail("sha256 failed");
  return hex(md, len);
}

}  // namespace bq::eval
