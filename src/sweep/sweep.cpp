#include "sweep/sweep.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "core/folder_lock.h"
#include "core/limits.h"
#include "eval/run_folder.h"
#include "model/config.h"
#include "plan/memory_planner.h"

namespace bq::sweep {

namespace {

// Keys of a mapping, each read once; a key left over is an error (a misspelled key must not be ignored).
class Keys {
 public:
  Keys(const YAML::Node& node, std::string where) : node_(node), where_(std::move(where)) {
    if (!node.IsMap()) fail("{}: expected a mapping", where_);
    for (const auto& kv : node) left_.insert(kv.first.as<std::string>());
  }
  YAML::Node get(const std::string& key, bool required = false) {
    left_.erase(key);
    YAML::Node n = node_[key];
    if (!n && required) fail("{}: missing '{}'", where_, key);
    return n;
  }
  std::string str(const std::string& key, const std::string& def = "", bool required = false) {
    YAML::Node n = get(key, required);
    if (!n) return def;
    if (!n.IsScalar()) fail("{}: '{}' must be a string", where_, key);
    return n.as<std::string>();
  }
  long integer(const std::string& key, long def, long lo, long hi) {
    YAML::Node n = get(key);
    if (!n) return def;
    long v = 0;
    const std::string text = n.IsScalar() ? n.as<std::string>() : "";
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi)
      fail("{}: '{}' must be a whole number from {} to {} (it is '{}')", where_, key, lo, hi, text);
    return v;
  }
  bool boolean(const std::string& key, bool def) {
    YAML::Node n = get(key);
    if (!n) return def;
    const std::string text = n.IsScalar() ? n.as<std::string>() : "";
    if (text != "true" && text != "false") fail("{}: '{}' must be true or false (it is '{}')", where_, key, text);
    return text == "true";
  }
  std::vector<std::string> strings(const std::string& key, bool required) {
    YAML::Node n = get(key, required);
    std::vector<std::string> out;
    if (!n) return out;
    if (n.IsScalar()) return {n.as<std::string>()};
    if (!n.IsSequence()) fail("{}: '{}' must be a list", where_, key);
    for (const auto& x : n) {
      if (!x.IsScalar()) fail("{}: '{}' must be a list of strings", where_, key);
      out.push_back(x.as<std::string>());
    }
    return out;
  }
  void done() const {
    if (!left_.empty()) fail("{}: unknown key '{}'", where_, *left_.begin());
  }

 private:
  YAML::Node node_;  // a handle: the nodes it reads stay alive with it
  std::string where_;
  std::set<std::string> left_;
};

// A cell folder's parts come from the file: no separators, no dot names.
void check_name_part(const std::string& where, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find_first_of("/\\") != std::string::npos ||
      name.size() > 100)
    fail("{}: name '{}' must be 1-100 characters without '/' (it names the cells' folders)", where, name);
}

std::string prompting_label(const Prompting& p) {
  const std::string strategy = p.strategy == "sc" ? "sc" + std::to_string(p.samples) : p.strategy;
  return strategy + "-" + std::to_string(p.shots) + "shot";
}

}  // namespace

