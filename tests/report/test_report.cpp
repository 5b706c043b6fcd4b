// `report`: which runs pair up and their paired differences, the figures' data, the files written (atomically;
// a real PNG; a page with the chart JavaScript inlined and nothing loaded from the network), errors on bad
// input, and the page rendered by headless Chromium (skipped where chromium is not installed).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "eval/run.h"
#include "eval/table.h"
#include "report/figures.h"
#include "report/report.h"
#include "test_util.h"

using namespace bq::report;
using bq::test::error_of;
using nlohmann::json;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

const char* kLabels[] = {"yes", "no", "maybe"};
constexpr int kQuestions = 6;

// One yes/no/maybe task of kQuestions test questions "Is itemN fine?" (gold kLabels[N % 3]) and 3 train ones.
fs::path make_fixture(const std::string& name) {
  fs::path root = bq::test::temp_dir(name);
  write(root / "tasks/tiny.yaml", bq::test::kTinyQaTaskYaml);
  std::string test = "id\ttext\tlabel\n", train = "id\ttext\tlabel\n";
  for (int i = 0; i < kQuestions; i++) test += fmt::format("q{}\tIs item{} fine?\t{}\n", i, i, kLabels[i % 3]);
  for (int i = 0; i < 3; i++) train += fmt::format("t{}\tIs train{} fine?\t{}\n", i, i, kLabels[i]);
  write(root / "data/Tiny/test.tsv", test);
  write(root / "data/Tiny/train.tsv", train);
  return root;
}

// Answers the question the prompt ends with: the gold label, except for the items in `wrong`.
struct ScriptedModel : bq::TextGenerator {
  std::set<int> wrong;
  double peak_bytes = 1e9, parameters = 1e8;

  std::string format_prompt(const std::vector<bq::ChatTurn>& turns, bool, std::optional<bool>) const override {
    return turns[0].content;
  }
  std::vector<bq::GenerationResult> generate(const std::vector<std::string>& prompts,
                                             const std::vector<bq::SamplingOptions>&,
                                             const bq::BatchControl& control) override {
    std::vector<bq::GenerationResult> out;
    for (auto& p : prompts) {
      int item = std::stoi(p.substr(p.rfind("item") + 4));
      std::string gold = kLabels[item % 3];
      bq::GenerationResult r;
      r.text = wrong.contains(item) ? (gold == "yes" ? "Answer: no" : "Answer: yes") : "Answer: " + gold;
      r.prompt_tokens = int(p.size() / 4);
      r.generated_tokens = 2;
      r.prefill_ms = 5 + item;
      r.decode_ms = 10;
      r.finish_reason = "eos";
      out.push_back(r);
      if (control.on_finish) control.on_finish(out.size() - 1, r);
    }
    return out;
  }
  std::string model_name() const override { return "scripted"; }
  int count_tokens(const std::string& text) const override { return int(text.size() / 4 + 1); }
  json memory_report() const override { return {{"peak_bytes", peak_bytes}, {"parameters", parameters}}; }
};

fs::path make_run(const fs::path& root, const std::string& name, const std::string& precision, const std::string& prompting,
                  int shots, std::set<int> wrong, double peak_bytes) {
  bq::eval::EvalConfig c;
  c.tasks = {"tiny"};
  c.tasks_dir = root / "tasks";
  c.data_dir = root / "data";
  c.out_dir = root / name;
  c.progress = false;
  c.bootstrap_resamples = 100;
  c.prompting = prompting;
  c.shots = shots;
  c.model_info = {{"precision", precision}};
  c.command_line = "biomedq eval --precision " + precision;
  ScriptedModel m;
  m.wrong = std::move(wrong);
  m.peak_bytes = peak_bytes;
  bq::eval::run_eval(m, c);
  return c.out_dir;
}

// bf16/nf4/int8 zero-shot instruction, fp32 as a second baseline, bf16/nf4 cot, and an int8 1-shot run
// without a baseline.
struct Fixture {
  fs::path root;
  std::vector<fs::path> runs;
};

const Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    x.root = make_fixture("report");
    x.runs = {make_run(x.root, "bf16", "bf16", "instruction", 0, {}, 2e9),
              make_run(x.root, "fp32", "fp32", "instruction", 0, {}, 4e9),
              make_run(x.root, "nf4", "nf4", "instruction", 0, {1, 4}, 0.6e9),
              make_run(x.root, "int8", "int8", "instruction", 0, {2}, 1.1e9),
              make_run(x.root, "bf16-cot", "bf16", "cot", 0, {0}, 2.1e9),
              make_run(x.root, "nf4-cot", "nf4", "cot", 0, {0, 3}, 0.7e9),
              make_run(x.root, "int8-1shot", "int8", "instruction", 1, {}, 1.2e9)};
    return x;
  }();
  return f;
}

std::vector<RunSummary> load_all() {
  std::vector<RunSummary> runs;
  for (auto& d : fixture().runs) runs.push_back(load_run(d));
  return runs;
}

ChartScripts stub_scripts() { return {"/* stub vega */", "/* stub vega-lite */", "/* stub vega-embed */"}; }


}  // namespace

TEST(Report, LoadsRunsAndPairsQuantizedWithFullPrecision) {
  auto runs = load_all();
  const RunSummary& nf4 = runs[2];
  EXPECT_EQ(nf4.model, "scripted");
  EXPECT_EQ(nf4.precision, "nf4");
  EXPECT_EQ(nf4.prompting, "instruction");
  EXPECT_NEAR(nf4.memory_gb, 0.6, 1e-12);
  EXPECT_EQ(nf4.memory_source, "peak_bytes");
  ASSERT_TRUE(nf4.parameters);
  EXPECT_EQ(*nf4.parameters, 1e8);
  EXPECT_EQ(nf4.command, "biomedq eval --precision nf4");
  ASSERT_EQ(nf4.tasks.size(), 1u);
  EXPECT_NEAR(nf4.tasks[0].score, 4.0 / 6, 1e-12);
  EXPECT_GT(nf4.tasks[0].latency_sd_s, 0);  // prefill time grows with the item
  EXPECT_GT(nf4.tasks[0].prompt_tokens_mean, 0);

  // nf4 and int8 against bf16 (preferred over fp32), nf4-cot against bf16-cot; int8-1shot has no baseline.
  auto pairs = pair_runs(runs);
  ASSERT_EQ(pairs.size(), 3u);
  EXPECT_EQ(pairs[0].baseline, 0u);
  EXPECT_EQ(pairs[0].quantized, 2u);
  EXPECT_EQ(pairs[1].baseline, 0u);
  EXPECT_EQ(pairs[1].quantized, 3u);
  EXPECT_EQ(pairs[2].baseline, 4u);
  EXPECT_EQ(pairs[2].quantized, 5u);

  auto deltas = paired_deltas(runs, pairs, 1, 200);
  ASSERT_EQ(deltas.size(), 3u);
  EXPECT_EQ(deltas[0].task, "tiny");
  EXPECT_EQ(deltas[0].metric, "accuracy");
  EXPECT_NEAR(deltas[0].delta, -2.0 / 6, 1e-12);
  EXPECT_LE(deltas[0].ci_lo, deltas[0].delta);
  EXPECT_GE(deltas[0].ci_hi, deltas[0].delta);
  EXPECT_EQ(deltas[0].paired_examples, size_t(kQuestions));
  EXPECT_EQ(deltas[0].right_to_wrong, 2u);
  EXPECT_EQ(deltas[0].wrong_to_right, 0u);
  EXPECT_EQ(deltas[2].right_to_wrong, 1u);  // cot: item 0 wrong in both, item 3 lost

  // Table groups: zero-shot instruction, cot, one-shot.
  auto groups = table_groups(runs);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0], (std::vector<size_t>{0, 1, 2, 3}));
}

