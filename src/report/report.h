// `biomedq report`: from finished run folders, a self-contained HTML page (tables, Vega-Lite charts with the
// chart JavaScript inlined, run configurations), a Markdown summary and one PNG per figure.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "report/assets.h"
#include "report/runs.h"

namespace bq::report {

struct ReportOptions {
  std::vector<fs::path> run_dirs;
  fs::path out_dir;
  ChartScripts scripts;     // incomplete: the page gets tables and a notice instead of charts
  uint64_t seed = 1234;     // paired bootstrap
  int resamples = 1000;
};

struct ReportFiles {
  fs::path html, markdown;
  std::vector<fs::path> pngs;
  bool charts = false;      // whether the page renders charts (the scripts were complete)
  std::vector<std::string> skipped;  // what was given or found but is no finished run, and why (also on the page)
};

// Writes OUT/report.html, OUT/report.md and OUT/<figure>.png, each atomically, from the finished runs among
// run_dirs (eval::select_finished_runs: parents are looked into, unfinished folders skipped and listed). Errors: no
// finished run, runs that overlap (eval::check_no_overlap) or cannot be paired (compare_runs).
ReportFiles write_report(const ReportOptions& options);

// The runs grouped by prompting configuration (everything in the config but the model, its precision and the
// task list), in first-seen order: each group is one Table 1.
std::vector<std::vector<size_t>> table_groups(const std::vector<RunSummary>& runs);

}  // namespace bq::report
