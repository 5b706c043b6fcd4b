#include "report/report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/error.h"
#include "core/files.h"
#include "eval/run_folder.h"
#include "eval/table.h"
#include "report/figures.h"
#include "report/png.h"
#include "report/vega.h"

namespace bq::report {

namespace {

using nlohmann::json;

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// JSON inside <script>: '<' only occurs in strings, where \u003c keeps "</script>" from ending the element.
std::string script_json(const json& j) {
  std::string out;
  for (char c : j.dump()) {
    if (c == '<') out += "\\u003c";
    else out += c;
  }
  return out;
}

json prompting_key(const RunSummary& run) {
  json key = run.config.to_json();
  for (const char* k : {"model", "model_info", "tasks"}) key.erase(k);
  return key;
}

std::string group_title(const std::vector<RunSummary>& runs, const std::vector<size_t>& group) {
  const RunSummary& r = runs[group.front()];
  std::string title = fmt::format("{}, {}-shot", r.prompting, r.shots);
  if (r.config.prompts != "own") title += ", " + r.config.prompts + " prompts";
  return title;
}

// The Markdown pipe table of format_results_table as an HTML table; the lines after it become paragraphs.
std::string markdown_table_to_html(const std::string& markdown) {
  std::string html = "<table>\n", notes;
  bool header = true;
  size_t pos = 0;
  while (pos < markdown.size()) {
    size_t eol = markdown.find('\n', pos);
    if (eol == std::string::npos) eol = markdown.size();
    std::string line = markdown.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty()) continue;
    if (line.front() != '|') {
      notes += "<p class=\"legend\">" + html_escape(line) + "</p>\n";
      continue;
    }
    if (line.starts_with("|---")) continue;  // the rule under the header
    std::string tag = header ? "th" : "td";
    html += "<tr>";
    size_t cell = 1;
    while (cell < line.size()) {
      size_t bar = line.find('|', cell);
      if (bar == std::string::npos) break;
      std::string text = line.substr(cell, bar - cell);
      text.erase(0, text.find_first_not_of(' '));
      text.erase(text.find_last_not_of(' ') + 1);
      html += "<" + tag + ">" + html_escape(text) + "</" + tag + ">";
      cell = bar + 1;
    }
    html += "</tr>\n";
    header = false;
  }
  return html + "</table>\n" + notes;
}

std::string fmt_value(double v) { return fmt::format("{:.4g}", v); }

// The numbers behind one panel, as an HTML table: readable without JavaScript and checkable against the charts.
std::string panel_data_table(const Panel& panel) {
  std::string html = "<table class=\"data\">\n";
  auto row = [](const std::vector<std::string>& cells, const char* tag) {
    std::string r = "<tr>";
    for (auto& c : cells) r += fmt::format("<{0}>{1}</{0}>", tag, html_escape(c));
    return r + "</tr>\n";
  };
  std::visit(
      [&](const auto& chart) {
        using T = std::decay_t<decltype(chart)>;
        if constexpr (std::is_same_v<T, BarChart>) {
          html += row({"", "precision", chart.y_label, "95% / ± interval"}, "th");
          for (auto& b : chart.bars)
            html += row({b.category, b.series, fmt_value(b.value),
                         b.lo && b.hi ? fmt::format("[{}, {}]", fmt_value(*b.lo), fmt_value(*b.hi)) : ""},
                        "td");
        } else if constexpr (std::is_same_v<T, LineChart>) {
          html += row({"series", "run", chart.x_label, chart.y_label}, "th");
          for (auto& p : chart.points) html += row({p.series, p.label, fmt_value(p.x), fmt_value(p.y)}, "td");
        } else {
          html += row({"comparison", chart.x_label, "95% interval", "flips"}, "th");
          for (auto& r : chart.rows)
            html += row({r.label, fmt::format("{:+.2f}", r.estimate), fmt::format("[{:+.2f}, {:+.2f}]", r.lo, r.hi), r.note},
                        "td");
        }
      },
      panel.chart);
  return html + "</table>\n";
}

const char* kStyle = R"(body{font-family:sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}th,td{border:1px solid #ccc;padding:2px 6px}
td{text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}
.notice{background:#fff4d6;border:1px solid #e0b84c;padding:.6em 1em}.errors{background:#fde2e2;border:1px solid #d33;
padding:.6em 1em;white-space:pre-wrap}.legend{font-size:13px;color:#555}pre{background:#f6f6f6;padding:.6em;
overflow-x:auto;font-size:12px}code{font-size:12px}.chart{margin:1em 0}section{margin-bottom:2.5em})";

