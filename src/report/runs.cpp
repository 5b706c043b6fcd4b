#include "report/runs.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "eval/run.h"
#include "eval/run_folder.h"
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
  eval::RunResults r = eval::read_run_results(dir);
  RunSummary run;
  run.dir = dir;
  run.config = r.config;
  run.model = r.config.model;
  run.precision = r.config.precision();
  run.prompting = r.config.prompting;
  run.shots = r.config.shots;
  std::tie(run.memory_gb, run.memory_source) = eval::memory_gb(r.memory);
  if (r.memory.contains("parameters") && r.memory["parameters"].is_number()) run.parameters = r.memory["parameters"].get<double>();
  run.command = r.command;
  for (const eval::TaskScores& t : r.tasks) {
    TaskResult tr;
    tr.task = t.task;
    tr.metric = t.primary_metric;
    tr.score = t.primary().value;
    tr.ci_lo = t.primary().lo;
    tr.ci_hi = t.primary().hi;
    tr.latency_mean_s = t.latency_s.mean;
    tr.latency_sd_s = t.latency_s.sd;
    tr.latency_p95_s = t.latency_s.p95;
    tr.examples = t.examples_scored;
    tr.prompt_tokens_mean = tr.examples ? t.prompt_tokens / double(tr.examples) : 0.0;
    tr.dev_fallback = t.split_fallback;
    run.tasks.push_back(tr);
  }
  return run;
}

nlohmann::json pairing_key(const RunSummary& run) {
  nlohmann::json key = run.config.to_json();
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