SweepFile read_sweep(const fs::path& file) {
  SweepFile s;
  s.file = fs::absolute(file).lexically_normal();
  const fs::path base = s.file.parent_path();
  auto resolve = [&](const std::string& p) { return p.empty() ? fs::path() : (base / p).lexically_normal(); };
  const std::string where = file.string();
  try {
    YAML::Node root = YAML::Load(read_file(file, limits::kTaskYamlBytes));
    Keys top(root, where);
    s.out = resolve(top.str("out", "", true));

    YAML::Node models = top.get("models", true);
    if (!models.IsSequence() || models.size() == 0) fail("{}: 'models' must be a non-empty list", where);
    std::set<std::string> names;
    for (size_t i = 0; i < models.size(); ++i) {
      const std::string at = fmt::format("{}: models[{}]", where, i);
      Keys m(models[i], at);
      SweepModel model;
      model.path = resolve(m.str("path"));
      model.preset = m.str("preset");
      model.name = m.str("name", !model.preset.empty() ? model.preset : model.path.filename().string());
      m.done();
      if (model.path.empty() && model.preset.empty()) fail("{}: give 'path' (a checkpoint) or 'preset'", at);
      if (!model.preset.empty()) preset_config(model.preset);  // an unknown preset is an error naming the presets
      check_name_part(at, model.name);
      if (!names.insert(model.name).second) fail("{}: a second model named '{}'", at, model.name);
      s.models.push_back(std::move(model));
    }

    for (const std::string& p : top.strings("precisions", true)) {
      const quant::Precision* entry = quant::find_precision(p);
      if (!entry) fail("{}: precisions: unknown '{}'", where, p);
      if (std::find(s.precisions.begin(), s.precisions.end(), entry) != s.precisions.end())
        fail("{}: precisions: '{}' twice", where, p);
      s.precisions.push_back(entry);
    }

    YAML::Node prompting = top.get("prompting");
    if (!prompting) {
      s.promptings.push_back({});
    } else {
      if (!prompting.IsSequence() || prompting.size() == 0) fail("{}: 'prompting' must be a non-empty list", where);
      std::set<std::string> labels;
      for (size_t i = 0; i < prompting.size(); ++i) {
        const std::string at = fmt::format("{}: prompting[{}]", where, i);
        Keys k(prompting[i], at);
        Prompting p;
        p.strategy = k.str("strategy", "instruction");
        p.shots = int(k.integer("shots", 0, 0, 64));
        p.samples = int(k.integer("samples", p.strategy == "sc" ? 5 : 1, 1, 64));
        k.done();
        if (p.strategy != "instruction" && p.strategy != "cot" && p.strategy != "sc")
          fail("{}: strategy '{}' (instruction, cot or sc)", at, p.strategy);
        if (p.strategy != "sc" && p.samples != 1) fail("{}: 'samples' applies to strategy sc only", at);
        if (!labels.insert(prompting_label(p)).second) fail("{}: the same prompting twice", at);
        s.promptings.push_back(p);
      }
    }

    s.tasks = top.strings("tasks", true);
    if (s.tasks.empty()) fail("{}: 'tasks' is empty", where);
    s.data_dir = resolve(top.str("data_dir"));
    s.tasks_dir = resolve(top.str("tasks_dir"));
    s.prompts = top.str("prompts", "own");
    if (s.prompts != "own" && s.prompts != "benchmark") fail("{}: 'prompts' is '{}' (own or benchmark)", where, s.prompts);
    s.limit = size_t(top.integer("limit", 0, 0, 10'000'000));
    s.batch = int(top.integer("batch", 1, 1, 4096));
    s.batch_invariant = top.boolean("batch_invariant", false);
    for (const quant::Precision* p : s.precisions)
      if (s.batch_invariant && p->scheme == quant::Scheme::LLMInt8)
        fail("{}: 'batch_invariant' with precision llm-int8: {}", where, quant::kLlmInt8DependsOnTheBatch);
    s.context = int(top.integer("context", 4096, 16, 1 << 20));
    s.device = top.str("device", "cuda");
    if (s.device != "cuda" && s.device != "cpu") fail("{}: 'device' is '{}' (cuda or cpu)", where, s.device);
    s.gpus_per_job = int(top.integer("gpus_per_job", 1, 1, 64));
    top.done();
  } catch (const YAML::Exception& e) {
    fail("{}: invalid YAML: {}", where, e.what());
  }
  return s;
}

const std::vector<GpuClass>& gpu_classes() {
  // Memory sizes of common data-centre and workstation GPUs, smallest first (GiB as the vendors count them).
  static const std::vector<GpuClass> table = {
      {"16 GB (T4, V100-16GB)", size_t(16) << 30},         {"24 GB (L4, A10, RTX 4090)", size_t(24) << 30},
      {"40 GB (A100-40GB)", size_t(40) << 30},             {"48 GB (L40S, RTX 6000 Ada, A6000)", size_t(48) << 30},
      {"80 GB (A100-80GB, H100)", size_t(80) << 30},       {"94 GB (H100 NVL)", size_t(94) << 30},
      {"141 GB (H200)", size_t(141) << 30},                {"192 GB (B200, MI300X)", size_t(192) << 30}};
  return table;
}

const GpuClass* gpu_class_for(size_t bytes_per_gpu) {
  for (const GpuClass& g : gpu_classes())
    if (double(bytes_per_gpu) * 1.05 <= double(g.bytes)) return &g;
  return nullptr;
}