// Renders every spec into its container; any failure is written into #report-errors (what scripts/check-report.sh
// looks for), and body[data-rendered] marks the end.
const char* kRenderScript = R"(
(function () {
  var errors = document.getElementById('report-errors');
  function report(where, e) {
    errors.hidden = false;
    errors.textContent += where + ': ' + (e && e.message ? e.message : String(e)) + '\n';
  }
  window.addEventListener('error', function (e) { report('page', e.message); });
  var specs = JSON.parse(document.getElementById('report-specs').textContent);
  var pending = Object.keys(specs).map(function (id) {
    return vegaEmbed('#fig-' + id, specs[id], {actions: false, renderer: 'svg'}).catch(function (e) { report(id, e); });
  });
  Promise.all(pending).then(function () { document.body.setAttribute('data-rendered', 'true'); });
})();
)";

std::string inline_script(std::string_view name, std::string_view code) {
  std::string lower(code);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (lower.find("</script") != std::string::npos)
    fail("embedded {} holds \"</script\" and cannot be inlined into the page", name);
  return fmt::format("<script>/* {} */\n{}\n</script>\n", name, code);
}

struct Tables {
  std::vector<std::string> titles, markdown;
};

Tables build_tables(const std::vector<RunSummary>& runs) {
  Tables t;
  auto groups = table_groups(runs);
  size_t reference = reference_runs(runs).front();
  std::stable_partition(groups.begin(), groups.end(), [&](const std::vector<size_t>& g) {
    return std::find(g.begin(), g.end(), reference) != g.end();
  });
  for (auto& group : groups) {
    std::vector<fs::path> dirs;
    for (size_t i : group) dirs.push_back(runs[i].dir);
    t.titles.push_back(group_title(runs, group));
    t.markdown.push_back(eval::format_results_table(dirs, eval::TableFormat::markdown));
  }
  return t;
}

std::string runs_html(const std::vector<RunSummary>& runs) {
  std::string html;
  for (auto& r : runs) {
    html += fmt::format("<h3>{}</h3>\n<p>Folder: <code>{}</code></p>\n", html_escape(r.label()), html_escape(r.dir.string()));
    if (!r.command.empty()) html += fmt::format("<p>Command: <code>{}</code></p>\n", html_escape(r.command));
    else html += "<p>Command: not recorded (a run from before biomedq recorded it).</p>\n";
    html += fmt::format("<details><summary>Configuration (results.json config)</summary><pre>{}</pre></details>\n",
                        html_escape(r.config.to_json().dump(2)));
  }
  return html;
}

std::string render_html(const std::vector<RunSummary>& runs, const std::vector<std::string>& skipped,
                        const Tables& tables, const std::vector<Figure>& figures, const ChartScripts& scripts) {
  bool charts = scripts.complete();
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                     "<title>biomedq report</title>\n<style>" + std::string(kStyle) + "</style>\n";
  if (charts)
    html += inline_script("vega", scripts.vega) + inline_script("vega-lite", scripts.vega_lite) +
            inline_script("vega-embed", scripts.vega_embed);
  html += "</head>\n<body>\n<h1>biomedq report</h1>\n";
  html += fmt::format("<p>{} runs. Every number traces to a run folder and the command that made it (see "
                      "<a href=\"#runs\">Runs</a>). Figures also as PNG files beside this page; the same summary in "
                      "<a href=\"report.md\">report.md</a>.</p>\n", runs.size());
  if (!charts)
    html += "<div id=\"report-notice\" class=\"notice\">Charts are not available: this biomedq was built without the "
            "chart JavaScript (run scripts/fetch-report-assets.sh, then rebuild). The data tables below hold every "
            "number; the PNG figures are beside this page.</div>\n";
  html += "<div id=\"report-errors\" class=\"errors\" hidden></div>\n";
  if (!skipped.empty()) {
    html += "<div id=\"report-skipped\" class=\"notice\">Left out, not finished runs:<ul>\n";
    for (auto& s : skipped) html += "<li><code>" + html_escape(s) + "</code></li>\n";
    html += "</ul></div>\n";
  }
  html += "<h2>Table 1: memory, latency and score</h2>\n";
  // The reference configuration's table first and open; the others folded, so the figures stay near the top.
  for (size_t i = 0; i < tables.titles.size(); i++) {
    if (i == 0) html += "<h3>" + html_escape(tables.titles[i]) + "</h3>\n" + markdown_table_to_html(tables.markdown[i]);
    else html += "<details><summary>" + html_escape(tables.titles[i]) + "</summary>\n" + markdown_table_to_html(tables.markdown[i]) + "</details>\n";
  }
  html += "<h2>Figures</h2>\n";
  json specs = json::object();
  for (auto& f : figures) {
    html += fmt::format("<section id=\"{0}\">\n<h3>{1}</h3>\n<p>{2}</p>\n", f.id, html_escape(f.title), html_escape(f.caption));
    if (charts) {
      html += fmt::format("<div class=\"chart\" id=\"fig-{}\"></div>\n", f.id);
      specs[f.id] = vega_lite_spec(f);
    }
    html += "<ul>\n";
    for (auto& s : f.summary) html += "<li>" + html_escape(s) + "</li>\n";
    html += fmt::format("</ul>\n<p><a href=\"{0}.png\">{0}.png</a></p>\n<details{1}><summary>Data</summary>\n", f.id,
                        charts ? "" : " open");
    for (auto& p : f.panels) html += "<h4>" + html_escape(p.title) + "</h4>\n" + panel_data_table(p);
    html += "</details>\n</section>\n";
  }
  html += "<h2 id=\"runs\">Runs</h2>\n" + runs_html(runs);
  if (charts)
    html += "<script type=\"application/json\" id=\"report-specs\">" + script_json(specs) + "</script>\n<script>" +
            kRenderScript + "</script>\n";
  return html + "</body>\n</html>\n";
}

