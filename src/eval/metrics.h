// Scores per task type (the metrics of the biomedical benchmark of Chen et al. 2025, over a fixed label set) and
// bootstrap confidence intervals over examples.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "eval/task.h"

namespace bq::eval {

// One evaluated example, reduced to what the metrics need.
struct Scored {
  std::string id;
  bool parsed = false;
  std::vector<int> gold, pred;  // label gold: label indices (sets; one each with a one-label extractor)
  int tp = 0, fp = 0, fn = 0;   // span gold: strict entity matches in this sentence
};

// What a task reports: the named metrics (metric_table()), unparsed_rate always among them.
struct MetricSpec {
  std::vector<std::string> metrics;
  int n_labels = 0;
  int negative = -1;  // index of the task's negative label (micro_f1_positive leaves it out), -1 when none
};
MetricSpec metric_spec(const TaskConfig& task);

// What every metric is computed from, in one pass over the (resampled) examples.
struct MetricCounts {
  size_t n = 0, unparsed = 0;
  size_t correct = 0;                     // one gold label, one predicted, the same
  double entity_tp = 0, entity_fp = 0, entity_fn = 0;
  std::vector<double> tp, fp, fn;         // per label
};

// A metric, named in a task file's `metrics:` list; all lie in [0, 1]. F1 follows sklearn with zero_division=0: a
// label with no gold and no predicted positives scores 0.
//   precision, recall, f1: strict entity matches, micro over entities (span gold)
//   macro_f1: label-wise over the fixed label set; micro_f1: over all labels; micro_f1_positive: over all labels
//     but the negative one (BLUE's relation extraction score); accuracy: exact match of one label
//   unparsed_rate: answers nothing could be read from (every task reports it)
struct Metric {
  std::string_view name;
  GoldKind gold;                        // the gold it needs (any: either)
  bool one_label;                       // needs an extractor that answers one label
  std::vector<std::string_view> needs;  // task file keys it reads that must be there
  double (*value)(const MetricCounts& counts, const MetricSpec& spec);
};
const std::vector<Metric>& metric_table();
// The metric named `name`; Error naming the known ones when there is none.
const Metric& metric(std::string_view name);

// spec's metrics (and unparsed_rate) over `examples`, or over the multiset examples[idx[i]] when idx is given (a
// bootstrap resample).
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
