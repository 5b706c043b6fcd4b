// `report`: an offline HTML page, PNG figures and a Markdown summary from finished run folders.
#include <cstdio>

#include "cli/commands.h"
#include "report/report.h"

namespace bq::cli {

void register_report_commands(CLI::App& app) {
  auto options = std::make_shared<report::ReportOptions>();
  auto* cmd = app.add_subcommand("report", "write OUT/report.html (tables, charts, run configurations; opens offline), "
                                           "OUT/report.md and PNG figures from run folders");
  cmd->add_option("run_dirs", options->run_dirs,
                  "run folders written by eval, or folders of them; folders that are not finished runs are skipped "
                  "and listed")
      ->required();
  cmd->add_option("--out", options->out_dir, "output folder")->required();
  cmd->add_option("--seed", options->seed, "seed of the paired bootstrap (quantized vs full precision)");
  cmd->add_option("--bootstrap", options->resamples, "paired bootstrap resamples");
  cmd->callback([options] {
    options->scripts = report::embedded_chart_scripts();
    if (!options->scripts.complete())
      std::fprintf(stderr, "biomedq: report: this build has no chart JavaScript (scripts/fetch-report-assets.sh, then "
                           "rebuild); the page will have tables and PNG links but no charts\n");
    auto files = report::write_report(*options);
    for (auto& s : files.skipped) std::fprintf(stderr, "biomedq: report: skipped %s\n", s.c_str());
    std::printf("%s\n%s\n", files.html.string().c_str(), files.markdown.string().c_str());
    for (auto& png : files.pngs) std::printf("%s\n", png.string().c_str());
  });
}

}  // namespace bq::cli