std::vector<Cell> plan_cells(const SweepFile& s) {
  std::vector<Cell> cells;
  for (size_t m = 0; m < s.models.size(); ++m) {
    const SweepModel& model = s.models[m];
    // Shapes: the checkpoint's config.json where it is here; else the preset's.
    std::optional<ModelConfig> config;
    std::string note;
    bool have_checkpoint = !model.path.empty() && fs::is_regular_file(model.path / "config.json");
    try {
      if (have_checkpoint) config = load_model_config(model.path);
      else if (!model.preset.empty()) config = preset_config(model.preset);
      if (!model.path.empty() && !have_checkpoint)
        note = model.preset.empty() ? fmt::format("{}: no checkpoint there (give 'preset' to plan from shapes)",
                                                  model.path.string())
                                    : fmt::format("planned from preset {}: no checkpoint at {}", model.preset,
                                                  model.path.string());
    } catch (const Error& e) {
      note = e.what();
      config.reset();
    }
    for (const quant::Precision* precision : s.precisions)
      for (const Prompting& p : s.promptings) {
        Cell c;
        c.model = m;
        c.precision = precision;
        c.prompting = p;
        c.name = fmt::format("{}/{}/{}", model.name, precision->name, prompting_label(p));
        c.dir = s.out / model.name / std::string(precision->name) / prompting_label(p);
        c.plan_note = note;
        if (config) try {
            plan::PlanRequest r;
            r.config = *config;
            r.model_label = model.name;
            if (have_checkpoint) r.checkpoint = model.path;
            r.precision = precision;
            r.precision_given = true;
            r.device = s.device;
            r.context = std::min(s.context, config->max_positions);
            r.prompt = r.context;
            r.batch = s.batch * p.samples;
            r.batch_invariant = s.batch_invariant;
            r.devices = s.device == "cuda" ? s.gpus_per_job : 1;
            c.planned_bytes = plan::plan_memory(r).total_bytes;  // per GPU, the layers split evenly
            r.device = "cpu";  // the host, loading: the weights as read, a short context
            r.precision = quant::find_precision("bf16");
            r.context = r.prompt = std::min(256, r.context);
            r.batch = r.devices = 1;
            c.host_bytes = plan::plan_memory(r).total_bytes;
          } catch (const Error& e) {
            c.plan_note = e.what();
          }
        cells.push_back(std::move(c));
      }
  }
  return cells;
}

eval::EvalConfig cell_eval_config(const SweepFile& s, const Cell& c) {
  eval::EvalConfig cfg;
  cfg.tasks = s.tasks;
  cfg.data_dir = s.data_dir.empty() ? eval::default_data_dir() : s.data_dir;
  cfg.tasks_dir = s.tasks_dir;
  cfg.out_dir = c.dir;
  cfg.model_name = s.models[c.model].name;
  cfg.limit = s.limit;
  cfg.batch = s.batch;
  cfg.prompts = s.prompts;
  cfg.prompting = c.prompting.strategy;
  cfg.shots = c.prompting.shots;
  if (c.prompting.strategy == "sc") cfg.sc_samples = c.prompting.samples;
  cfg.command_line = eval_command(s, c);
  return cfg;
}

std::string eval_command(const SweepFile& s, const Cell& c, const std::string& binary) {
  const auto quoted = shell_quote;
  const SweepModel& m = s.models[c.model];
  std::string tasks;
  for (const std::string& t : s.tasks) tasks += (tasks.empty() ? "" : ",") + t;
  std::string cmd = quoted(binary) + " eval " +
                    (m.path.empty() ? "--synthetic " + quoted(m.preset) : "--model " + quoted(m.path.string())) +
                    " --model-name " + quoted(m.name) + " --precision " + std::string(c.precision->name) +
                    " --device " + s.device;
  if (s.device == "cuda" && s.gpus_per_job > 1) cmd += " --devices all";
  cmd += " --tasks " + quoted(tasks) + " --prompting " + c.prompting.strategy + " --shots " +
         std::to_string(c.prompting.shots);
  if (c.prompting.strategy == "sc") cmd += " --sc-samples " + std::to_string(c.prompting.samples);
  if (s.prompts != "own") cmd += " --prompts " + s.prompts;
  if (s.limit) cmd += " --limit " + std::to_string(s.limit);
  cmd += " --batch " + std::to_string(s.batch);
  if (s.batch_invariant) cmd += " --batch-invariant";
  if (!s.data_dir.empty()) cmd += " --data-dir " + quoted(s.data_dir.string());
  if (!s.tasks_dir.empty()) cmd += " --tasks-dir " + quoted(s.tasks_dir.string());
  return cmd + " --out " + quoted(c.dir.string());
}

