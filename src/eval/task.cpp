#include "eval/task.h"

#include <openssl/evp.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "eval/metrics.h"
#include "eval/readers.h"
#include "tokenizer/text.h"

namespace bq::eval {

const char* task_type_name(TaskType t) {
  switch (t) {
    case TaskType::ner: return "ner";
    case TaskType::re: return "re";
    case TaskType::mlc: return "mlc";
    case TaskType::qa: return "qa";
  }
  return "?";
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

template <typename E>
E pick(const std::string& file, const char* key, const std::string& value,
       std::initializer_list<std::pair<const char*, E>> choices) {
  std::string names;
  for (auto& [n, e] : choices) {
    if (value == n) return e;
    names += names.empty() ? n : std::string(", ") + n;
  }
  fail("{}: '{}' is '{}', expected one of: {}", file, key, value, names);
}

}  // namespace

// A relative path without "..": a task file may only name files inside the data folder.
static void check_inside(const std::string& file, const std::string& key, const std::string& path) {
  fs::path p(path);
  bool escapes = p.empty() || p.is_absolute() || p.has_root_name();
  for (auto& part : p) escapes = escapes || part == "..";
  if (escapes) fail("{}: '{}' is '{}'; it must be a relative path inside the data folder", file, key, path);
}

static TaskConfig parse_task_config(const std::string& yaml, const fs::path& yaml_file) {
  std::string file = yaml_file.string();
  YAML::Node root = YAML::Load(yaml);
  if (!root.IsMap()) fail("{}: expected a mapping at the top level", file);
  static const std::set<std::string> known = {
      "name", "description", "type", "parser", "primary_metric", "data_folder", "format", "splits", "id_field",
      "label_field", "label_separator", "options_field", "labels", "label_aliases", "negative_label", "entity_name",
      "input_template", "benchmark_input", "prompts", "split_notes", "max_new_tokens", "max_new_tokens_cot"};
  for (const auto& kv : root)
    if (!known.contains(kv.first.as<std::string>())) fail("{}: unknown key '{}'", file, kv.first.as<std::string>());

  YamlReader r{root, file};
  TaskConfig t;
  t.source = yaml_file;
  t.name = r.str("name");
  t.description = r.str("description", false);
  t.type = pick<TaskType>(file, "type", r.str("type"),
                          {{"ner", TaskType::ner}, {"re", TaskType::re}, {"mlc", TaskType::mlc}, {"qa", TaskType::qa}});
  t.parser = pick<ParserKind>(file, "parser", r.str("parser"),
                              {{"spans", ParserKind::spans}, {"multilabel", ParserKind::multilabel},
                               {"label", ParserKind::label}, {"option_letter", ParserKind::option_letter}});
  t.primary_metric = r.str("primary_metric");
  t.data_folder = r.str("data_folder");
  t.format = r.str("format");
  t.split_files = r.map("splits", true);
  t.id_field = r.str("id_field", false);
  t.label_field = r.str("label_field", t.format == "tsv");
  t.label_separator = r.str("label_separator", t.type == TaskType::mlc);
  t.options_field = r.str("options_field", false);
  t.labels = r.list("labels", t.type != TaskType::ner);
  for (auto& [k, v] : r.map("label_aliases", false)) {
    std::string lower = k;
    for (char& c : lower) c = char(std::tolower((unsigned char)c));
    t.label_aliases[lower] = v;
  }
  t.negative_label = r.str("negative_label", t.type == TaskType::re);
  t.entity_name = r.str("entity_name", t.type == TaskType::ner);
  t.input_template = r.str("input_template");
  t.benchmark_input = r.map("benchmark_input", false);
  t.split_notes = r.map("split_notes", false);
  YAML::Node prompts = r.get("prompts", true);
  if (!prompts.IsMap()) fail("{}: 'prompts' must be a mapping with instruction, cot and example", file);
  YamlReader pr{prompts, file + " (prompts)"};
  t.instruction_prompt = pr.str("instruction");
  t.cot_prompt = pr.str("cot");
  t.example_template = pr.str("example");
  t.max_new_tokens = r.integer("max_new_tokens", t.type == TaskType::ner ? 200 : 50);
  t.max_new_tokens_cot = r.integer("max_new_tokens_cot", 512);

  // Consistency checks: every mistake here would otherwise surface as wrong scores much later.
  if (t.format != "tsv" && t.format != "conll") fail("{}: 'format' is '{}', expected tsv or conll", file, t.format);
  if ((t.type == TaskType::ner) != (t.format == "conll")) fail("{}: ner tasks use format conll, the others tsv", file);
  bool parser_ok = (t.type == TaskType::ner && t.parser == ParserKind::spans) ||
                   (t.type == TaskType::mlc && t.parser == ParserKind::multilabel) ||
                   (t.type == TaskType::re && t.parser == ParserKind::label) ||
                   (t.type == TaskType::qa && (t.parser == ParserKind::label || t.parser == ParserKind::option_letter));
  if (!parser_ok) fail("{}: parser '{}' does not fit task type {}", file, r.str("parser"), task_type_name(t.type));
  if (t.parser == ParserKind::option_letter && t.options_field.empty())
    fail("{}: parser option_letter needs 'options_field'", file);
  if (t.split_files.empty()) fail("{}: 'splits' is empty", file);
  for (auto& [split, f] : t.split_files)
    if (split != "train" && split != "dev" && split != "test") fail("{}: split '{}' must be train, dev or test", file, split);
  std::set<std::string> seen;
  for (auto& l : t.labels)
    if (!seen.insert(l).second) fail("{}: label '{}' listed twice", file, l);
  if (t.type == TaskType::re && !seen.contains(t.negative_label))
    fail("{}: negative_label '{}' is not in labels", file, t.negative_label);
  for (auto& [k, v] : t.label_aliases)
    if (!seen.contains(v)) fail("{}: label_aliases maps '{}' to '{}', which is not a label", file, k, v);
  auto names = metric_names(t.type);
  if (std::find(names.begin(), names.end(), t.primary_metric) == names.end())
    fail("{}: primary_metric '{}' is not reported for {} tasks", file, t.primary_metric, task_type_name(t.type));
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

static std::string join_options(const std::vector<std::pair<std::string, std::string>>& options) {
  std::string s;
  for (auto& [k, v] : options) {
    if (!s.empty()) s += '\n';
    s += k + ". " + v;
  }
  return s;
}

static Dataset read_split(const TaskConfig& task, const fs::path& data_dir, const std::string& split, bool lenient) {
  Dataset ds;
  ds.task = task.name;
  ds.split = split;
  ds.file = split_path(task, data_dir, split);
  std::string bytes = read_file(ds.file, limits::kDataFileBytes);
  ds.sha256 = sha256_hex(bytes);
  std::string name = ds.file.string();
  if (size_t bad = tok::find_invalid_utf8(bytes); bad != std::string::npos)  // here, not later in the tokenizer
    fail("{}:{}: invalid UTF-8 (byte offset {})", name, 1 + std::count(bytes.begin(), bytes.begin() + long(bad), '\n'),
         bad);

  if (task.format == "conll") {
    auto sentences = parse_conll(bytes, name, lenient, &ds.skipped);
    for (size_t i = 0; i < sentences.size(); i++) {
      Example ex;
      ex.id = fmt::format("{}-{}", split, i);
      ex.line = sentences[i].line;
      ex.tokens = std::move(sentences[i].tokens);
      ex.entities = entities_from_tags(sentences[i].tags);
      std::string sentence;
      for (auto& tok : ex.tokens) {
        if (!sentence.empty()) sentence += ' ';
        sentence += tok;
      }
      ex.fields["sentence"] = sentence;
      ds.examples.push_back(std::move(ex));
    }
    if (ds.skipped) ds.problems.push_back(fmt::format("{}: {} malformed sentences skipped", name, ds.skipped));
    return ds;
  }

  TsvTable table = parse_tsv(bytes, name, lenient);
  auto column = [&](const std::string& col) -> size_t {
    auto it = std::find(table.header.begin(), table.header.end(), col);
    if (it == table.header.end()) fail("{}: no column '{}' (task file {})", name, col, task.source.string());
    return size_t(it - table.header.begin());
  };
  size_t label_col = column(task.label_field);
  size_t id_col = task.id_field.empty() ? SIZE_MAX : column(task.id_field);
  size_t options_col = task.options_field.empty() ? SIZE_MAX : column(task.options_field);
  std::set<std::string> label_set(task.labels.begin(), task.labels.end());
  ds.skipped = table.skipped;
  ds.problems = table.problems;
  std::set<std::string> ids;
  for (auto& row : table.rows) {
    Example ex;
    ex.line = row.line;
    for (size_t c = 0; c < table.header.size(); c++) ex.fields[table.header[c]] = row.cells[c];
    ex.id = id_col == SIZE_MAX ? fmt::format("{}-{}", split, ds.examples.size()) : row.cells[id_col];
    std::string problem;
    const std::string& gold = row.cells[label_col];
    if (task.type == TaskType::mlc) {
      size_t p = 0;
      while (p <= gold.size() && !gold.empty()) {
        size_t q = gold.find(task.label_separator, p);
        if (q == std::string::npos) q = gold.size();
        std::string l = gold.substr(p, q - p);
        if (!l.empty()) ex.gold.push_back(l);
        p = q + task.label_separator.size();
      }
    } else {
      ex.gold.push_back(gold);
    }
    for (auto& l : ex.gold)
      if (!label_set.contains(l)) problem = fmt::format("label '{}' is not in the task's label set", l);
    if (options_col != SIZE_MAX && problem.empty()) {
      try {
        auto opts = parse_python_literal(row.cells[options_col], fmt::format("{}:{}", name, row.line));
        for (auto& o : opts) ex.options.emplace_back(o.at("key").get<std::string>(), o.at("value").get<std::string>());
        ex.fields["options"] = join_options(ex.options);
      } catch (const std::exception& e) {
        problem = fmt::format("bad options literal: {}", e.what());
      }
    }
    // ChemProt repeats an index when one pair carries two relations: the k-th repeat becomes "<id>#k".
    if (problem.empty() && !ids.insert(ex.id).second) {
      int k = 2;
      while (!ids.insert(fmt::format("{}#{}", ex.id, k)).second) k++;
      ex.id = fmt::format("{}#{}", ex.id, k);
    }
    if (!problem.empty()) {
      std::string msg = fmt::format("{}:{}: {}", name, row.line, problem);
      if (!lenient) throw Error(msg);
      ds.skipped++;
      ds.problems.push_back(msg);
      continue;
    }
    ds.examples.push_back(std::move(ex));
  }
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

std::string sha256_hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1) fail("sha256 failed");
  static const char* hexdigits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; i++) {
    out += hexdigits[md[i] >> 4];
    out += hexdigits[md[i] & 15];
  }
  return out;
}

std::string sha256_file(const fs::path& path) { return sha256_hex(read_file(path)); }

}  // namespace bq::eval
