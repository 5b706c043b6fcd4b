// Scores per task type (the metrics of the biomedical benchmark of Chen et al. 2025, over a fixed label set) and
// bootstrap confidence intervals over examples.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "eval/task.h"

namespace bq::eval {

// One evaluated example, reduced to what the metrics need.
struct Scored {
  std::string id;
  bool parsed = false;
  std::vector<int> gold, pred;  // label indices: mlc label sets; re/qa one gold and at most one prediction
  int tp = 0, fp = 0, fn = 0;   // ner: strict entity matches in this sentence
};

// Names reported per type, all in [0, 1]:
//   ner: precision, recall, f1 (strict, micro over entities)
//   mlc: macro_f1 (label-wise, fixed label set), micro_f1
//   re:  macro_f1 (all labels incl. the negative class), micro_f1_positive (BLUE: positive classes only)
//   qa:  accuracy, macro_f1
// and for every type: unparsed_rate.
std::vector<std::string> metric_names(TaskType type);

struct MetricSpec {
  TaskType type;
  int n_labels = 0;
  int negative = -1;  // re: index of the negative label
};

// Metrics over `examples`, or over the multiset examples[idx[i]] when idx is given (a bootstrap resample).
// F1 follows sklearn with zero_division=0: a label with no gold and no predicted positives scores 0.
std::map<std::string, double> compute_metrics(const MetricSpec& spec, const std::vector<Scored>& examples,
                                              const std::vector<uint32_t>* idx = nullptr);

struct Interval {
  double value = 0, lo = 0, hi = 0;
};

// Percentile bootstrap: `resamples` resamples of the examples with replacement, drawn by mt19937_64(seed)
// (index = draw % n, so runs are reproducible everywhere); 95% interval from the 2.5th and 97.5th percentiles
// with linear interpolation between order statistics.
std::map<std::string, Interval> bootstrap_metrics(const MetricSpec& spec, const std::vector<Scored>& examples,
                                                  uint64_t seed, int resamples = 1000);

// Paired bootstrap of (B - A): a[i] and b[i] must be the same example (pair by id first). The same resampled
// indices are used for both runs.
std::map<std::string, Interval> paired_bootstrap(const MetricSpec& spec, const std::vector<Scored>& a,
                                                 const std::vector<Scored>& b, uint64_t seed, int resamples = 1000);

// Linear-interpolation percentile (numpy's default) of unsorted values, q in [0, 1].
double percentile(std::vector<double> values, double q);

}  // namespace bq::eval
