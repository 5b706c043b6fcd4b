#include "report/runs.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "core/files.h"
#include "eval/run.h"
#include "eval/table.h"
#include "quant/precision.h"

namespace bq::report {

double RunSummary::mean_score() const {
  double sum = 0;
  for (auto& t : tasks) sum += t.score;
  return tasks.empty() ? 0.0 : sum / double(tasks.size());
}

double RunSummary::mean_prompt_tokens() const {
  double tokens = 0, examples = 0;
  for (auto& t : tasks) {
    tokens += t.prompt_tokens_mean * double(t.examples);
    examples += double(t.examples);
  }
  return examples > 0 ? tokens / examples : 0.0;
}

std::string RunSummary::label() const { return fmt::format("{} {} {} {}-shot", model, precision, prompting, shots); }

RunSummary load_run(const fs::path& dir) {
  fs::path file = dir / "results.json";
  if (!fs::exists(file)) fail("{}: no results.json (run eval, or rescore, first)", dir.string());
  auto r = nlohmann::json::parse(read_file(file), nullptr, false);
  if (r.is_discarded()) fail("{}: not valid JSON", file.string());
  if (!r.is_object() || !r.contains("config") || !r.contains("tasks") || !r["tasks"].is_object())
    fail("{}: not a biomedq results file (no config or tasks)", file.string());
  RunSummary run;
  run.dir = dir;
  try {
    const auto& cfg = r["config"];
    run.config = cfg;
    run.model = cfg.at("model").get<std::string>();
    run.precision = cfg.value("model_info", nlohmann::json::object()).value("precision", "?");
    run.prompting = cfg.at("prompting").get<std::string>();
    run.shots = cfg.at("shots").get<int>();
    auto memory = r.value("memory", nlohmann::json::object());
    std::tie(run.memory_gb, run.memory_source) = eval::memory_gb(memory);
    if (memory.contains("parameters") && memory["parameters"].is_number()) run.parameters = memory["parameters"].get<double>();
    run.command = r.value("command", "");
    for (auto& [name, t] : r["tasks"].items()) {
      TaskResult tr;
      tr.task = name;
      tr.metric = t.at("primary_metric").get<std::string>();
      const auto& m = t.at("metrics").at(tr.metric);
      tr.score = m.at("value").get<double>();
      tr.ci_lo = m.at("ci95").at(0).get<double>();
      tr.ci_hi = m.at("ci95").at(1).get<double>();
      const auto& eff = t.at("efficiency");
      const auto& lat = eff.at("latency_s");
      tr.latency_mean_s = lat.at("mean").get<double>();
      tr.latency_sd_s = lat.at("sd").get<double>();
      tr.latency_p95_s = lat.at("p95").get<double>();
      tr.examples = t.at("examples_scored").get<size_t>();
      tr.prompt_tokens_mean = tr.examples ? eff.at("prompt_tokens").get<double>() / double(tr.examples) : 0.0;
      tr.dev_fallback = t.value("split_fallback", false);
      run.tasks.push_back(tr);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not a biomedq results file: {}", file.string(), e.what());
  }
  return run;
}

nlohmann::json pairing_key(const RunSummary& run) {
  nlohmann::json key = run.config;
  key.erase("tasks");
  if (key.contains("model_info"))
    for (const char* k : {"precision", "double_quant", "blocksize"}) key["model_info"].erase(k);
  return key;
}

std::vector<RunPair> pair_runs(const std::vector<RunSummary>& runs) {
  std::vector<RunPair> pairs;
  for (size_t q = 0; q < runs.size(); q++) {
    if (quant::is_full_precision(runs[q].precision)) continue;
    nlohmann::json key = pairing_key(runs[q]);
    std::optional<size_t> best;
    for (size_t b = 0; b < runs.size(); b++) {
      if (!quant::is_full_precision(runs[b].precision) || pairing_key(runs[b]) != key) continue;
      // bf16 < fp16 < fp32 in preference: the study's full-precision reference is 16-bit.
      auto preference = [](const std::string& p) { return p == "bf16" ? 0 : p == "fp16" ? 1 : 2; };
      if (!best || preference(runs[b].precision) < preference(runs[*best].precision)) best = b;
    }
    if (best) pairs.push_back({*best, q});
  }
  return pairs;
}

std::vector<PairedDelta> paired_deltas(const std::vector<RunSummary>& runs, const std::vector<RunPair>& pairs,
                                       uint64_t seed, int resamples) {
  std::vector<PairedDelta> out;
  for (size_t i = 0; i < pairs.size(); i++) {
    auto cmp = eval::compare_runs(runs[pairs[i].baseline].dir, runs[pairs[i].quantized].dir, seed, resamples);
    for (auto& [task, t] : cmp["tasks"].items()) {
      PairedDelta d;
      d.pair = i;
      d.task = task;
      d.metric = t["primary_metric"].get<std::string>();
      const auto& diff = t["difference"][d.metric];
      d.delta = diff["b_minus_a"].get<double>();
      d.ci_lo = diff["ci95"][0].get<double>();
      d.ci_hi = diff["ci95"][1].get<double>();
      d.paired_examples = t["paired_examples"].get<size_t>();
      d.right_to_wrong = t["right_to_wrong"].get<size_t>();
      d.wrong_to_right = t["wrong_to_right"].get<size_t>();
      d.mcnemar_p = t["mcnemar"]["p_value"].get<double>();
      out.push_back(d);
    }
  }
  return out;
}

}  // namespace bq::report
