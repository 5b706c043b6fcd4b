// The report's figures as plain data: the Vega-Lite specs (vega.h) and the PNGs (png.h) are both drawn from
// these, so the page and the images always show the same numbers.
#pragma once
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "report/runs.h"

namespace bq::report {

// Grouped bars: one group per category, one bar per series within it, optional error bar [lo, hi].
struct Bar {
  std::string category, series;
  double value = 0;
  std::optional<double> lo, hi;
};
struct BarChart {
  std::string y_label;
  std::vector<Bar> bars;
};

// Points joined by a line per series, in x order.
struct Point {
  std::string series;
  double x = 0, y = 0;
  std::string label;  // shown in the tooltip (and the data table)
};
struct LineChart {
  std::string x_label, y_label;
  bool log_x = false;
  std::vector<Point> points;
};

// One row per estimate with its interval, a reference line at zero.
struct ForestRow {
  std::string label, series;
  double estimate = 0, lo = 0, hi = 0;
  std::string note;  // e.g. flip counts
};
struct ForestChart {
  std::string x_label;
  std::vector<ForestRow> rows;
};

struct Panel {
  std::string title;
  std::variant<BarChart, LineChart, ForestChart> chart;
};

struct Figure {
  std::string id;       // file and element name: "precision" -> precision.png, #fig-precision
  std::string title, caption;
  std::vector<Panel> panels;          // stacked vertically
  std::vector<std::string> summary;   // bullets for the Markdown and HTML summaries
};

// Series (or categories) in first-seen order, precisions from full to fewest bits.
std::vector<std::string> series_of(const Panel& panel);
std::vector<std::string> categories_of(const BarChart& chart);

// The study's figures from loaded runs: score, memory and latency by precision (Figure 2), score and memory by
// model size (4), memory by prompt length (5), score by prompting strategy (6), and the forest plot of paired
// quantized-minus-full differences. A figure whose data the runs do not hold is left out.
std::vector<Figure> build_figures(const std::vector<RunSummary>& runs, const std::vector<RunPair>& pairs,
                                  const std::vector<PairedDelta>& deltas);

// The runs of the reference prompting configuration (zero-shot instruction where present, else the first run's):
// the ones Figure 2 and the headline table show.
std::vector<size_t> reference_runs(const std::vector<RunSummary>& runs);

}  // namespace bq::report

namespace bq::report {

// Series colours shared by the page and the PNGs (hex "#rrggbb"), by series index, repeating after ten.
const std::string& series_color(size_t index);

}  // namespace bq::report
