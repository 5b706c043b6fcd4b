#include "report/figures.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "eval/table.h"
#include "quant/precision.h"

namespace bq::report {

namespace {

template <typename T>
void add_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

// Runs in the order figures list them: by model as first given, then from full precision to fewest bits.
std::vector<size_t> display_order(const std::vector<RunSummary>& runs, std::vector<size_t> which) {
  std::vector<std::string> models;
  for (auto& r : runs) add_unique(models, r.model);
  auto model_rank = [&](size_t i) { return std::find(models.begin(), models.end(), runs[i].model) - models.begin(); };
  std::stable_sort(which.begin(), which.end(), [&](size_t a, size_t b) {
    if (model_rank(a) != model_rank(b)) return model_rank(a) < model_rank(b);
    return quant::precision_rank(runs[a].precision) < quant::precision_rank(runs[b].precision);
  });
  return which;
}

bool several_models(const std::vector<RunSummary>& runs, const std::vector<size_t>& which) {
  std::set<std::string> models;
  for (size_t i : which) models.insert(runs[i].model);
  return models.size() > 1;
}

std::string with_model(const RunSummary& run, bool prefix, const std::string& what) {
  return prefix ? run.model + " · " + what : what;
}

std::string format_params(double n) {
  if (n >= 1e9) return fmt::format("{:.1f}B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.1f}M", n / 1e6);
  return fmt::format("{:.0f}K", n / 1e3);
}

Figure precision_figure(const std::vector<RunSummary>& runs, const std::vector<size_t>& ref) {
  // Score and latency get one panel per model (tasks along the axis), memory one panel across models.
  std::vector<std::string> models;
  for (size_t i : ref) add_unique(models, runs[i].model);
  std::map<std::string, BarChart> score, latency;
  BarChart memory{"peak memory (GB)", {}};
  struct Totals {
    double score = 0, memory = 0, latency = 0;
    int tasks = 0, runs = 0;
  };
  std::map<std::string, Totals> by_precision;
  std::vector<std::string> precisions;
  for (size_t i : ref) {
    const RunSummary& r = runs[i];
    add_unique(precisions, r.precision);
    Totals& tot = by_precision[r.precision];
    memory.bars.push_back({r.model, r.precision, r.memory_gb, {}, {}});
    tot.memory += r.memory_gb;
    tot.runs++;
    score[r.model].y_label = "score (primary metric × 100)";
    latency[r.model].y_label = "seconds per sample";
    for (auto& t : r.tasks) {
      score[r.model].bars.push_back({t.task, r.precision, 100 * t.score, 100 * t.ci_lo, 100 * t.ci_hi});
      latency[r.model].bars.push_back({t.task, r.precision, t.latency_mean_s,
                                       std::max(0.0, t.latency_mean_s - t.latency_sd_s), t.latency_mean_s + t.latency_sd_s});
      tot.score += 100 * t.score;
      tot.latency += t.latency_mean_s;
      tot.tasks++;
    }
  }
  const RunSummary& first = runs[ref.front()];
  Figure f{"precision",
           "Score, peak memory and latency by precision",
           fmt::format("As the study's Figure 2, for the {} {}-shot runs. Error bars: score, the bootstrap 95% interval; "
                       "latency, ± one standard deviation over samples. Memory: {}.",
                       first.prompting, first.shots,
                       eval::memory_source_words(first.memory_source) +
                           (first.memory_source.empty() ? "" : " (" + first.memory_source + ")")),
           {},
           {}};
  for (auto& m : models) f.panels.push_back({"Score by task: " + m, score[m]});
  f.panels.push_back({"Peak memory by model", memory});
  for (auto& m : models) f.panels.push_back({"Latency by task (mean ± sd): " + m, latency[m]});
  for (auto& p : precisions) {
    const Totals& t = by_precision[p];
    f.summary.push_back(fmt::format("{}: mean score {:.1f} over {} task results, mean peak memory {:.3f} GB, mean latency "
                                    "{:.3f} s per sample",
                                    p, t.tasks ? t.score / t.tasks : 0.0, t.tasks, t.memory / t.runs,
                                    t.tasks ? t.latency / t.tasks : 0.0));
  }
  return f;
}

std::optional<Figure> model_size_figure(const std::vector<RunSummary>& runs, const std::vector<size_t>& ref) {
  LineChart score{"parameters", "mean score (× 100)", true, {}}, memory{"parameters", "peak memory (GB)", true, {}};
  std::vector<std::string> bullets;
  for (size_t i : ref) {
    const RunSummary& r = runs[i];
    if (!r.parameters) continue;
    std::string label = fmt::format("{} ({} parameters)", r.model, format_params(*r.parameters));
    score.points.push_back({r.precision, *r.parameters, 100 * r.mean_score(), label});
    memory.points.push_back({r.precision, *r.parameters, r.memory_gb, label});
    bullets.push_back(fmt::format("{} at {}: mean score {:.1f}, peak memory {:.3f} GB", label, r.precision,
                                  100 * r.mean_score(), r.memory_gb));
  }
  if (score.points.empty()) return std::nullopt;
  return Figure{"model-size", "Score and memory against model size",
                "As the study's Figure 4: one line per precision across models; the score is the mean primary metric "
                "over each run's tasks.",
                {{"Mean score by parameters", score}, {"Peak memory by parameters", memory}},
                bullets};
}

Figure prompt_length_figure(const std::vector<RunSummary>& runs, const std::vector<size_t>& all) {
  bool prefix = several_models(runs, all);
  LineChart memory{"mean prompt tokens per example", "peak memory (GB)", false, {}};
  for (size_t i : all) {
    const RunSummary& r = runs[i];
    memory.points.push_back({with_model(r, prefix, r.precision), r.mean_prompt_tokens(), r.memory_gb,
                             fmt::format("{} {}, {}-shot", r.model, r.prompting, r.shots)});
  }
  Figure f{"prompt-length", "Memory against prompt length",
           "As the study's Figure 5: each point is a run, placed by its mean prompt length (more shots, longer "
           "prompts); one line per precision.",
           {{"Peak memory by prompt length", memory}},
           {}};
  std::map<std::string, std::vector<const Point*>> by_series;
  for (auto& p : memory.points) by_series[p.series].push_back(&p);
  for (auto& s : series_of(f.panels[0])) {
    auto& pts = by_series[s];
    auto [shortest, longest] = std::minmax_element(pts.begin(), pts.end(), [](auto* a, auto* b) { return a->x < b->x; });
    f.summary.push_back(fmt::format("{}: {} run{}, {:.0f}–{:.0f} prompt tokens, {:.3f} GB at the shortest, {:.3f} GB "
                                    "at the longest", s, pts.size(), pts.size() == 1 ? "" : "s", (*shortest)->x,
                                    (*longest)->x, (*shortest)->y, (*longest)->y));
  }
  return f;
}

std::optional<Figure> prompting_figure(const std::vector<RunSummary>& runs, const std::vector<size_t>& all, int shots) {
  std::vector<size_t> which;
  std::set<std::string> strategies, seen;
  for (size_t i : all) {
    const RunSummary& r = runs[i];
    // One run per model, strategy and precision: the first given.
    if (r.shots != shots || !seen.insert(r.model + '\x1f' + r.prompting + '\x1f' + r.precision).second) continue;
    which.push_back(i);
    strategies.insert(r.prompting);
  }
  if (strategies.size() < 2) return std::nullopt;
  auto strategy_rank = [](const std::string& s) { return s == "instruction" ? 0 : s == "cot" ? 1 : s == "sc" ? 2 : 3; };
  std::stable_sort(which.begin(), which.end(),
                   [&](size_t a, size_t b) { return strategy_rank(runs[a].prompting) < strategy_rank(runs[b].prompting); });
  bool prefix = several_models(runs, which);
  BarChart score{"mean score (× 100)", {}};
  Figure f{"prompting", "Score by prompting strategy",
           fmt::format("As the study's Figure 6, for the {}-shot runs: the mean primary metric over each run's tasks; "
                       "instruction = direct answer, cot = chain of thought, sc = self-consistency.", shots),
           {}, {}};
  for (size_t i : which) {
    const RunSummary& r = runs[i];
    score.bars.push_back({with_model(r, prefix, r.prompting), r.precision, 100 * r.mean_score(), {}, {}});
    f.summary.push_back(fmt::format("{} {} {}: mean score {:.1f} over {} tasks", r.model, r.prompting, r.precision,
                                    100 * r.mean_score(), r.tasks.size()));
  }
  f.panels.push_back({"Mean score by strategy", score});
  return f;
}

std::optional<Figure> paired_figure(const std::vector<RunSummary>& runs, const std::vector<RunPair>& pairs,
                                    const std::vector<PairedDelta>& deltas) {
  if (deltas.empty()) return std::nullopt;
  ForestChart forest{"quantized − full precision (primary metric × 100)", {}};
  Figure f{"paired", "Paired differences from full precision",
           "Each quantized run against the full-precision run of the same model and prompting, example by example: "
           "the difference of the primary metric with its paired-bootstrap 95% interval; flips count answers that "
           "went right→wrong and wrong→right.",
           {}, {}};
  for (auto& d : deltas) {
    const RunSummary& base = runs[pairs[d.pair].baseline];
    const RunSummary& q = runs[pairs[d.pair].quantized];
    std::string label = fmt::format("{} · {} {} vs {} ({}, {}-shot)", d.task, q.model, q.precision, base.precision,
                                    q.prompting, q.shots);
    std::string flips = fmt::format("n={}, right→wrong {}, wrong→right {}, McNemar p={:.3g}", d.paired_examples,
                                    d.right_to_wrong, d.wrong_to_right, d.mcnemar_p);
    forest.rows.push_back({label, q.precision, 100 * d.delta, 100 * d.ci_lo, 100 * d.ci_hi, flips});
    f.summary.push_back(fmt::format("{}: {:+.1f} [{:+.1f}, {:+.1f}] {} ({})", label, 100 * d.delta, 100 * d.ci_lo,
                                    100 * d.ci_hi, d.metric, flips));
  }
  f.panels.push_back({"Per task and quantized run", forest});
  return f;
}

}  // namespace

const std::string& series_color(size_t index) {
  // Colour-blind-friendly categorical palette (Okabe–Ito order, then neutral tones).
  static const std::vector<std::string> palette = {"#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00",
                                                   "#56b4e9", "#f0e442", "#000000", "#999999", "#8c564b"};
  return palette[index % palette.size()];
}

std::vector<std::string> series_of(const Panel& panel) {
  std::vector<std::string> out;
  std::visit(
      [&](const auto& chart) {
        using T = std::decay_t<decltype(chart)>;
        if constexpr (std::is_same_v<T, BarChart>) {
          for (auto& b : chart.bars) add_unique(out, b.series);
        } else if constexpr (std::is_same_v<T, LineChart>) {
          for (auto& p : chart.points) add_unique(out, p.series);
        } else {
          for (auto& r : chart.rows) add_unique(out, r.series);
        }
      },
      panel.chart);
  return out;
}

std::vector<std::string> categories_of(const BarChart& chart) {
  std::vector<std::string> out;
  for (auto& b : chart.bars) add_unique(out, b.category);
  return out;
}

std::vector<size_t> reference_runs(const std::vector<RunSummary>& runs) {
  std::vector<size_t> out;
  if (runs.empty()) return out;
  bool have_zero_shot = std::any_of(runs.begin(), runs.end(), [](auto& r) { return r.prompting == "instruction" && r.shots == 0; });
  std::string prompting = have_zero_shot ? "instruction" : runs[0].prompting;
  int shots = have_zero_shot ? 0 : runs[0].shots;
  for (size_t i = 0; i < runs.size(); i++)
    if (runs[i].prompting == prompting && runs[i].shots == shots) out.push_back(i);
  return out;
}

std::vector<Figure> build_figures(const std::vector<RunSummary>& runs, const std::vector<RunPair>& pairs,
                                  const std::vector<PairedDelta>& deltas) {
  std::vector<Figure> out;
  if (runs.empty()) return out;
  std::vector<size_t> all(runs.size());
  for (size_t i = 0; i < all.size(); i++) all[i] = i;
  all = display_order(runs, all);
  std::vector<size_t> ref = display_order(runs, reference_runs(runs));
  out.push_back(precision_figure(runs, ref));
  if (auto f = model_size_figure(runs, ref)) out.push_back(*f);
  out.push_back(prompt_length_figure(runs, all));
  if (auto f = prompting_figure(runs, all, runs[ref.front()].shots)) out.push_back(*f);
  if (auto f = paired_figure(runs, pairs, deltas)) out.push_back(*f);
  return out;
}

}  // namespace bq::report
