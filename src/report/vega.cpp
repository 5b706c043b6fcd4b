#include "report/vega.h"

#include <algorithm>

namespace bq::report {

namespace {

using nlohmann::json;

// The colour scale of a panel: its series in order with the palette the PNGs use.
json color_encoding(const std::vector<std::string>& series, const std::string& title) {
  json range = json::array();
  for (size_t i = 0; i < series.size(); i++) range.push_back(series_color(i));
  return {{"field", "series"}, {"type", "nominal"}, {"title", title}, {"scale", {{"domain", series}, {"range", range}}}};
}

json bar_spec(const BarChart& chart, const std::vector<std::string>& series) {
  json values = json::array();
  for (auto& b : chart.bars) {
    json v = {{"category", b.category}, {"series", b.series}, {"value", b.value}};
    if (b.lo && b.hi) v.update({{"lo", *b.lo}, {"hi", *b.hi}});
    values.push_back(v);
  }
  json x = {{"field", "category"}, {"type", "nominal"}, {"sort", categories_of(chart)}, {"title", nullptr},
            {"axis", {{"labelAngle", -35}, {"labelLimit", 220}}}};
  json offset = {{"field", "series"}, {"sort", series}};
  json tooltip = json::array({{{"field", "category"}}, {{"field", "series"}}, {{"field", "value"}, {"format", ".3f"}},
                              {{"field", "lo"}, {"format", ".3f"}}, {{"field", "hi"}, {"format", ".3f"}}});
  json bars = {{"mark", "bar"},
               {"encoding",
                {{"x", x},
                 {"xOffset", offset},
                 {"y", {{"field", "value"}, {"type", "quantitative"}, {"title", chart.y_label}}},
                 {"color", color_encoding(series, "precision")},
                 {"tooltip", tooltip}}}};
  // Rules sit at the start of their band unless told otherwise; error bars belong in the middle of their bar.
  json centred_x = x, centred_offset = offset;
  centred_x["bandPosition"] = 0.5;
  centred_offset["bandPosition"] = 0.5;
  json errors = {{"transform", json::array({{{"filter", "isValid(datum.lo)"}}})},
                 {"mark", {{"type", "rule"}, {"color", "#333333"}}},
                 {"encoding",
                  {{"x", centred_x},
                   {"xOffset", centred_offset},
                   {"y", {{"field", "lo"}, {"type", "quantitative"}}},
                   {"y2", {{"field", "hi"}}}}}};
  // With xOffset the width step is one bar's, not one category's.
  return {{"data", {{"values", values}}}, {"width", {{"step", 16}}}, {"height", 220},
          {"layer", json::array({bars, errors})}};
}

json line_spec(const LineChart& chart, const std::vector<std::string>& series) {
  json values = json::array();
  for (auto& p : chart.points) values.push_back({{"series", p.series}, {"x", p.x}, {"y", p.y}, {"label", p.label}});
  json x = {{"field", "x"}, {"type", "quantitative"}, {"title", chart.x_label}, {"scale", {{"zero", false}}}};
  if (chart.log_x) {
    x["scale"]["type"] = "log";
    x["axis"] = {{"format", "~s"}};  // parameter counts: 100M, 1G
  }
  json encoding = {{"x", x},
                   {"y", {{"field", "y"}, {"type", "quantitative"}, {"title", chart.y_label}, {"scale", {{"zero", false}}}}},
                   {"color", color_encoding(series, "series")},
                   {"tooltip", json::array({{{"field", "series"}}, {{"field", "label"}}, {{"field", "x"}, {"format", ".4~g"}},
                                            {{"field", "y"}, {"format", ".4~g"}}})}};
  json line = {{"mark", {{"type", "line"}, {"point", {{"filled", true}, {"size", 60}}}}}, {"encoding", encoding}};
  line["encoding"]["order"] = {{"field", "x"}};
  return {{"data", {{"values", values}}}, {"width", 520}, {"height", 240}, {"layer", json::array({line})}};
}

json forest_spec(const ForestChart& chart, const std::vector<std::string>& series) {
  json values = json::array(), order = json::array();
  for (auto& r : chart.rows) {
    values.push_back({{"label", r.label}, {"series", r.series}, {"estimate", r.estimate}, {"lo", r.lo}, {"hi", r.hi},
                      {"note", r.note}});
    order.push_back(r.label);
  }
  json y = {{"field", "label"}, {"type", "nominal"}, {"sort", order}, {"title", nullptr}, {"axis", {{"labelLimit", 420}}}};
  json tooltip = json::array({{{"field", "label"}}, {{"field", "estimate"}, {"format", "+.2f"}},
                              {{"field", "lo"}, {"format", "+.2f"}}, {{"field", "hi"}, {"format", "+.2f"}}, {{"field", "note"}}});
  json zero = {{"data", {{"values", json::array({{{"zero", 0}}})}}},
               {"mark", {{"type", "rule"}, {"strokeDash", {4, 4}}, {"color", "#666666"}}},
               {"encoding", {{"x", {{"field", "zero"}, {"type", "quantitative"}}}}}};
  json x_scale = json::object();
  bool all_zero = std::all_of(chart.rows.begin(), chart.rows.end(), [](auto& r) { return r.lo == 0 && r.hi == 0; });
  if (all_zero) x_scale["domain"] = {-1, 1};  // as the PNG: the zero line in the middle, not at an edge
  json intervals = {{"mark", {{"type", "rule"}, {"strokeWidth", 2}}},
                    {"encoding",
                     {{"y", y},
                      {"x", {{"field", "lo"}, {"type", "quantitative"}, {"title", chart.x_label}, {"scale", x_scale}}},
                      {"x2", {{"field", "hi"}}},
                      {"color", color_encoding(series, "precision")},
                      {"tooltip", tooltip}}}};
  json points = {{"mark", {{"type", "point"}, {"filled", true}, {"size", 70}}},
                 {"encoding",
                  {{"y", y},
                   {"x", {{"field", "estimate"}, {"type", "quantitative"}}},
                   {"color", color_encoding(series, "precision")},
                   {"tooltip", tooltip}}}};
  return {{"data", {{"values", values}}}, {"width", 420}, {"height", {{"step", 22}}},
          {"layer", json::array({zero, intervals, points})}};
}

}  // namespace

nlohmann::json vega_lite_spec(const Figure& figure) {
  json panels = json::array();
  for (auto& panel : figure.panels) {
    std::vector<std::string> series = series_of(panel);
    json spec = std::visit(
        [&](const auto& chart) {
          using T = std::decay_t<decltype(chart)>;
          if constexpr (std::is_same_v<T, BarChart>) return bar_spec(chart, series);
          else if constexpr (std::is_same_v<T, LineChart>) return line_spec(chart, series);
          else return forest_spec(chart, series);
        },
        panel.chart);
    spec["title"] = panel.title;
    panels.push_back(spec);
  }
  return {{"$schema", "https://vega.github.io/schema/vega-lite/v5.json"},
          {"description", figure.title},
          {"vconcat", panels},
          {"resolve", {{"scale", {{"color", "independent"}}}}},
          {"config", {{"font", "sans-serif"}, {"view", {{"stroke", nullptr}}}}}};
}

}  // namespace bq::report
