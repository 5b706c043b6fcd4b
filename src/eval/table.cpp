#include "eval/table.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "core/error.h"
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

// The settings of a run that decide where tables and figures draw it.
std::string place_of(const RunConfig& config) {
  return fmt::format("{} at {} ({}, {}-shot)", config.model, config.precision(), config.prompting, config.shots);
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

void check_no_overlap(const std::vector<std::pair<fs::path, RunConfig>>& configs) {
  for (size_t b = 0; b < configs.size(); ++b)
    for (size_t a = 0; a < b; ++a) {
      const auto& [dir_a, ca] = configs[a];
      const auto& [dir_b, cb] = configs[b];
      if (place_of(ca) != place_of(cb)) continue;
      std::string differ = first_difference(ca.to_json(), cb.to_json());
      if (differ.empty()) differ = "nothing: the same run twice";
      fail("{} and {} both hold {}: a table or figure would draw them in one place. They differ in {}. Tabulate or "
           "report them separately (or leave one out).", dir_a.string(), dir_b.string(), place_of(ca), differ);
    }
}

std::string format_results_table(const std::vector<fs::path>& run_dirs, TableFormat format) {
  std::vector<Row> rows;
  std::vector<std::string> precisions;
  std::vector<std::string> mem_sources;
  std::vector<std::pair<fs::path, RunResults>> runs;
  for (auto& dir : run_dirs) runs.emplace_back(dir, read_run_results(dir));
  auto prompting_of = [](const RunConfig& config) { return fmt::format("{}, {}-shot", config.prompting, config.shots); };
  std::vector<std::pair<fs::path, RunConfig>> configs;
  std::set<std::string> prompting_configs;
  for (auto& [dir, r] : runs) {
    configs.emplace_back(dir, r.config);
    prompting_configs.insert(prompting_of(r.config));
  }
  check_no_overlap(configs);
  for (auto& [dir, r] : runs) {
    std::string model = r.config.model;
    if (prompting_configs.size() > 1)  // one row per model and prompting configuration
      model += " (" + prompting_of(r.config) + ")";
    std::string precision = r.config.precision();
    if (std::find(precisions.begin(), precisions.end(), precision) == precisions.end()) precisions.push_back(precision);
    auto [mem, source] = memory_gb(r.memory);
    if (std::find(mem_sources.begin(), mem_sources.end(), source) == mem_sources.end()) mem_sources.push_back(source);
    for (const TaskScores& t : r.tasks) {
      auto row = std::find_if(rows.begin(), rows.end(), [&](const Row& x) { return x.task == t.task && x.model == model; });
      if (row == rows.end()) {
        rows.push_back({t.task, t.primary_metric, model, false, {}});
        row = rows.end() - 1;
      }
      row->dev_fallback = row->dev_fallback || t.split_fallback;
      row->by_precision[precision] = {mem, t.latency_s.mean, t.metrics.at(row->metric).value, source};
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