std::vector<size_t> shard_cells(const SweepFile& s, const std::vector<Cell>& cells, int index, int count) {
  if (count < 1 || index < 0 || index >= count) fail("shard {} of {}: no such shard", index + 1, count);
  std::vector<size_t> order(cells.size());
  std::vector<bool> runnable(cells.size());
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
    runnable[i] = unrunnable_reason(s, cells[i]).empty();
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (runnable[a] != runnable[b]) return bool(runnable[a]);
    const size_t pa = cells[a].planned_bytes.value_or(0), pb = cells[b].planned_bytes.value_or(0);
    if (pa != pb) return pa > pb;
    return cells[a].name < cells[b].name;
  });
  std::vector<size_t> mine;
  for (size_t k = size_t(index); k < order.size(); k += size_t(count)) mine.push_back(order[k]);
  return mine;
}

std::pair<int, int> parse_shard(const std::string& text) {
  int i = 0, n = 0;
  const size_t slash = text.find('/');
  auto whole = [](std::string_view s, int& v) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return !s.empty() && ec == std::errc() && end == s.data() + s.size();
  };
  if (slash == std::string::npos || !whole(std::string_view(text).substr(0, slash), i) ||
      !whole(std::string_view(text).substr(slash + 1), n) || n < 1 || n > 100000 || i < 1 || i > n)
    fail("--shard '{}': expected I/N with 1 <= I <= N (e.g. 2/4)", text);
  return {i - 1, n};
}

std::pair<int, int> shard_to_run(const std::string& option) {
  if (!option.empty()) return parse_shard(option);
  const char* id = std::getenv("SLURM_ARRAY_TASK_ID");
  const char* count = std::getenv("SLURM_ARRAY_TASK_COUNT");
  if (!id || !count) return {0, 1};
  const char* min = std::getenv("SLURM_ARRAY_TASK_MIN");
  int index = 0, base = 0;
  auto [end, ec] = std::from_chars(id, id + std::strlen(id), index);
  if (ec != std::errc() || *end || (min && std::from_chars(min, min + std::strlen(min), base).ec != std::errc()))
    fail("SLURM_ARRAY_TASK_ID '{}' (min '{}'): not a number", id, min ? min : "");
  return parse_shard(fmt::format("{}/{}", index - base + 1, count));
}

std::string_view state_name(CellState s) {
  switch (s) {
    case CellState::pending: return "pending";
    case CellState::running: return "running";
    case CellState::failed: return "failed";
    case CellState::done: return "done";
  }
  return "?";
}

CellState cell_state(const fs::path& dir) {
  if (!fs::is_directory(dir)) return CellState::pending;
  if (FolderLock::held(dir)) return CellState::running;
  try {
    if (!eval::select_finished_runs({dir}).finished.empty()) return CellState::done;
  } catch (const Error&) {  // no finished run there
  }
  if (fs::exists(dir / kCellErrorFile)) return CellState::failed;
  return CellState::pending;
}

std::string unrunnable_reason(const SweepFile& s, const Cell& c) {
  if (!c.planned_bytes) return "not planned: " + c.plan_note;
  const double gib = double(*c.planned_bytes) / double(1 << 30);
  if (s.device == "cuda" && !gpu_class_for(*c.planned_bytes))
    return fmt::format("needs {:.1f} GiB per GPU: fits no GPU class", gib);
  if (s.device == "cuda" && s.gpu_memory && double(*c.planned_bytes) * 1.05 > double(s.gpu_memory))
    return fmt::format("needs {:.1f} GiB per GPU: more than --gpu-memory {:.1f} GiB holds", gib,
                       double(s.gpu_memory) / double(1 << 30));
  return "";
}

}  // namespace bq::sweep
