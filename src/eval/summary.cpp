#include "eval/summary.h"

#include <fmt/format.h>

#include "eval/run_folder.h"

namespace bq::eval {

std::string format_run_summary(const nlohmann::json& results_json) {
  const RunResults results = RunResults::from_json(results_json, "results");
  std::string out = "\n| task | split | scored | metric | value | 95% interval | unparsed | latency s (mean ± sd) |\n"
                    "|---|---|---:|---|---:|---|---:|---:|\n";
  for (const TaskScores& t : results.tasks) {
    const Interval& m = t.primary();
    out += fmt::format("| {} | {} | {} | {} | {:.4f} | [{:.4f}, {:.4f}] | {:.1f}% | {:.3f} ± {:.3f} |\n", t.task,
                       t.split, t.examples_scored, t.primary_metric, m.value, m.lo, m.hi, 100.0 * t.unparsed_rate,
                       t.latency_s.mean, t.latency_s.sd);
  }
  const auto& memory = results.memory;
  std::string figures;
  for (auto& [key, v] : memory.items())
    if (key.ends_with("_bytes") && key.find("total") == std::string::npos && v.is_number())  // peaks, not capacity
      figures += fmt::format("{}{} {:.3f} GB", figures.empty() ? "" : ", ", key.substr(0, key.size() - 6),
                             v.get<double>() / 1e9);
  if (!figures.empty()) out += "\nmemory: " + figures + "\n";
  const auto& t = results.throughput;
  if (t.value("generated_tokens", 0) > 0)
    out += fmt::format("throughput: {:.1f} s wall, {} prompt tokens prefilled at {:.0f} tok/s ({} more reused from "
                       "shared prefixes), {} generated at {:.0f} tok/s in decode steps, decode batch {:.1f} of {} ({:.0f}% "
                       "occupancy)\n",
                       t.value("wall_s", 0.0), t.value("prompt_tokens", 0), t.value("prefill_tokens_per_s", 0.0),
                       t.value("prompt_tokens_reused", 0),
                       t.value("generated_tokens", 0), t.value("decode_tokens_per_s", 0.0),
                       t.value("mean_decode_batch", 0.0), t.value("max_in_flight", 0),
                       100.0 * t.value("occupancy", 0.0));
  if (t.contains("cache_s"))
    out += fmt::format("time: prefill {:.1f} s, decode {:.1f} s, caches {:.1f} s, other {:.1f} s{}\n",
                       t.value("prefill_s", 0.0), t.value("decode_s", 0.0), t.value("cache_s", 0.0),
                       t.value("other_s", 0.0),
                       t.contains("model_load")
                           ? fmt::format("; the model loaded in {:.1f} s", t["model_load"].value("total_s", 0.0))
                           : "");
  if (t.value("preemptions", 0) > 0)
    out += fmt::format("kv cache: full {} times; each time the newest request was set back and recomputed later "
                       "(a smaller --batch avoids the recomputation)\n",
                       t.value("preemptions", 0));
  return out;
}

}  // namespace bq::eval
