#include "eval/summary.h"

#include <fmt/format.h>

namespace bq::eval {

std::string format_run_summary(const nlohmann::json& results) {
  std::string out = "\n| task | split | scored | metric | value | 95% interval | unparsed | latency s (mean ± sd) |\n"
                    "|---|---|---:|---|---:|---|---:|---:|\n";
  for (auto& [name, t] : results.at("tasks").items()) {
    std::string metric = t.at("primary_metric");
    const auto& m = t.at("metrics").at(metric);
    const auto& lat = t.at("efficiency").at("latency_s");
    out += fmt::format("| {} | {} | {} | {} | {:.4f} | [{:.4f}, {:.4f}] | {:.1f}% | {:.3f} ± {:.3f} |\n", name,
                       t.at("split").get<std::string>(), t.at("examples_scored").get<size_t>(), metric,
                       m.at("value").get<double>(), m.at("ci95")[0].get<double>(), m.at("ci95")[1].get<double>(),
                       100.0 * t.at("unparsed_rate").get<double>(), lat.at("mean").get<double>(),
                       lat.at("sd").get<double>());
  }
  const auto& memory = results.value("memory", nlohmann::json::object());
  std::string figures;
  for (auto& [key, v] : memory.items())
    if (key.ends_with("_bytes") && key.find("total") == std::string::npos && v.is_number())  // peaks, not capacity
      figures += fmt::format("{}{} {:.3f} GB", figures.empty() ? "" : ", ", key.substr(0, key.size() - 6),
                             v.get<double>() / 1e9);
  if (!figures.empty()) out += "\nmemory: " + figures + "\n";
  return out;
}

}  // namespace bq::eval
