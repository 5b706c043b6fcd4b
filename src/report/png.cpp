#include "report/png.h"

#include <cairo.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "core/error.h"

namespace bq::report {

namespace {

constexpr double kWidth = 1000;
constexpr double kLegendWidth = 240;
constexpr double kTitleHeight = 40;

struct Rgb {
  double r, g, b;
};

Rgb parse_hex(const std::string& hex) {
  auto byte = [&](size_t at) { return double(std::stoi(hex.substr(at, 2), nullptr, 16)) / 255.0; };
  return {byte(1), byte(3), byte(5)};
}

void set_color(cairo_t* cr, const std::string& hex) {
  Rgb c = parse_hex(hex);
  cairo_set_source_rgb(cr, c.r, c.g, c.b);
}

enum class Align { left, center, right };

void draw_text(cairo_t* cr, const std::string& text, double x, double y, double size, Align align = Align::left,
               bool bold = false, double angle = 0) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t ext;
  cairo_text_extents(cr, text.c_str(), &ext);
  double dx = align == Align::left ? 0 : align == Align::center ? -ext.x_advance / 2 : -ext.x_advance;
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, angle);
  cairo_move_to(cr, dx, size * 0.35);  // vertically centred on y
  cairo_show_text(cr, text.c_str());
  cairo_restore(cr);
}

// "Nice" tick values (1, 2 or 5 times a power of ten) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target = 5) {
  if (!(hi > lo)) hi = lo + 1;
  double raw = (hi - lo) / target, mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag * (raw / mag < 1.5 ? 1 : raw / mag < 3.5 ? 2 : raw / mag < 7.5 ? 5 : 10);
  std::vector<double> ticks;
  double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
  for (double k = first; k <= last; k++) ticks.push_back(k * step == 0 ? 0 : k * step);  // no "-0"
  return ticks;
}

std::string tick_label(double v) { return fmt::format("{:.4g}", v); }

std::string short_count(double n) {
  if (n >= 1e9) return fmt::format("{:.3g}B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.3g}M", n / 1e6);
  if (n >= 1e3) return fmt::format("{:.3g}K", n / 1e3);
  return fmt::format("{:.3g}", n);
}

// A linear map from data to pixels.
struct Scale {
  double d0, d1, p0, p1;
  double operator()(double v) const { return p0 + (v - d0) / (d1 - d0) * (p1 - p0); }
};

struct Box {
  double x, y, w, h;  // the plotting area
};

void draw_value_axis_y(cairo_t* cr, const Box& box, const Scale& y, const std::vector<double>& ticks, const std::string& label) {
  cairo_set_line_width(cr, 1);
  for (double t : ticks) {
    double py = std::round(y(t)) + 0.5;
    set_color(cr, "#e4e4e4");
    cairo_move_to(cr, box.x, py);
    cairo_line_to(cr, box.x + box.w, py);
    cairo_stroke(cr);
    set_color(cr, "#333333");
    draw_text(cr, tick_label(t), box.x - 6, py, 11, Align::right);
  }
  draw_text(cr, label, box.x - 55, box.y + box.h / 2, 12, Align::center, false, -M_PI / 2);
}

void draw_legend(cairo_t* cr, const std::vector<std::string>& series, double x, double y) {
  for (size_t i = 0; i < series.size(); i++) {
    set_color(cr, series_color(i));
    cairo_rectangle(cr, x, y + 20 * double(i) - 6, 12, 12);
    cairo_fill(cr);
    set_color(cr, "#333333");
    draw_text(cr, series[i], x + 18, y + 20 * double(i), 12);
  }
}

double bar_height() { return 330; }
double line_height() { return 300; }
double forest_height(const ForestChart& c) { return 90 + 24 * double(c.rows.size()); }

double panel_height(const Panel& p) {
  if (auto* f = std::get_if<ForestChart>(&p.chart)) return forest_height(*f);
  return std::holds_alternative<BarChart>(p.chart) ? bar_height() : line_height();
}

