#include "eval/table.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "quant/precision.h"

namespace bq::eval {

namespace {

struct Cell {
  double mem_gb = 0, latency_s = 0, score = 0;
  std::string mem_source;
};

struct Row {
  std::string task, metric, model;
  bool dev_fallback = false;
  std::map<std::string, Cell> by_precision;
};

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// `sources`: the memory figures' sources in words, for the legend.
std::string markdown_table(const std::vector<Row>& rows, const std::vector<std::string>& precisions,
                           const std::string& sources) {
  std::string out = "| Task | Metric | Model |";
  std::string rule = "|---|---|---|";
  for (auto& p : precisions) {
    out += fmt::format(" {0} Mem | {0} Late | {0} Score |", p);
    rule += "---:|---:|---:|";
  }
  out += "\n" + rule + "\n";
  bool any_fallback = false;
  for (auto& r : rows) {
    any_fallback = any_fallback || r.dev_fallback;
    out += fmt::format("| {}{} | {} | {} |", r.task, r.dev_fallback ? " †" : "", r.metric, r.model);
    for (auto& p : precisions) {
      auto c = r.by_precision.find(p);
      if (c == r.by_precision.end()) out += " – | – | – |";
      else out += fmt::format(" {:.2f} | {:.3f} | {:.1f} |", c->second.mem_gb, c->second.latency_s, 100 * c->second.score);
    }
    out += "\n";
  }
  out += fmt::format("\nMem: GB, {}. Late: seconds per sample (mean). Score: primary metric × 100.\n", sources);
  if (any_fallback) out += "†: the data has no test split; scored on dev.\n";
  return out;
}

std::string csv_table(const std::vector<Row>& rows, const std::vector<std::string>& precisions) {
  std::string out = "task,split_fallback,metric,model";
  for (auto& p : precisions) out += fmt::format(",{0}_mem_gb,{0}_latency_s,{0}_score", csv_field(p));
  out += "\n";
  for (auto& r : rows) {
    out += fmt::format("{},{},{},{}", csv_field(r.task), r.dev_fallback ? "dev" : "", csv_field(r.metric), csv_field(r.model));
    for (auto& p : precisions) {
      auto c = r.by_precision.find(p);
      if (c == r.by_precision.end()) out += ",,,";
      else out += fmt::format(",{:.3f},{:.4f},{:.4f}", c->second.mem_gb, c->second.latency_s, c->second.score);
    }
    out += "\n";
  }
  return out;
}

// The legend goes in comments above the tabular: it pastes into a table float whose caption is the paper's own.
std::string latex_table(const std::vector<Row>& rows, const std::vector<std::string>& precisions,
                        const std::string& sources) {
  bool any_fallback = std::any_of(rows.begin(), rows.end(), [](const Row& r) { return r.dev_fallback; });
  std::string out = fmt::format("% Mem: GB, {}. Latency: seconds per sample (mean). Score: primary metric x 100.\n",
                                sources);
  if (any_fallback) out += "% \\dagger: the data has no test split; scored on dev.\n";
  out += "\\begin{tabular}{lll";
  for (size_t i = 0; i < precisions.size(); i++) out += "rrr";
  out += "}\n\\toprule\n & &";
  std::string rules;
  for (size_t i = 0; i < precisions.size(); i++) {
    out += fmt::format(" & \\multicolumn{{3}}{{c}}{{{}}}", latex_escape(precisions[i]));
    rules += fmt::format("{}\\cmidrule(lr){{{}-{}}}", rules.empty() ? "" : " ", 4 + 3 * i, 6 + 3 * i);
  }
  out += " \\\\\n" + rules + "\nTask & Metric & Model";
  for (size_t i = 0; i < precisions.size(); i++) out += " & Mem & Latency & Score";
  out += " \\\\\n\\midrule\n";
  for (auto& r : rows) {
    out += fmt::format("{}{} & {} & {}", latex_escape(r.task), r.dev_fallback ? "$^\\dagger$" : "",
                       latex_escape(r.metric), latex_escape(r.model));
    for (auto& p : precisions) {
      auto c = r.by_precision.find(p);
      if (c == r.by_precision.end()) out += " & -- & -- & --";
      else out += fmt::format(" & {:.2f} & {:.3f} & {:.1f}", c->second.mem_gb, c->second.latency_s, 100 * c->second.score);
    }
    out += " \\\\\n";
  }
  return out + "\\bottomrule\n\\end{tabular}\n";
}

}  // namespace

std::string latex_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': case '%': case '$': case '#': case '_': case '{': case '}': out += '\\'; out += c; break;
      case '~': out += "\\textasciitilde{}"; break;
      case '^': out += "\\textasciicircum{}"; break;
      case '\\': out += "\\textbackslash{}"; break;
      default: out += c;
    }
  }
  return out;
}

