#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"
#include "eval/named_table.h"

namespace bq::eval {

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }
static double f1(double tp, double fp, double fn) { return ratio(2 * tp, 2 * tp + fp + fn); }

// Micro F1 over the labels, leaving out `skip` (-1: none).
static double micro_f1(const MetricCounts& c, int skip) {
  double TP = 0, FP = 0, FN = 0;
  for (int l = 0; l < int(c.tp.size()); l++) {
    if (l == skip) continue;
    TP += c.tp[l];
    FP += c.fp[l];
    FN += c.fn[l];
  }
  return f1(TP, FP, FN);
}

const std::vector<Metric>& metric_table() {
  using C = const MetricCounts&;
  using S = const MetricSpec&;
  static const std::vector<Metric> table = {
      {"precision", GoldKind::spans, false, {}, [](C c, S) { return ratio(c.entity_tp, c.entity_tp + c.entity_fp); }},
      {"recall", GoldKind::spans, false, {}, [](C c, S) { return ratio(c.entity_tp, c.entity_tp + c.entity_fn); }},
      {"f1", GoldKind::spans, false, {}, [](C c, S) { return f1(c.entity_tp, c.entity_fp, c.entity_fn); }},
      {"macro_f1", GoldKind::labels, false, {},
       [](C c, S) {
         double macro = 0;
         for (size_t l = 0; l < c.tp.size(); l++) macro += f1(c.tp[l], c.fp[l], c.fn[l]);
         return c.tp.empty() ? 0.0 : macro / double(c.tp.size());
       }},
      {"micro_f1", GoldKind::labels, false, {}, [](C c, S) { return micro_f1(c, -1); }},
      {"micro_f1_positive", GoldKind::labels, false, {"negative_label"}, [](C c, S s) { return micro_f1(c, s.negative); }},
      {"accuracy", GoldKind::labels, true, {}, [](C c, S) { return ratio(double(c.correct), double(c.n)); }},
      {"unparsed_rate", GoldKind::any, false, {}, [](C c, S) { return ratio(double(c.unparsed), double(c.n)); }},
  };
  return table;
}

const Metric& metric(std::string_view name) {
  if (const Metric* m = find_named(metric_table(), name)) return *m;
  fail("unknown metric '{}' (known: {})", name, known_names(metric_table()));
}

MetricSpec metric_spec(const TaskConfig& task) {
  MetricSpec spec{task.metrics, int(task.labels.size()), -1};
  if (!task.negative_label.empty())
    spec.negative = int(std::find(task.labels.begin(), task.labels.end(), task.negative_label) - task.labels.begin());
  return spec;
}

std::map<std::string, double> compute_metrics(const MetricSpec& spec, const std::vector<Scored>& examples,
                                              const std::vector<uint32_t>* idx) {
  MetricCounts c;
  c.n = idx ? idx->size() : examples.size();
  auto at = [&](size_t i) -> const Scored& { return examples[idx ? (*idx)[i] : i]; };
  const int L = spec.n_labels;
  c.tp.assign(size_t(L), 0);
  c.fp.assign(size_t(L), 0);
  c.fn.assign(size_t(L), 0);
  std::vector<char> g(L), p(L);
  for (size_t i = 0; i < c.n; i++) {
    const Scored& s = at(i);
    c.unparsed += !s.parsed;
    c.entity_tp += s.tp;
    c.entity_fp += s.fp;
    c.entity_fn += s.fn;
    std::fill(g.begin(), g.end(), 0);
    std::fill(p.begin(), p.end(), 0);
    for (int l : s.gold) g[l] = 1;
    for (int l : s.pred) p[l] = 1;
    for (int l = 0; l < L; l++) {
      c.tp[l] += g[l] && p[l];
      c.fp[l] += !g[l] && p[l];
      c.fn[l] += g[l] && !p[l];
    }
    c.correct += s.pred.size() == 1 && s.gold.size() == 1 && s.pred[0] == s.gold[0];
  }
  std::map<std::string, double> m;
  m["unparsed_rate"] = metric("unparsed_rate").value(c, spec);
  for (auto& name : spec.metrics) m[name] = metric(name).value(c, spec);
  return m;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  double pos = q * double(v.size() - 1);
  size_t lo = size_t(std::floor(pos));
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - double(lo)) * (v[hi] - v[lo]);
}

// Shared by the plain and the paired bootstrap: `stat` maps one resample of indices to metric values.
template <typename Stat>
static std::map<std::string, Interval> bootstrap(size_t n, uint64_t seed, int resamples, Stat stat) {
  std::map<std::string, Interval> out;
  std::vector<uint32_t> all(n);
  for (size_t i = 0; i < n; i++) all[i] = uint32_t(i);
  for (auto& [k, v] : stat(all)) out[k].value = out[k].lo = out[k].hi = v;
  if (n == 0 || resamples <= 0) return out;
  std::mt19937_64 rng(seed);
  std::map<std::string, std::vector<double>> draws;
  std::vector<uint32_t> idx(n);
  for (int r = 0; r < resamples; r++) {
    for (size_t i = 0; i < n; i++) idx[i] = uint32_t(rng() % n);
    for (auto& [k, v] : stat(idx)) draws[k].push_back(v);
  }
  for (auto& [k, d] : draws) {
    out[k].lo = percentile(d, 0.025);
    out[k].hi = percentile(d, 0.975);
  }
  return out;
}

std::map<std::string, Interval> bootstrap_metrics(const MetricSpec& spec, const std::vector<Scored>& examples,
                                                  uint64_t seed, int resamples) {
  return bootstrap(examples.size(), seed, resamples,
                   [&](const std::vector<uint32_t>& idx) { return compute_metrics(spec, examples, &idx); });
}

std::map<std::string, Interval> paired_bootstrap(const MetricSpec& spec, const std::vector<Scored>& a,
                                                 const std::vector<Scored>& b, uint64_t seed, int resamples) {
  if (a.size() != b.size()) fail("paired bootstrap: {} examples in run A, {} in run B", a.size(), b.size());
  for (size_t i = 0; i < a.size(); i++)
    if (a[i].id != b[i].id) fail("paired bootstrap: example {} is '{}' in run A, '{}' in run B", i, a[i].id, b[i].id);
  return bootstrap(a.size(), seed, resamples, [&](const std::vector<uint32_t>& idx) {
    auto ma = compute_metrics(spec, a, &idx), mb = compute_metrics(spec, b, &idx);
    std::map<std::string, double> d;
    for (auto& [k, v] : mb) d[k] = v - ma[k];
    return d;
  });
}

}  // namespace bq::eval
