#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"

namespace bq::eval {

std::vector<std::string> metric_names(TaskType type) {
  switch (type) {
    case TaskType::ner: return {"precision", "recall", "f1", "unparsed_rate"};
    case TaskType::mlc: return {"macro_f1", "micro_f1", "unparsed_rate"};
    case TaskType::re: return {"macro_f1", "micro_f1_positive", "unparsed_rate"};
    case TaskType::qa: return {"accuracy", "macro_f1", "unparsed_rate"};
  }
  return {};
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }
static double f1(double tp, double fp, double fn) { return ratio(2 * tp, 2 * tp + fp + fn); }

std::map<std::string, double> compute_metrics(const MetricSpec& spec, const std::vector<Scored>& examples,
                                              const std::vector<uint32_t>* idx) {
  size_t n = idx ? idx->size() : examples.size();
  auto at = [&](size_t i) -> const Scored& { return examples[idx ? (*idx)[i] : i]; };
  std::map<std::string, double> m;
  size_t unparsed = 0;
  for (size_t i = 0; i < n; i++) unparsed += !at(i).parsed;
  m["unparsed_rate"] = ratio(double(unparsed), double(n));

  if (spec.type == TaskType::ner) {
    double tp = 0, fp = 0, fn = 0;
    for (size_t i = 0; i < n; i++) {
      tp += at(i).tp;
      fp += at(i).fp;
      fn += at(i).fn;
    }
    m["precision"] = ratio(tp, tp + fp);
    m["recall"] = ratio(tp, tp + fn);
    m["f1"] = f1(tp, fp, fn);
    return m;
  }

  int L = spec.n_labels;
  std::vector<double> tp(L), fp(L), fn(L);
  size_t correct = 0;
  std::vector<char> g(L), p(L);
  for (size_t i = 0; i < n; i++) {
    const Scored& s = at(i);
    std::fill(g.begin(), g.end(), 0);
    std::fill(p.begin(), p.end(), 0);
    for (int l : s.gold) g[l] = 1;
    for (int l : s.pred) p[l] = 1;
    for (int l = 0; l < L; l++) {
      tp[l] += g[l] && p[l];
      fp[l] += !g[l] && p[l];
      fn[l] += g[l] && !p[l];
    }
    correct += s.pred.size() == 1 && s.gold.size() == 1 && s.pred[0] == s.gold[0];
  }
  double macro = 0;
  for (int l = 0; l < L; l++) macro += f1(tp[l], fp[l], fn[l]);
  m["macro_f1"] = L ? macro / L : 0.0;
  if (spec.type == TaskType::qa) m["accuracy"] = ratio(double(correct), double(n));
  if (spec.type == TaskType::mlc || spec.type == TaskType::re) {
    double TP = 0, FP = 0, FN = 0;
    for (int l = 0; l < L; l++) {
      if (l == spec.negative) continue;  // -1 for mlc: every label counts
      TP += tp[l];
      FP += fp[l];
      FN += fn[l];
    }
    m[spec.type == TaskType::re ? "micro_f1_positive" : "micro_f1"] = f1(TP, FP, FN);
  }
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