std::pair<double, std::string> memory_gb(const nlohmann::json& memory) {
  for (const char* key : {"device_peak_bytes", "peak_bytes", "allocator_peak_bytes", "host_peak_rss_bytes", "weight_bytes"})
    if (memory.contains(key) && memory[key].is_number()) return {memory[key].get<double>() / 1e9, key};
  return {0.0, ""};
}

std::string memory_source_words(const std::string& key) {
  if (key == "device_peak_bytes") return "device peak, CUDA context included";
  if (key == "allocator_peak_bytes") return "model-held peak: weights as used, KV cache, activations";
  if (key == "host_peak_rss_bytes") return "process peak resident set";
  if (key == "weight_bytes") return "weights alone";
  if (key.empty()) return "none recorded";
  return "peak";
}

namespace {

// Why a run folder is not a finished run, naming the folder or its results.json ("" when it is finished).
std::string unfinished_reason(const fs::path& dir) {
  fs::path file = dir / "results.json";
  if (!fs::exists(file)) return dir.string() + ": no results.json (not finished: run eval, or rescore, first)";
  auto r = nlohmann::json::parse(read_file(file), nullptr, false);
  if (r.is_discarded()) return file.string() + ": not valid JSON (partly written?)";
  if (!r.is_object() || !r.contains("config") || !r["config"].is_object() || !r.contains("tasks") ||
      !r["tasks"].is_object())
    return file.string() + ": not a biomedq results file (no config or tasks)";
  const auto& listed = r["config"].value("tasks", nlohmann::json::array());
  if (!listed.is_array() || listed.empty()) return file.string() + ": its config lists no tasks";
  for (auto& task : listed)
    if (!task.is_string() || !r["tasks"].contains(task.get<std::string>()))
      return fmt::format("{}: no results for task {} of its configuration (a partial run)", file.string(), task.dump());
  return "";
}

bool looks_like_run_folder(const fs::path& dir) {
  for (const char* f : {"results.json", "config.json", "samples.jsonl"})
    if (fs::exists(dir / f)) return true;
  return false;
}

// The settings of a run that decide where tables and figures draw it.
std::string place_of(const nlohmann::json& config) {
  return fmt::format("{} at {} ({}, {}-shot)", config.value("model", "?"),
                     config.value("model_info", nlohmann::json::object()).value("precision", "?"),
                     config.value("prompting", "?"), config.value("shots", 0));
}

// The first setting two configurations differ in ("" when none).
std::string first_difference(const nlohmann::json& a, const nlohmann::json& b) {
  const nlohmann::json fa = a.flatten(), fb = b.flatten();
  for (auto& [key, value] : fa.items())
    if (!fb.contains(key) || fb[key] != value)
      return fmt::format("{}: {} vs {}", key, value.dump(), fb.contains(key) ? fb[key].dump() : "absent");
  for (auto& [key, value] : fb.items())
    if (!fa.contains(key)) return fmt::format("{}: absent vs {}", key, value.dump());
  return "";
}

}  // namespace

RunSelection select_finished_runs(const std::vector<fs::path>& paths) {
  RunSelection out;
  auto consider = [&](const fs::path& dir) {
    std::string why = unfinished_reason(dir);
    if (why.empty()) out.finished.push_back(dir);
    else out.skipped.push_back(why);
  };
  for (auto& p : paths) {
    if (!fs::is_directory(p)) {
      out.skipped.push_back(p.string() + (fs::exists(p) ? ": not a folder" : ": not found"));
    } else if (looks_like_run_folder(p)) {
      consider(p);
    } else {  // a parent of run folders: one level down
      std::vector<fs::path> inside;
      for (auto& e : fs::directory_iterator(p))
        if (e.is_directory()) inside.push_back(e.path());
      std::sort(inside.begin(), inside.end());
      if (inside.empty()) out.skipped.push_back(p.string() + ": neither a run folder nor a folder of run folders");
      for (auto& d : inside) consider(d);
    }
  }
  if (out.finished.empty()) {
    std::string why;
    for (auto& s : out.skipped) why += "\n  " + s;
    fail("no finished run among the folders given:{}", why.empty() ? " none given" : why);
  }
  return out;
}