std::string render_markdown(const std::vector<RunSummary>& runs, const std::vector<std::string>& skipped,
                            const Tables& tables, const std::vector<Figure>& figures) {
  std::string md = fmt::format("# biomedq report\n\n{} runs; the interactive page is [report.html](report.html).\n\n", runs.size());
  if (!skipped.empty()) {
    md += "Left out, not finished runs:\n\n";
    for (auto& s : skipped) md += "- `" + s + "`\n";
    md += "\n";
  }
  md += "## Table 1: memory, latency and score\n\n";
  for (size_t i = 0; i < tables.titles.size(); i++) md += "### " + tables.titles[i] + "\n\n" + tables.markdown[i] + "\n";
  md += "## Figures\n\n";
  for (auto& f : figures) {
    md += fmt::format("### {}\n\n{}\n\n![{}]({}.png)\n\n", f.title, f.caption, f.title, f.id);
    for (auto& s : f.summary) md += "- " + s + "\n";
    md += "\n";
  }
  md += "## Runs\n\n";
  for (auto& r : runs) {
    md += fmt::format("### {}\n\n- folder: `{}`\n", r.label(), r.dir.string());
    md += r.command.empty() ? "- command: not recorded\n" : fmt::format("- command: `{}`\n", r.command);
    md += fmt::format("\n<details><summary>configuration (results.json config)</summary>\n\n```json\n{}\n```\n\n"
                      "</details>\n\n", r.config.to_json().dump(2));
  }
  return md;
}

}  // namespace

std::vector<std::vector<size_t>> table_groups(const std::vector<RunSummary>& runs) {
  std::vector<std::vector<size_t>> groups;
  std::vector<json> keys;
  for (size_t i = 0; i < runs.size(); i++) {
    json key = prompting_key(runs[i]);
    auto it = std::find(keys.begin(), keys.end(), key);
    if (it == keys.end()) {
      keys.push_back(key);
      groups.push_back({i});
    } else {
      groups[size_t(it - keys.begin())].push_back(i);
    }
  }
  return groups;
}

ReportFiles write_report(const ReportOptions& options) {
  if (options.run_dirs.empty()) fail("report: no run folders given");
  if (options.out_dir.empty()) fail("report: no output folder given (--out)");
  auto selection = eval::select_finished_runs(options.run_dirs);
  std::vector<RunSummary> runs;
  std::vector<std::pair<fs::path, eval::RunConfig>> configs;
  for (auto& dir : selection.finished) {
    runs.push_back(load_run(dir));
    configs.emplace_back(dir, runs.back().config);
  }
  eval::check_no_overlap(configs);  // the rule `table` applies, before any figure is drawn
  auto pairs = pair_runs(runs);
  auto deltas = paired_deltas(runs, pairs, options.seed, options.resamples);
  auto figures = build_figures(runs, pairs, deltas);
  Tables tables = build_tables(runs);

  fs::create_directories(options.out_dir);
  ReportFiles files;
  files.charts = options.scripts.complete();
  files.skipped = selection.skipped;
  for (auto& f : figures) {
    files.pngs.push_back(options.out_dir / (f.id + ".png"));
    write_file_atomic(files.pngs.back(), render_png(f));
  }
  files.markdown = options.out_dir / "report.md";
  write_file_atomic(files.markdown, render_markdown(runs, selection.skipped, tables, figures));
  files.html = options.out_dir / "report.html";
  write_file_atomic(files.html, render_html(runs, selection.skipped, tables, figures, options.scripts));
  return files;
}

}  // namespace bq::report