void draw_bars(cairo_t* cr, const BarChart& chart, const std::vector<std::string>& series, double top) {
  Box box{80, top + 30, kWidth - 80 - kLegendWidth, bar_height() - 30 - 110};
  double lo = 0, hi = 0;
  for (auto& b : chart.bars) {
    lo = std::min({lo, b.value, b.lo.value_or(b.value)});
    hi = std::max({hi, b.value, b.hi.value_or(b.value)});
  }
  auto ticks = nice_ticks(lo, hi);
  Scale y{ticks.front(), ticks.back(), box.y + box.h, box.y};
  draw_value_axis_y(cr, box, y, ticks, chart.y_label);
  auto categories = categories_of(chart);
  double group = box.w / double(std::max<size_t>(categories.size(), 1));
  double bar = group * 0.8 / double(std::max<size_t>(series.size(), 1));
  for (auto& b : chart.bars) {
    size_t ci = size_t(std::find(categories.begin(), categories.end(), b.category) - categories.begin());
    size_t si = size_t(std::find(series.begin(), series.end(), b.series) - series.begin());
    double x = box.x + group * double(ci) + group * 0.1 + bar * double(si);
    set_color(cr, series_color(si));
    double y0 = y(0), y1 = y(b.value);
    cairo_rectangle(cr, x + 1, std::min(y0, y1), std::max(bar - 2, 1.0), std::fabs(y1 - y0));
    cairo_fill(cr);
    if (b.lo && b.hi) {  // error bar with caps
      double cx = x + bar / 2, cap = std::min(bar / 3, 5.0);
      set_color(cr, "#222222");
      cairo_set_line_width(cr, 1.2);
      cairo_move_to(cr, cx, y(*b.lo));
      cairo_line_to(cr, cx, y(*b.hi));
      for (double v : {*b.lo, *b.hi}) {
        cairo_move_to(cr, cx - cap, y(v));
        cairo_line_to(cr, cx + cap, y(v));
      }
      cairo_stroke(cr);
    }
  }
  set_color(cr, "#333333");
  for (size_t ci = 0; ci < categories.size(); ci++)
    draw_text(cr, categories[ci], box.x + group * (double(ci) + 0.5), box.y + box.h + 10, 11, Align::right, false, -0.6);
  cairo_set_line_width(cr, 1);
  cairo_move_to(cr, box.x, std::round(y(0)) + 0.5);
  cairo_line_to(cr, box.x + box.w, std::round(y(0)) + 0.5);
  cairo_stroke(cr);
  draw_legend(cr, series, box.x + box.w + 20, box.y + 10);
}

void draw_lines(cairo_t* cr, const LineChart& chart, const std::vector<std::string>& series, double top) {
  Box box{80, top + 30, kWidth - 80 - kLegendWidth, line_height() - 30 - 60};
  auto tx = [&](double x) { return chart.log_x ? std::log10(std::max(x, 1e-12)) : x; };
  double xlo = std::numeric_limits<double>::max(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (auto& p : chart.points) {
    xlo = std::min(xlo, tx(p.x)), xhi = std::max(xhi, tx(p.x));
    ylo = std::min(ylo, p.y), yhi = std::max(yhi, p.y);
  }
  // Pad single values so a lone point sits inside the frame.
  if (xhi - xlo < 1e-12) xlo -= 0.5, xhi += 0.5;
  if (yhi - ylo < 1e-12) ylo -= std::max(std::fabs(ylo) * 0.1, 0.5), yhi += std::max(std::fabs(yhi) * 0.1, 0.5);
  auto yticks = nice_ticks(ylo, yhi);
  Scale y{yticks.front(), yticks.back(), box.y + box.h, box.y};
  double xpad = (xhi - xlo) * 0.05;
  Scale x{xlo - xpad, xhi + xpad, box.x, box.x + box.w};
  draw_value_axis_y(cr, box, y, yticks, chart.y_label);
  set_color(cr, "#333333");
  std::vector<double> xticks;
  if (chart.log_x)  // whole decades where the range holds at least two
    for (double e = std::ceil(xlo - xpad); e <= xhi + xpad; e++) xticks.push_back(e);
  if (xticks.size() < 2) xticks = nice_ticks(xlo - xpad, xhi + xpad, 6);
  for (double t : xticks) {
    if (t < xlo - xpad || t > xhi + xpad) continue;
    draw_text(cr, chart.log_x ? short_count(std::pow(10, t)) : tick_label(t), x(t), box.y + box.h + 14, 11, Align::center);
  }
  draw_text(cr, chart.x_label + (chart.log_x ? " (log scale)" : ""), box.x + box.w / 2, box.y + box.h + 38, 12, Align::center);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, box.x + 0.5, box.y + 0.5, box.w, box.h);
  cairo_stroke(cr);
  for (size_t si = 0; si < series.size(); si++) {
    std::vector<std::pair<double, double>> pts;
    for (auto& p : chart.points)
      if (p.series == series[si]) pts.push_back({x(tx(p.x)), y(p.y)});
    std::sort(pts.begin(), pts.end());
    set_color(cr, series_color(si));
    cairo_set_line_width(cr, 2);
    for (size_t i = 0; i < pts.size(); i++) {
      if (i == 0) cairo_move_to(cr, pts[i].first, pts[i].second);
      else cairo_line_to(cr, pts[i].first, pts[i].second);
    }
    cairo_stroke(cr);
    for (auto& [px, py] : pts) {
      cairo_arc(cr, px, py, 4, 0, 2 * M_PI);
      cairo_fill(cr);
    }
  }
  draw_legend(cr, series, box.x + box.w + 20, box.y + 10);
}

