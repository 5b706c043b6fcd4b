#include "eval/table.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/files.h"

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

}  // namespace

// The best memory figure a run has: the device's peak, then the allocator's, then the host process's, and the
// weights alone as a last resort (what a CPU run without peak tracking reports).
std::pair<double, std::string> memory_gb(const nlohmann::json& memory) {
  for (const char* key : {"device_peak_bytes", "peak_bytes", "allocator_peak_bytes", "host_peak_rss_bytes", "weight_bytes"})
    if (memory.contains(key) && memory[key].is_number()) return {memory[key].get<double>() / 1e9, key};
  return {0.0, ""};
}

int precision_rank(const std::string& p) {
  static const std::vector<std::string> order = {"fp32", "bf16", "fp16", "int8", "llm-int8", "nf4", "fp4"};
  auto it = std::find(order.begin(), order.end(), p);
  return int(it - order.begin());
}

std::string format_results_table(const std::vector<fs::path>& run_dirs, bool csv) {
  std::vector<Row> rows;
  std::vector<std::string> precisions;
  std::vector<std::string> mem_sources;
  for (auto& dir : run_dirs) {
    fs::path file = dir / "results.json";
    if (!fs::exists(file)) fail("{}: no results.json (run eval, or rescore, first)", dir.string());
    auto r = nlohmann::json::parse(read_file(file), nullptr, false);
    if (r.is_discarded() || !r.contains("tasks") || !r.contains("config")) fail("{}: not a biomedq results file", file.string());
    std::string model = r["config"].value("model", "?");
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
      if (row->by_precision.contains(precision))
        fail("{}: task {} of model {} at {} is already given by another run", dir.string(), name, model, precision);
      row->dev_fallback = row->dev_fallback || t.value("split_fallback", false);
      const auto& metric = t["metrics"][row->metric];
      row->by_precision[precision] = {mem, t["efficiency"]["latency_s"]["mean"].get<double>(),
                                      metric["value"].get<double>(), source};
    }
  }
  std::stable_sort(precisions.begin(), precisions.end(),
                   [](const std::string& a, const std::string& b) { return precision_rank(a) < precision_rank(b); });
  // Rows grouped by task in first-seen order, models in first-seen order within a task.
  std::vector<std::string> task_order;
  for (auto& r : rows)
    if (std::find(task_order.begin(), task_order.end(), r.task) == task_order.end()) task_order.push_back(r.task);
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    return std::find(task_order.begin(), task_order.end(), a.task) < std::find(task_order.begin(), task_order.end(), b.task);
  });

  std::string out;
  if (csv) {
    out = "task,split_fallback,metric,model";
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
  out = "| Task | Metric | Model |";
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
  std::string sources;
  for (auto& s : mem_sources) sources += (sources.empty() ? "" : ", ") + (s.empty() ? std::string("none recorded") : s);
  out += fmt::format("\nMem: GB, peak ({}). Late: seconds per sample (mean). Score: primary metric × 100.\n", sources);
  if (any_fallback) out += "†: the data has no test split; scored on dev.\n";
  return out;
}

}  // namespace bq::eval