void check_no_overlap(const std::vector<std::pair<fs::path, nlohmann::json>>& configs) {
  for (size_t b = 0; b < configs.size(); ++b)
    for (size_t a = 0; a < b; ++a) {
      const auto& [dir_a, ca] = configs[a];
      const auto& [dir_b, cb] = configs[b];
      if (place_of(ca) != place_of(cb)) continue;
      std::string differ = first_difference(ca, cb);
      if (differ.empty()) differ = "nothing: the same run twice";
      fail("{} and {} both hold {}: a table or figure would draw them in one place. They differ in {}. Tabulate or "
           "report them separately (or leave one out).", dir_a.string(), dir_b.string(), place_of(ca), differ);
    }
}

std::string format_results_table(const std::vector<fs::path>& run_dirs, TableFormat format) {
  std::vector<Row> rows;
  std::vector<std::string> precisions;
  std::vector<std::string> mem_sources;
  std::vector<std::pair<fs::path, nlohmann::json>> runs;
  for (auto& dir : run_dirs) {
    fs::path file = dir / "results.json";
    if (!fs::exists(file)) fail("{}: no results.json (run eval, or rescore, first)", dir.string());
    auto r = nlohmann::json::parse(read_file(file), nullptr, false);
    if (r.is_discarded() || !r.contains("tasks") || !r.contains("config")) fail("{}: not a biomedq results file", file.string());
    runs.emplace_back(dir, std::move(r));
  }
  auto prompting_of = [](const nlohmann::json& config) {
    return fmt::format("{}, {}-shot", config.value("prompting", "?"), config.value("shots", 0));
  };
  std::vector<std::pair<fs::path, nlohmann::json>> configs;
  std::set<std::string> prompting_configs;
  for (auto& [dir, r] : runs) {
    configs.emplace_back(dir, r["config"]);
    prompting_configs.insert(prompting_of(r["config"]));
  }
  check_no_overlap(configs);
  for (auto& [dir, r] : runs) {
    std::string model = r["config"].value("model", "?");
    if (prompting_configs.size() > 1)  // one row per model and prompting configuration
      model += " (" + prompting_of(r["config"]) + ")";
    std::string precision = r["config"].value("model_info", nlohmann::json::object()).value("precision", "?");
    if (std::find(precisions.begin(), precisions.end(), precision) == precisions.end()) precisions.push_back(precision);
    auto [mem, source] = memory_gb(r.value("memory", nlohmann::json::object()));
    if (std::find(mem_sources.begin(), mem_sources.end(), source) == mem_sources.end()) mem_sources.push_back(source);
    for (auto& item : r["tasks"].items()) {
      const std::string& name = item.key();
      const auto& t = item.value();
      auto row = std::find_if(rows.begin(), rows.end(), [&](const Row& x) { return x.task == name && x.model == model; });
      if (row == rows.end()) {
        rows.push_back({name, t.value("primary_metric", ""), model, false, {}});
        row = rows.end() - 1;
      }
      row->dev_fallback = row->dev_fallback || t.value("split_fallback", false);
      const auto& metric = t["metrics"][row->metric];
      row->by_precision[precision] = {mem, t["efficiency"]["latency_s"]["mean"].get<double>(),
                                      metric["value"].get<double>(), source};
    }
  }
  std::stable_sort(precisions.begin(), precisions.end(),
                   [](const std::string& a, const std::string& b) { return quant::precision_rank(a) < quant::precision_rank(b); });
  // Rows grouped by task in first-seen order, models in first-seen order within a task.
  std::vector<std::string> task_order;
  for (auto& r : rows)
    if (std::find(task_order.begin(), task_order.end(), r.task) == task_order.end()) task_order.push_back(r.task);
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    return std::find(task_order.begin(), task_order.end(), a.task) < std::find(task_order.begin(), task_order.end(), b.task);
  });

  std::string sources;
  for (auto& s : mem_sources)
    sources += (sources.empty() ? "" : "; ") + memory_source_words(s) + (s.empty() ? "" : " (" + s + ")");
  switch (format) {
    case TableFormat::csv: return csv_table(rows, precisions);
    case TableFormat::latex: return latex_table(rows, precisions, sources);
    case TableFormat::markdown: break;
  }
  return markdown_table(rows, precisions, sources);
}

}  // namespace bq::eval
