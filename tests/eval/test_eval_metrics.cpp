// Metrics against hand-computed values (sklearn conventions: fixed label set, zero_division=0), and the bootstrap.
#include <gtest/gtest.h>

#include <random>

#include "eval/metrics.h"

using namespace bq::eval;

static Scored one(int gold, int pred) {  // pred -1: unparsed
  Scored s;
  s.parsed = pred >= 0;
  s.gold = {gold};
  if (pred >= 0) s.pred = {pred};
  return s;
}

TEST(EvalMetrics, RelationExtractionMacroIncludesNegativeMicroExcludesIt) {
  // labels A=0, B=1, negative=2. Per label: A tp1 fp1 fn1 -> 1/2; B tp1 fp1 fn1 -> 1/2; neg tp1 fp0 fn1 -> 2/3.
  std::vector<Scored> ex = {one(0, 0), one(0, 1), one(1, 1), one(2, 0), one(2, 2), one(1, -1)};
  auto m = compute_metrics({task_preset("re").metrics, 3, 2}, ex);
  EXPECT_NEAR(m["macro_f1"], (0.5 + 0.5 + 2.0 / 3) / 3, 1e-12);
  EXPECT_NEAR(m["micro_f1_positive"], 0.5, 1e-12);  // TP 2, FP 2, FN 2
  EXPECT_NEAR(m["unparsed_rate"], 1.0 / 6, 1e-12);
}

TEST(EvalMetrics, QaAccuracyAndMacroWithAbsentPrediction) {
  // yes=0 no=1 maybe=2: yes 2/3, no 2/3, maybe (never predicted, once gold) 0.
  std::vector<Scored> ex = {one(0, 0), one(0, 1), one(1, 1), one(2, -1)};
  auto m = compute_metrics({task_preset("qa").metrics, 3, -1}, ex);
  EXPECT_NEAR(m["accuracy"], 0.5, 1e-12);
  EXPECT_NEAR(m["macro_f1"], 4.0 / 9, 1e-12);
  // A label with neither gold nor predicted positives scores 0 and still counts in the average.
  auto m4 = compute_metrics({task_preset("qa").metrics, 4, -1}, ex);
  EXPECT_NEAR(m4["macro_f1"], 4.0 / 12, 1e-12);
}

TEST(EvalMetrics, MultiLabelMacroAndMicro) {
  auto doc = [](std::vector<int> g, std::vector<int> p, bool parsed = true) {
    Scored s;
    s.gold = g;
    s.pred = p;
    s.parsed = parsed;
    return s;
  };
  // a: tp1 -> 1; b: tp1 fn1 -> 2/3; c: fp1 fn1 -> 0. micro: TP2 FP1 FN2 -> 4/7.
  std::vector<Scored> ex = {doc({0, 1}, {0}), doc({1}, {1, 2}), doc({}, {}), doc({2}, {}, false)};
  auto m = compute_metrics({task_preset("mlc").metrics, 3, -1}, ex);
  EXPECT_NEAR(m["macro_f1"], (1 + 2.0 / 3 + 0) / 3, 1e-12);
  EXPECT_NEAR(m["micro_f1"], 4.0 / 7, 1e-12);
  EXPECT_NEAR(m["unparsed_rate"], 0.25, 1e-12);
}

TEST(EvalMetrics, NerStrictMicro) {
  auto sent = [](int tp, int fp, int fn) {
    Scored s;
    s.parsed = true;
    s.tp = tp, s.fp = fp, s.fn = fn;
    return s;
  };
  auto m = compute_metrics({task_preset("ner").metrics, 0, -1}, {sent(1, 1, 1), sent(0, 0, 1), sent(0, 1, 0)});
  EXPECT_NEAR(m["precision"], 1.0 / 3, 1e-12);
  EXPECT_NEAR(m["recall"], 1.0 / 3, 1e-12);
  EXPECT_NEAR(m["f1"], 1.0 / 3, 1e-12);  // 2*1 / (2*1 + 2 + 2)
  auto empty = compute_metrics({task_preset("ner").metrics, 0, -1}, {sent(0, 0, 3)});
  EXPECT_EQ(empty["precision"], 0.0);
  EXPECT_EQ(empty["f1"], 0.0);
}

TEST(EvalMetrics, PercentileInterpolates) {
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4, 5}, 0.975), 4.9);
}

static std::vector<Scored> coin_flips(size_t n, double p, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Scored> ex;
  for (size_t i = 0; i < n; i++) {
    bool right = double(rng() % 1000000) / 1e6 < p;
    ex.push_back(one(0, right ? 0 : 1));
    ex.back().id = std::to_string(i);
  }
  return ex;
}

TEST(EvalBootstrap, ReproducibleBySeedAndSensibleWidth) {
  auto ex = coin_flips(400, 0.7, 5);
  MetricSpec spec{task_preset("qa").metrics, 2, -1};
  auto a = bootstrap_metrics(spec, ex, 42), b = bootstrap_metrics(spec, ex, 42), c = bootstrap_metrics(spec, ex, 43);
  EXPECT_EQ(a["accuracy"].lo, b["accuracy"].lo);
  EXPECT_EQ(a["accuracy"].hi, b["accuracy"].hi);
  EXPECT_NE(a["accuracy"].lo + a["accuracy"].hi, c["accuracy"].lo + c["accuracy"].hi);
  double acc = a["accuracy"].value;
  EXPECT_LE(a["accuracy"].lo, acc);
  EXPECT_GE(a["accuracy"].hi, acc);
  // Normal approximation: 2 * 1.96 * sqrt(p(1-p)/n) = 0.0898 for p = 0.7, n = 400.
  EXPECT_NEAR(a["accuracy"].hi - a["accuracy"].lo, 0.0898, 0.015);
}

TEST(EvalBootstrap, CoverageNearNominal) {
  MetricSpec spec{task_preset("qa").metrics, 2, -1};
  int covered = 0, trials = 100;
  for (int t = 0; t < trials; t++) {
    auto iv = bootstrap_metrics(spec, coin_flips(200, 0.7, 1000 + t), 7 + t, 400)["accuracy"];
    covered += iv.lo <= 0.7 && 0.7 <= iv.hi;
  }
  EXPECT_GE(covered, 85);  // 95% nominal; binomial(100, 0.95) falls below 86 with probability < 0.5%
  EXPECT_LE(covered, 100);
}

TEST(EvalBootstrap, PairedDifference) {
  auto a = coin_flips(300, 0.6, 9);
  auto same = paired_bootstrap({task_preset("qa").metrics, 2, -1}, a, a, 1);
  EXPECT_EQ(same["accuracy"].value, 0.0);
  EXPECT_EQ(same["accuracy"].lo, 0.0);
  EXPECT_EQ(same["accuracy"].hi, 0.0);
  auto b = a;
  for (size_t i = 0; i < b.size(); i += 3) b[i] = one(0, 0), b[i].id = a[i].id;  // B fixes some answers
  MetricSpec spec{task_preset("qa").metrics, 2, -1};
  auto d = paired_bootstrap(spec, a, b, 1);
  double direct = compute_metrics(spec, b)["accuracy"] - compute_metrics(spec, a)["accuracy"];
  EXPECT_NEAR(d["accuracy"].value, direct, 1e-12);
  EXPECT_GT(d["accuracy"].lo, 0.0);  // B is never worse on any example, and better on some
  b[0].id = "other";
  EXPECT_ANY_THROW(paired_bootstrap(spec, a, b, 1));
}
