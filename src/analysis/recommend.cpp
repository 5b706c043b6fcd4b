#include "analysis/recommend.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "eval/named_table.h"
#include "eval/run.h"
#include "eval/run_folder.h"
#include "eval/task.h"
#include "model/config.h"
#include "plan/memory_planner.h"
#include "quant/precision.h"

namespace bq::analysis {

namespace fs = std::filesystem;

namespace {

// Which full-precision run is a model's baseline when it has several (bf16 first, as in the study).
int full_precision_rank(const std::string& p) {
  const quant::Precision* e = quant::find_precision(p);
  return e ? e->baseline_preference : 99;
}

std::string fit_text(const Candidate& c, size_t budget) {
  if (c.planned_bytes <= budget)
    return fmt::format("fits: {} planned of {}", plan::format_bytes(double(c.planned_bytes)),
                       plan::format_bytes(double(budget)));
  return fmt::format("does not fit: {} planned, {} over {}", plan::format_bytes(double(c.planned_bytes)),
                     plan::format_bytes(double(c.planned_bytes) - double(budget)), plan::format_bytes(double(budget)));
}

// The run folder as recommend uses it.
struct Run {
  fs::path dir;
  std::string model, precision;
  bool double_quant = true;
  int blocksize = 64;
  ModelConfig config;
  fs::path checkpoint;
  std::vector<std::string> tasks;  // selected tasks the run scored
  int prompt = 0, context = 0, parallel = 1;
  double score = 0, unparsed_rate = 0;
  size_t scored_examples = 0;  // on the selected task with the fewest
};

Run read_run(const fs::path& dir, const RecommendOptions& opt) {
  if (!fs::exists(dir / eval::kResultsFile))
    fail("{}: not found (is this a run folder written by biomedq eval?)", (dir / eval::kResultsFile).string());
  const eval::RunResults results = eval::read_run_results(dir);
  const eval::RunConfig& id = results.config;
  const std::string results_file = (dir / eval::kResultsFile).string();
  const nlohmann::json& info = id.model_info;
  Run r;
  r.dir = dir;
  r.model = id.model;
  if (!info.is_object() || !info.contains("precision") || !info["precision"].is_string())
    fail("{}: the run's model_info records no precision", results_file);
  r.precision = info["precision"].get<std::string>();
  r.double_quant = info.value("double_quant", true);
  r.blocksize = info.value("blocksize", 64);
  if (info.contains("synthetic")) {
    r.config = preset_config(info["synthetic"].get<std::string>());
  } else {
    if (!info.contains("path") || !info["path"].is_string())
      fail("{}: the run's model_info records neither a checkpoint path nor a synthetic preset", results_file);
    r.checkpoint = info["path"].get<std::string>();
    if (!fs::exists(r.checkpoint / "config.json"))
      fail("{}: the run's model {} is not there any more (its config is needed to plan memory)", results_file,
           r.checkpoint.string());
    r.config = load_model_config(r.checkpoint);
  }
  auto task_configs = eval::load_task_configs(id.tasks_dir);
  r.parallel = opt.batch * id.sc_samples;
  std::map<std::string, int> new_tokens;
  double score_sum = 0, unparsed = 0, scored = 0;
  for (const eval::TaskScores& t : results.tasks) {
    const auto& task = eval::find_task(task_configs, t.task);
    if (!opt.task.empty() && t.task != opt.task) continue;
    if (!opt.task_type.empty() && task.type != opt.task_type) continue;
    r.tasks.push_back(t.task);
    score_sum += t.primary().value;
    unparsed += double(t.unparsed);
    scored += double(t.examples_scored);
    r.scored_examples = r.tasks.size() == 1 ? t.examples_scored : std::min(r.scored_examples, t.examples_scored);
    new_tokens[t.task] = id.cot() ? task.max_new_tokens_cot : task.max_new_tokens;
  }
  if (r.tasks.empty()) return r;
  r.score = score_sum / double(r.tasks.size());
  r.unparsed_rate = scored > 0 ? unparsed / scored : 0;
  // The context the run needed: its longest prompt plus the most tokens a task lets it generate (the KV cache
  // is sized for both when a sequence opens).
  for (const eval::SampleRecord& s : eval::read_samples(dir / eval::kSamplesFile, false)) {
    auto it = new_tokens.find(s.task);
    if (it == new_tokens.end()) continue;
    int prompt = s.prompt_tokens / id.sc_samples;
    r.prompt = std::max(r.prompt, prompt);
    r.context = std::max(r.context, prompt + it->second);
  }
  if (r.context == 0) fail("{}: no samples of the selected tasks", (dir / eval::kSamplesFile).string());
  r.context = std::min(r.context, r.config.max_positions);
  return r;
}

size_t planned_total(const Run& like, const std::string& precision, bool double_quant, int blocksize, int prompt,
                     int context, int parallel) {
  plan::PlanRequest q;
  q.config = like.config;
  q.model_label = like.model;
  q.checkpoint = like.checkpoint;
  q.precision = &quant::precision_named(precision);
  q.precision_given = true;  // a precision the checkpoint's stored format rules out is an Error, not planned as stored
  q.double_quant = double_quant;
  q.blocksize = blocksize;
  q.device = "cuda";
  q.context = context;
  q.prompt = std::min(prompt, context);
  q.batch = parallel;
  return plan::plan_memory(q).total_bytes;
}

}  // namespace

namespace {

// Why a measured candidate's own numbers are no evidence ("" when they are).
std::string lacking_evidence(const Candidate& c, const EvidenceRule& rule) {
  std::vector<std::string> why;
  if (c.scored_examples < rule.min_examples)
    why.push_back(fmt::format("{} scored example{} on its smallest task (at least {} needed)", c.scored_examples,
                              c.scored_examples == 1 ? "" : "s", rule.min_examples));
  for (auto& p : c.vs_full)
    if (p.paired_examples < rule.min_examples) {
      why.push_back(fmt::format("{} paired examples on {} (at least {} needed)", p.paired_examples, p.task,
                                rule.min_examples));
      break;
    }
  if (c.unparsed_rate > rule.max_unparsed_rate)
    why.push_back(fmt::format("{:.1f}% of answers unparsed (at most {:.1f}% allowed)", 100 * c.unparsed_rate,
                              100 * rule.max_unparsed_rate));
  std::string out;
  for (auto& w : why) out += (out.empty() ? "" : ", ") + w;
  return out;
}

}  // namespace

Recommendation decide(const std::vector<Candidate>& candidates, size_t budget_bytes, double margin,
                      const EvidenceRule& evidence) {
  Recommendation out;
  out.budget_bytes = budget_bytes;
  out.margin = margin;
  out.evidence = evidence;
  std::vector<std::string> models;
  std::map<std::string, const Candidate*> baseline;
  for (auto& c : candidates) {
    if (std::find(models.begin(), models.end(), c.model) == models.end()) models.push_back(c.model);
    if (!c.measured || !quant::is_full_precision(c.precision)) continue;
    auto& b = baseline[c.model];
    if (!b || full_precision_rank(c.precision) < full_precision_rank(b->precision)) b = &c;
  }
  std::vector<Decision> all;
  for (auto& c : candidates) {
    Decision d;
    d.candidate = c;
    d.fits = c.planned_bytes <= budget_bytes;
    d.full_precision = quant::is_full_precision(c.precision);
    std::string reason = fit_text(c, budget_bytes);
    const Candidate* base = baseline.count(c.model) ? baseline[c.model] : nullptr;
    if (c.measured) {
      d.lacking = lacking_evidence(c, evidence);
      if (base && base != &c)  // a judgment against a baseline is only as good as the baseline's numbers
        if (std::string b = lacking_evidence(*base, evidence); !b.empty())
          d.lacking += (d.lacking.empty() ? "" : "; ") + fmt::format("its {} baseline: {}", base->precision, b);
    }
    if (!c.measured) {
      d.verdict = "not measured";
      reason += "; not measured: evaluate it to judge (no score is guessed)";
    } else if (!d.lacking.empty()) {
      d.verdict = "not enough evidence";
      reason += fmt::format("; score {:.4f}; not enough evidence: {}", c.score, d.lacking);
    } else if (base == &c) {
      d.verdict = "baseline";
      reason += fmt::format("; full-precision baseline, score {:.4f}", c.score);
    } else if (!base || c.vs_full.empty()) {
      d.verdict = "no baseline";
      reason += fmt::format("; score {:.4f}; no full-precision run of {} to pair with: non-inferiority not judged",
                            c.score, c.model);
    } else {
      const PairedDifference& worst =
          *std::min_element(c.vs_full.begin(), c.vs_full.end(), [](auto& a, auto& b) { return a.lo < b.lo; });
      const bool ok = worst.lo > -margin;
      d.verdict = ok ? "non-inferior" : "inferior";
      reason += fmt::format("; score {:.4f}; vs {}: {:+.4f} [{:+.4f}, {:+.4f}] on {}{}, lower bound {} -{}: {}", c.score,
                            base->precision, worst.diff, worst.lo, worst.hi, worst.task,
                            c.vs_full.size() > 1 ? fmt::format(" (lowest of {} tasks)", c.vs_full.size()) : "",
                            ok ? "above" : "not above", margin, d.verdict);
    }
    if (c.measured) reason += fmt::format("; unparsed {:.1f}%", 100 * c.unparsed_rate);
    d.reason = reason;
    all.push_back(std::move(d));
  }
  for (auto& m : models) {
    Decision* best = nullptr;
    const Decision* short_of_evidence = nullptr;
    for (auto& d : all) {
      if (d.candidate.model != m) continue;
      if (d.verdict == "not enough evidence" && !short_of_evidence) short_of_evidence = &d;
      if (d.fits && (d.verdict == "baseline" || d.verdict == "non-inferior") &&
          (!best || d.candidate.planned_bytes < best->candidate.planned_bytes))
        best = &d;
    }
    if (best) {
      best->recommended = true;
      out.per_model.push_back(fmt::format("{}: run {} ({} planned, score {:.4f})", m, best->candidate.precision,
                                          plan::format_bytes(double(best->candidate.planned_bytes)), best->candidate.score));
    } else if (short_of_evidence) {
      out.per_model.push_back(fmt::format("{}: not enough evidence to choose a precision ({}: {}); evaluate more "
                                          "examples", m, short_of_evidence->candidate.precision,
                                          short_of_evidence->lacking));
    } else if (!baseline.count(m)) {
      out.per_model.push_back(fmt::format("{}: no full-precision run, so no precision can be shown non-inferior", m));
    } else {
      out.per_model.push_back(fmt::format("{}: no measured precision both fits and is non-inferior", m));
    }
  }
  for (auto& d : all)
    if (d.candidate.measured && d.fits) out.ranked.push_back(d);
  std::stable_sort(out.ranked.begin(), out.ranked.end(),
                   [](auto& a, auto& b) { return a.candidate.score > b.candidate.score; });
  for (int pass = 0; pass < 3; ++pass)
    for (auto& d : all) {
      bool measured_unfit = d.candidate.measured && !d.fits, unmeasured_fit = !d.candidate.measured && d.fits;
      if ((pass == 0 && measured_unfit) || (pass == 1 && unmeasured_fit) || (pass == 2 && !d.candidate.measured && !d.fits))
        out.others.push_back(d);
    }
  return out;
}

Recommendation recommend(const RecommendOptions& opt) {
  if (opt.runs.empty()) fail("recommend: give at least one run folder (--runs)");
  if (!opt.task.empty() && !opt.task_type.empty()) fail("recommend: give --task or --task-type, not both");
  if (!opt.task_type.empty() && !eval::find_named(eval::task_presets(), opt.task_type))
    fail("--task-type: '{}' is not one of {}", opt.task_type, eval::known_names(eval::task_presets()));
  if (opt.margin < 0) fail("--margin must not be negative (got {})", opt.margin);
  if (opt.evidence.max_unparsed_rate < 0 || opt.evidence.max_unparsed_rate > 1)
    fail("--max-unparsed must be a rate in 0..1 (got {})", opt.evidence.max_unparsed_rate);
  if (opt.batch < 1) fail("--batch must be at least 1 (got {})", opt.batch);
  std::vector<Run> runs;
  std::vector<fs::path> dirs;  // a folder of runs (a sweep's) stands for its finished runs
  for (auto& given : opt.runs)
    for (auto& dir : eval::select_finished_runs({given}).finished) dirs.push_back(dir);
  for (auto& dir : dirs) {
    Run r = read_run(dir, opt);
    if (r.tasks.empty()) continue;  // none of the selected tasks
    for (auto& o : runs)
      if (o.model == r.model && o.precision == r.precision)
        fail("runs {} and {} both hold {} at {}; give one of them (recommend weighs precisions under one prompting "
             "configuration: of a sweep, give one prompting's cells, e.g. SWEEP/*/*/instruction-0shot)",
             o.dir.string(), r.dir.string(), r.model, r.precision);
    runs.push_back(std::move(r));
  }
  if (runs.empty()) fail("recommend: none of the runs scored the selected tasks");

  std::vector<Candidate> cands;
  std::vector<std::string> models;
  for (auto& r : runs)
    if (std::find(models.begin(), models.end(), r.model) == models.end()) models.push_back(r.model);
  for (auto& m : models) {
    std::vector<const Run*> mine;
    int prompt = 0, context = 0, parallel = 1;
    for (auto& r : runs)
      if (r.model == m) {
        mine.push_back(&r);
        prompt = std::max(prompt, r.prompt);
        context = std::max(context, r.context);
        parallel = std::max(parallel, r.parallel);
      }
    const Run* base = nullptr;
    for (auto* r : mine)
      if (quant::is_full_precision(r->precision) && (!base || full_precision_rank(r->precision) < full_precision_rank(base->precision)))
        base = r;
    std::set<std::string> measured;
    for (auto* r : mine) {
      Candidate c;
      c.model = m;
      c.precision = r->precision;
      c.measured = true;
      c.run_dir = r->dir.string();
      c.score = r->score;
      c.unparsed_rate = r->unparsed_rate;
      c.scored_examples = r->scored_examples;
      c.planned_bytes = planned_total(*r, r->precision, r->double_quant, r->blocksize, prompt, context, parallel);
      if (base && r != base) {
        auto cmp = eval::compare_runs(base->dir, r->dir, opt.seed, opt.resamples);
        for (auto& t : r->tasks) {
          if (!cmp["tasks"].contains(t)) continue;
          const auto& ct = cmp["tasks"][t];
          const auto& d = ct["difference"][ct["primary_metric"].get<std::string>()];
          c.vs_full.push_back({t, d["b_minus_a"].get<double>(), d["ci95"][0].get<double>(), d["ci95"][1].get<double>(),
                               ct["paired_examples"].get<size_t>()});
        }
      }
      measured.insert(r->precision);
      cands.push_back(std::move(c));
    }
    for (auto& entry : quant::precisions()) {
      const std::string p(entry.name);
      if (!entry.offered_unmeasured || measured.count(p)) continue;
      Candidate c;
      c.model = m;
      c.precision = p;
      try {
        c.planned_bytes = planned_total(*mine.front(), p, true, 64, prompt, context, parallel);
      } catch (const Error&) {
        continue;  // a precision this checkpoint cannot load at (stored in another quantized format)
      }
      cands.push_back(std::move(c));
    }
  }
  return decide(cands, opt.budget_bytes, opt.margin, opt.evidence);
}

nlohmann::ordered_json to_json(const Recommendation& r) {
  auto row = [](const Decision& d) {
    const Candidate& c = d.candidate;
    nlohmann::ordered_json j = {{"model", c.model},         {"precision", c.precision},
                                {"planned_bytes", c.planned_bytes}, {"fits", d.fits},
                                {"measured", c.measured},   {"verdict", d.verdict},
                                {"recommended", d.recommended}, {"reason", d.reason}};
    if (c.measured) {
      j["run"] = c.run_dir;
      j["score"] = c.score;
      j["unparsed_rate"] = c.unparsed_rate;
      j["scored_examples"] = c.scored_examples;
      j["enough_evidence"] = d.lacking.empty();
      if (!d.lacking.empty()) j["not_enough_evidence"] = d.lacking;
      auto diffs = nlohmann::ordered_json::array();
      for (auto& p : c.vs_full)
        diffs.push_back({{"task", p.task}, {"difference", p.diff}, {"ci95", {p.lo, p.hi}}, {"paired_examples", p.paired_examples}});
      j["vs_full_precision"] = diffs;
    }
    return j;
  };
  nlohmann::ordered_json ranked = nlohmann::ordered_json::array(), others = nlohmann::ordered_json::array();
  for (auto& d : r.ranked) ranked.push_back(row(d));
  for (auto& d : r.others) others.push_back(row(d));
  return {{"budget_bytes", r.budget_bytes},
          {"margin", r.margin},
          {"min_examples", r.evidence.min_examples},
          {"max_unparsed_rate", r.evidence.max_unparsed_rate},
          {"ranked", ranked},
          {"others", others},
          {"per_model", r.per_model}};
}

std::string format_recommendation(const Recommendation& r) {
  std::string s = fmt::format("GPU memory {}, non-inferiority margin {}; evidence: at least {} scored examples per "
                              "task, at most {:.1f}% unparsed\n\nmeasured and fitting, best score first:\n",
                              plan::format_bytes(double(r.budget_bytes)), r.margin, r.evidence.min_examples,
                              100 * r.evidence.max_unparsed_rate);
  auto line = [](const Decision& d) {
    return fmt::format("  {}{} {}: {}\n", d.recommended ? "* " : "  ", d.candidate.model, d.candidate.precision, d.reason);
  };
  for (auto& d : r.ranked) s += line(d);
  if (r.ranked.empty()) s += "  (none)\n";
  if (!r.others.empty()) s += "\nothers:\n";
  for (auto& d : r.others) s += line(d);
  s += "\nrecommended (*):\n";
  for (auto& m : r.per_model) s += "  " + m + "\n";
  return s;
}

}  // namespace bq::analysis