TEST(Report, FiguresHoldTheRunsNumbers) {
  auto runs = load_all();
  auto pairs = pair_runs(runs);
  auto figures = build_figures(runs, pairs, paired_deltas(runs, pairs, 1, 200));
  std::vector<std::string> ids;
  for (auto& f : figures) ids.push_back(f.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"precision", "model-size", "prompt-length", "prompting", "paired"}));

  // Figure 2: zero-shot instruction runs only, precisions from full to fewest bits, score x 100 with its CI.
  const auto& score = std::get<BarChart>(figures[0].panels[0].chart);
  EXPECT_EQ(series_of(figures[0].panels[0]), (std::vector<std::string>{"fp32", "bf16", "int8", "nf4"}));
  const Bar& nf4 = score.bars[3];
  EXPECT_EQ(nf4.series, "nf4");
  EXPECT_NEAR(nf4.value, 100 * 4.0 / 6, 1e-9);
  ASSERT_TRUE(nf4.lo && nf4.hi);
  EXPECT_LE(*nf4.lo, nf4.value);
  const auto& memory = std::get<BarChart>(figures[0].panels[1].chart);
  EXPECT_NEAR(memory.bars[0].value, 4.0, 1e-12);  // fp32

  // Figure 5 places every run; Figure 6 compares instruction and cot; the forest has one row per pair.
  EXPECT_EQ(std::get<LineChart>(figures[2].panels[0].chart).points.size(), runs.size());
  EXPECT_EQ(categories_of(std::get<BarChart>(figures[3].panels[0].chart)), (std::vector<std::string>{"instruction", "cot"}));
  const auto& forest = std::get<ForestChart>(figures[4].panels[0].chart);
  ASSERT_EQ(forest.rows.size(), 3u);
  EXPECT_NEAR(forest.rows[0].estimate, -100 * 2.0 / 6, 1e-9);
  EXPECT_NE(forest.rows[0].note.find("right→wrong 2"), std::string::npos) << forest.rows[0].note;
}

TEST(Report, WritesPageMarkdownAndPngsAtomically) {
  fs::path out = fixture().root / "report";
  ReportOptions o{fixture().runs, out, stub_scripts(), 1, 200};
  ReportFiles files = write_report(o);
  write_report(o);  // over an existing report
  EXPECT_TRUE(files.charts);
  ASSERT_EQ(files.pngs.size(), 5u);

  std::set<std::string> names;
  for (auto& e : fs::directory_iterator(out)) names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"report.html", "report.md", "precision.png", "model-size.png",
                                          "prompt-length.png", "prompting.png", "paired.png"}))
      << "a temporary file was left behind";

  for (auto& png : files.pngs) {
    std::string bytes = bq::read_file(png);
    ASSERT_GT(bytes.size(), 5000u) << png;
    EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << png;
    auto be32 = [&](size_t at) {
      return uint32_t(uint8_t(bytes[at])) << 24 | uint32_t(uint8_t(bytes[at + 1])) << 16 |
             uint32_t(uint8_t(bytes[at + 2])) << 8 | uint32_t(uint8_t(bytes[at + 3]));
    };
    EXPECT_EQ(bytes.substr(12, 4), "IHDR");
    EXPECT_EQ(be32(16), 1000u) << png;  // width
    EXPECT_GT(be32(20), 200u) << png;   // height
  }

  std::string html = bq::read_file(files.html);
  for (auto* stub : {"/* stub vega */", "/* stub vega-lite */", "/* stub vega-embed */"})
    EXPECT_NE(html.find(stub), std::string::npos) << stub << " not inlined";
  EXPECT_FALSE(std::regex_search(html, std::regex("<script[^>]*\\ssrc=", std::regex::icase))) << "a script is loaded";
  EXPECT_FALSE(std::regex_search(html, std::regex("<link[^>]*href=\"https?:", std::regex::icase)));
  EXPECT_NE(html.find("id=\"report-specs\""), std::string::npos);
  EXPECT_NE(html.find("\"vconcat\""), std::string::npos);
  for (auto* id : {"fig-precision", "fig-model-size", "fig-prompt-length", "fig-prompting", "fig-paired"})
    EXPECT_NE(html.find(fmt::format("class=\"chart\" id=\"{}\"", id)), std::string::npos) << id;
  EXPECT_EQ(html.find("report-notice"), std::string::npos);
  EXPECT_NE(html.find("<th>bf16 Score</th>"), std::string::npos);  // the HTML Table 1
  EXPECT_NE(html.find("biomedq eval --precision nf4"), std::string::npos);  // traced to its command
  EXPECT_NE(html.find("&quot;prompting&quot;: &quot;cot&quot;"), std::string::npos);  // and its configuration

  std::string md = bq::read_file(files.markdown);
  std::vector<fs::path> zero_shot(fixture().runs.begin(), fixture().runs.begin() + 4);
  EXPECT_NE(md.find(bq::eval::format_results_table(zero_shot, bq::eval::TableFormat::markdown)), std::string::npos) << md;
  EXPECT_NE(md.find("![Paired differences from full precision](paired.png)"), std::string::npos);
  EXPECT_NE(md.find("- tiny · scripted nf4 vs bf16 (instruction, 0-shot): -33.3"), std::string::npos) << md;
}

