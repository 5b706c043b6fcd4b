// The chart JavaScript (vega, vega-lite, vega-embed) compiled into the binary when the build found it in
// .deps/report-assets/ (scripts/fetch-report-assets.sh); report pages inline it so they render offline.
#pragma once
#include <string_view>

namespace bq::report {

struct ChartScripts {
  std::string_view vega, vega_lite, vega_embed;
  bool complete() const { return !vega.empty() && !vega_lite.empty() && !vega_embed.empty(); }
};

// Empty views when the build had no assets.
ChartScripts embedded_chart_scripts();

}  // namespace bq::report