void draw_forest(cairo_t* cr, const ForestChart& chart, const std::vector<std::string>& series, double top) {
  constexpr double kLabels = 430;
  Box box{kLabels, top + 30, kWidth - kLabels - kLegendWidth, forest_height(chart) - 30 - 60};
  double lo = 0, hi = 0;
  for (auto& r : chart.rows) lo = std::min(lo, r.lo), hi = std::max(hi, r.hi);
  if (hi - lo < 1e-9) lo = -1, hi = 1;  // every difference zero: keep the zero line in the middle
  auto ticks = nice_ticks(lo, hi, 6);
  Scale x{ticks.front(), ticks.back(), box.x, box.x + box.w};
  cairo_set_line_width(cr, 1);
  for (double t : ticks) {
    double px = std::round(x(t)) + 0.5;
    set_color(cr, "#e4e4e4");
    cairo_move_to(cr, px, box.y);
    cairo_line_to(cr, px, box.y + box.h);
    cairo_stroke(cr);
    set_color(cr, "#333333");
    draw_text(cr, tick_label(t), px, box.y + box.h + 14, 11, Align::center);
  }
  draw_text(cr, chart.x_label, box.x + box.w / 2, box.y + box.h + 38, 12, Align::center);
  set_color(cr, "#666666");
  double dash[] = {4, 4};
  cairo_set_dash(cr, dash, 2, 0);
  cairo_move_to(cr, std::round(x(0)) + 0.5, box.y);
  cairo_line_to(cr, std::round(x(0)) + 0.5, box.y + box.h);
  cairo_stroke(cr);
  cairo_set_dash(cr, nullptr, 0, 0);
  double row_h = box.h / double(std::max<size_t>(chart.rows.size(), 1));
  for (size_t i = 0; i < chart.rows.size(); i++) {
    const ForestRow& r = chart.rows[i];
    double py = box.y + row_h * (double(i) + 0.5);
    size_t si = size_t(std::find(series.begin(), series.end(), r.series) - series.begin());
    set_color(cr, "#333333");
    draw_text(cr, r.label, box.x - 10, py, 11, Align::right);
    set_color(cr, series_color(si));
    cairo_set_line_width(cr, 2);
    cairo_move_to(cr, x(r.lo), py);
    cairo_line_to(cr, x(r.hi), py);
    cairo_stroke(cr);
    cairo_arc(cr, x(r.estimate), py, 4.5, 0, 2 * M_PI);
    cairo_fill(cr);
  }
  draw_legend(cr, series, box.x + box.w + 20, box.y + 10);
}

cairo_status_t append_bytes(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

}  // namespace

std::string render_png(const Figure& figure) {
  double height = kTitleHeight;
  for (auto& p : figure.panels) height += panel_height(p);
  std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> surface(
      cairo_image_surface_create(CAIRO_FORMAT_RGB24, int(kWidth), int(height)), cairo_surface_destroy);
  std::unique_ptr<cairo_t, decltype(&cairo_destroy)> context(cairo_create(surface.get()), cairo_destroy);
  cairo_t* cr = context.get();
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  set_color(cr, "#111111");
  draw_text(cr, figure.title, 20, 20, 16, Align::left, true);
  double top = kTitleHeight;
  for (auto& panel : figure.panels) {
    set_color(cr, "#111111");
    draw_text(cr, panel.title, 80, top + 12, 13, Align::left, true);
    auto series = series_of(panel);
    std::visit(
        [&](const auto& chart) {
          using T = std::decay_t<decltype(chart)>;
          if constexpr (std::is_same_v<T, BarChart>) draw_bars(cr, chart, series, top);
          else if constexpr (std::is_same_v<T, LineChart>) draw_lines(cr, chart, series, top);
          else draw_forest(cr, chart, series, top);
        },
        panel.chart);
    top += panel_height(panel);
  }
  if (cairo_status(cr) != CAIRO_STATUS_SUCCESS)
    fail("figure {}: cairo drawing failed: {}", figure.id, cairo_status_to_string(cairo_status(cr)));
  std::string png;
  cairo_status_t st = cairo_surface_write_to_png_stream(surface.get(), append_bytes, &png);
  if (st != CAIRO_STATUS_SUCCESS) fail("figure {}: PNG encoding failed: {}", figure.id, cairo_status_to_string(st));
  return png;
}

}  // namespace bq::report