TEST(Report, WithoutChartScriptsThePageHasTablesAndANotice) {
  fs::path out = fixture().root / "report-plain";
  ReportFiles files = write_report({fixture().runs, out, {}, 1, 100});
  EXPECT_FALSE(files.charts);
  std::string html = bq::read_file(files.html);
  EXPECT_NE(html.find("id=\"report-notice\""), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("class=\"chart\""), std::string::npos);
  EXPECT_NE(html.find("<details open><summary>Data</summary>"), std::string::npos);
  EXPECT_EQ(files.pngs.size(), 5u);
}

TEST(Report, BadInputNamesTheFile) {
  fs::path root = bq::test::temp_dir("report-bad");
  fs::path out = root / "out";
  fs::create_directories(root / "empty");
  EXPECT_NE(error_of([&] { write_report({{root / "empty"}, out, {}, 1, 100}); }).find((root / "empty").string()),
            std::string::npos);
  write(root / "garbled/results.json", "{\"config\": ");
  std::string e = error_of([&] { write_report({{root / "garbled"}, out, {}, 1, 100}); });
  EXPECT_NE(e.find((root / "garbled/results.json").string()), std::string::npos) << e;
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
  write(root / "other/results.json", R"({"config": {"model": "m", "prompting": "instruction", "shots": 0},
    "tasks": {"tiny": {"primary_metric": "accuracy", "metrics": {}}}})");
  e = error_of([&] { write_report({{root / "other"}, out, {}, 1, 100}); });
  EXPECT_NE(e.find((root / "other/results.json").string()), std::string::npos) << e;
  EXPECT_NE(error_of([&] { write_report({{}, out, {}, 1, 100}); }).find("no run folders"), std::string::npos);
  EXPECT_FALSE(fs::exists(out)) << "nothing is written for bad input";
}

// The CLI end to end on a synthetic model, and the page in a real browser: every chart rendered, no error.
TEST(Report, PageRendersInHeadlessChromium) {
  fs::path tmp = bq::test::temp_dir("report-browser"), src = bq::test::source_dir();
  std::string eval = bq::test::biomedq_binary().string() + " eval --synthetic tiny --tasks pubmedqa,hoc --limit 2 "
                     "--no-progress --bootstrap 50 --data-dir " + (src / "examples/data").string() +
                     " --tasks-dir " + (src / "tasks").string();
  std::string out;
  for (auto* precision : {"bf16", "nf4"})
    ASSERT_EQ(bq::test::run_command(fmt::format("OMP_NUM_THREADS=1 {} --precision {} --out {}", eval, precision,
                                                (tmp / precision).string()), &out), 0) << out;
  json results = json::parse(bq::read_file(tmp / "nf4/results.json"));
  EXPECT_NE(results.value("command", "").find("--precision nf4"), std::string::npos) << "the command is recorded";
  EXPECT_TRUE(results["memory"].contains("parameters"));

  std::string report = fmt::format("{} report {} {} --out {} --bootstrap 100", bq::test::biomedq_binary().string(),
                                   (tmp / "bf16").string(), (tmp / "nf4").string(), (tmp / "report").string());
  ASSERT_EQ(bq::test::run_command(report, &out), 0) << out;
  EXPECT_NE(out.find((tmp / "report/report.html").string()), std::string::npos) << out;

  if (!embedded_chart_scripts().complete())
    GTEST_SKIP() << "this build has no chart JavaScript (scripts/fetch-report-assets.sh, then rebuild): "
                    "nothing for a browser to render";
  if (bq::test::run_command("command -v chromium || command -v chromium-browser") != 0)
    GTEST_SKIP() << "chromium not installed (apt-get install chromium): skipping the headless-browser check";
  std::string check = (src / "scripts/check-report.sh").string() + " ";
  EXPECT_EQ(bq::test::run_command(check + (tmp / "report").string(), &out), 0) << out;

  // The check itself: a page whose charts fail to render is caught, with the page's own error message.
  std::string html = bq::read_file(tmp / "report/report.html");
  size_t call = html.find("return vegaEmbed(");
  ASSERT_NE(call, std::string::npos);
  write(tmp / "broken/report.html", html.replace(call, 17, "return vegaEmbedMissing("));
  EXPECT_EQ(bq::test::run_command(check + (tmp / "broken").string(), &out), 1) << out;
  EXPECT_NE(out.find("vegaEmbedMissing is not defined"), std::string::npos) << out;
}
