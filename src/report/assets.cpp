#include "report/assets.h"

#include <cstddef>

#ifdef BIOMEDQ_HAVE_REPORT_ASSETS
// Defined in the build's generated report_assets.cpp (cmake/embed-report-assets.cmake).
extern const unsigned char bq_report_vega_js[];
extern const size_t bq_report_vega_js_size;
extern const unsigned char bq_report_vega_lite_js[];
extern const size_t bq_report_vega_lite_js_size;
extern const unsigned char bq_report_vega_embed_js[];
extern const size_t bq_report_vega_embed_js_size;
#endif

namespace bq::report {

ChartScripts embedded_chart_scripts() {
#ifdef BIOMEDQ_HAVE_REPORT_ASSETS
  auto view = [](const unsigned char* bytes, size_t n) { return std::string_view(reinterpret_cast<const char*>(bytes), n); };
  return {view(bq_report_vega_js, bq_report_vega_js_size), view(bq_report_vega_lite_js, bq_report_vega_lite_js_size),
          view(bq_report_vega_embed_js, bq_report_vega_embed_js_size)};
#else
  return {};
#endif
}

}  // namespace bq::report
