// Task files, prompts, and the evaluation loop against a scripted generator: metrics, resume after a crash,
// rescore, refusal of a different configuration; data check on the shared benchmark data.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "eval/data_check.h"
#include "eval/open_model.h"
#include "eval/parse.h"
#include "eval/prompts.h"
#include "eval/run.h"
#include "eval/table.h"
#include "test_util.h"

using namespace bq::eval;
using nlohmann::json;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

const char* const kTinyQa = bq::test::kTinyQaTaskYaml;

const char* kTinyNer = R"(name: tinyner
type: ner
parser: spans
primary_metric: f1
data_folder: TinyNer
format: conll
splits: {train: train.tsv, test: test.tsv}
entity_name: disease
input_template: "{sentence}"
prompts:
  instruction: "Mark diseases with <span>.\n{examples}Sentence: {input}\nHTML:"
  cot: "Reason, then Answer: <html>\n{examples}Sentence: {input}\n"
  example: "Sentence: {input}\nHTML: {answer}\n"
)";

const char* kLabels[] = {"yes", "no", "maybe"};

// Test data: n_test (10) questions "itemN" (id qN) with gold kLabels[N % 3]; 3 train questions for shots.
fs::path make_fixture(const std::string& name, int n_test = 10) {
  fs::path root = bq::test::temp_dir(name);
  write(root / "tasks/tiny.yaml", kTinyQa);
  write(root / "tasks/tinyner.yaml", kTinyNer);
  std::string test = "id\ttext\tlabel\n", train = "id\ttext\tlabel\n";
  for (int i = 0; i < n_test; i++) test += fmt::format("q{}\tIs item{} fine?\t{}\n", i, i, kLabels[i % 3]);
  for (int i = 0; i < 3; i++) train += fmt::format("t{}\tIs train{} fine?\t{}\n", i, i, kLabels[i]);
  write(root / "data/Tiny/test.tsv", test);
  write(root / "data/Tiny/train.tsv", train);
  // Sentences: 1, 2 and 1 gold entities.
  write(root / "data/TinyNer/test.tsv",
        "Breast\tB\ncancer\tI\nrisk\tO\n\nAtaxia\tB\nand\tO\ngout\tB\n.\tO\n\nNo\tO\ndisease\tO\nbut\tO\nflu\tB\n");
  write(root / "data/TinyNer/train.tsv", "Colon\tB\ncancer\tI\n\nMild\tO\nasthma\tB\n\nNothing\tO\nhere\tO\n");
  return root;
}

// Answers by looking up which known input the prompt ends with (the evaluated example comes last, after shots).
struct FakeGenerator : bq::TextGenerator {
  std::map<std::string, std::vector<std::string>> script;  // needle -> answers for the 1st, 2nd, ... request
  std::string name = "fake-model";
  std::map<std::string, int> seen;
  int calls = 0, prompts = 0, fail_after = -1;  // fail_after: prompts finished before a simulated crash
  std::vector<bq::SamplingOptions> last_opts;

  int count_tokens(const std::string& text) const override { return int(text.size()); }  // one per byte
  std::string format_prompt(const std::vector<bq::ChatTurn>& turns, bool chat,
                            std::optional<bool> thinking) const override {
    EXPECT_EQ(thinking, std::optional<bool>(false)) << "evaluation asks for answers without a reasoning block";
    return chat ? "<|user|>" + turns[0].content + "<|assistant|>" : turns[0].content;
  }
  std::vector<bq::GenerationResult> generate(const std::vector<std::string>& ps,
                                             const std::vector<bq::SamplingOptions>& opts,
                                             const bq::BatchControl& control) override {
    calls++;
    last_opts = opts;
    std::vector<bq::GenerationResult> out;
    for (auto& p : ps) {
      if (fail_after >= 0 && prompts >= fail_after) throw std::runtime_error("simulated crash");
      prompts++;
      std::string best;
      size_t best_pos = 0;
      for (auto& [needle, answers] : script)
        if (size_t at = p.rfind(needle); at != std::string::npos && (best.empty() || at > best_pos)) best = needle, best_pos = at;
      bq::GenerationResult r;
      if (!best.empty()) {
        auto& answers = script[best];
        r.text = answers[size_t(seen[best]++) % answers.size()];
      }
      r.prompt_tokens = int(p.size() / 4);
      r.generated_tokens = 3;
      r.prefill_ms = 10;
      r.decode_ms = 30;
      r.finish_reason = "eos";
      out.push_back(r);
      if (control.on_finish) control.on_finish(out.size() - 1, r);
    }
    return out;
  }
  std::string model_name() const override { return name; }
  json memory_report() const override { return {{"peak_bytes", 1234}}; }
};

// item i: right with prose around it when i % 3 == 0, junk when i % 3 == 1, a wrong label when i % 3 == 2.
void script_qa(FakeGenerator& g) {
  for (int i = 0; i < 10; i++) {
    std::string gold = kLabels[i % 3];
    std::string ans = i % 3 == 0 ? "The answer is " + gold + "." : i % 3 == 1 ? "I am not sure." : (gold == "yes" ? "no" : "yes");
    g.script[fmt::format("item{} ", i)] = {ans};
  }
}

EvalConfig config(const fs::path& root, const std::string& run, const std::string& task) {
  EvalConfig c;
  c.tasks = {task};
  c.tasks_dir = root / "tasks";
  c.data_dir = root / "data";
  c.out_dir = root / run;
  c.progress = false;
  c.bootstrap_resamples = 200;
  return c;
}

size_t count_lines(const fs::path& p) {
  std::string s = bq::read_file(p);
  return size_t(std::count(s.begin(), s.end(), '\n'));
}

}  // namespace

// Records reach the disk in groups (fsync), but each is in the file as append returns: a run killed after it loses
// nothing (nothing waits in the process's own buffers).
TEST(EvalRun, EachRecordIsInTheFileAsAppendReturns) {
  fs::path dir = bq::test::temp_dir("writer");
  SampleWriter writer(dir);
  for (int i = 0; i < 3; i++) {
    SampleRecord r;
    r.task = "tiny", r.split = "test", r.id = "q" + std::to_string(i), r.raw = {"yes"}, r.finish_reason = {"eos"};
    writer.append(r);
    auto records = read_samples(dir / "samples.jsonl", false);
    ASSERT_EQ(records.size(), size_t(i + 1));
    EXPECT_EQ(records.back().id, r.id);
  }
  writer.sync();
  EXPECT_EQ(count_lines(dir / "samples.jsonl"), 3u);
}

TEST(EvalRun, MetricsResumeAfterCrashAndRescore) {
  fs::path root = make_fixture("run");
  EvalConfig cfg = config(root, "run", "tiny");

  FakeGenerator crashing;
  script_qa(crashing);
  crashing.fail_after = 4;
  EXPECT_THROW(run_eval(crashing, cfg), std::runtime_error);
  fs::path samples = cfg.out_dir / "samples.jsonl";
  ASSERT_EQ(count_lines(samples), 4u);
  { std::ofstream(samples, std::ios::app) << R"({"task":"tiny","id":"q4","raw":["hal)"; }  // torn write

  FakeGenerator gen;
  script_qa(gen);
  json res = run_eval(gen, cfg);
  EXPECT_EQ(gen.prompts, 6);  // only the unfinished samples
  ASSERT_EQ(count_lines(samples), 10u);
  auto records = read_samples(samples, false);
  ASSERT_EQ(records.size(), 10u);
  std::set<std::string> ids;
  for (auto& r : records) ids.insert(r.id);
  EXPECT_EQ(ids.size(), 10u);

  json t = res["tasks"]["tiny"];
  EXPECT_EQ(t["examples_scored"], 10);
  EXPECT_EQ(t["split"], "test");
  EXPECT_FALSE(t["split_fallback"]);
  EXPECT_DOUBLE_EQ(t["metrics"]["accuracy"]["value"].get<double>(), 0.4);  // items 0, 3, 6, 9
  EXPECT_DOUBLE_EQ(t["unparsed_rate"].get<double>(), 0.3);                 // items 1, 4, 7
  double lo = t["metrics"]["accuracy"]["ci95"][0], hi = t["metrics"]["accuracy"]["ci95"][1];
  EXPECT_LE(lo, 0.4);
  EXPECT_GE(hi, 0.4);
  EXPECT_LT(lo, hi);
  EXPECT_DOUBLE_EQ(t["efficiency"]["latency_s"]["mean"].get<double>(), 0.04);
  EXPECT_DOUBLE_EQ(t["efficiency"]["tokens_per_s"].get<double>(), 75.0);  // 3 tokens per 0.04 s
  EXPECT_EQ(t["data_files"].begin().value(), sha256_file(root / "data/Tiny/test.tsv"));
  EXPECT_EQ(res["memory"]["peak_bytes"], 1234);
  json on_disk = json::parse(bq::read_file(cfg.out_dir / "results.json"));
  EXPECT_EQ(on_disk["tasks"], res["tasks"]);

  // An uninterrupted run gives the same scores.
  FakeGenerator clean;
  script_qa(clean);
  json res2 = run_eval(clean, config(root, "run2", "tiny"));
  EXPECT_EQ(res2["tasks"]["tiny"]["metrics"], t["metrics"]);

  // Rescore reproduces results.json without a model; a second run with nothing left generates nothing.
  EXPECT_EQ(rescore_run(cfg.out_dir, 200)["tasks"], res["tasks"]);
  FakeGenerator idle;
  run_eval(idle, cfg);
  EXPECT_EQ(idle.calls, 0);

  // Another configuration into the same folder is refused.
  EvalConfig other = cfg;
  other.shots = 1;
  try {
    run_eval(idle, other);
    FAIL() << "expected a refusal";
  } catch (const bq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("another configuration"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("shots"), std::string::npos) << e.what();
  }
}

TEST(EvalRun, CompareTwoRunsPairedByExample) {
  fs::path root = make_fixture("compare");
  FakeGenerator a, b;
  script_qa(a);
  for (int i = 0; i < 10; i++) b.script[fmt::format("item{} ", i)] = {kLabels[i % 3]};
  EvalConfig ca = config(root, "a", "tiny"), cb = config(root, "b", "tiny");
  cb.chat = false;
  run_eval(a, ca);
  run_eval(b, cb);
  json c = compare_runs(ca.out_dir, cb.out_dir, 1, 500)["tasks"]["tiny"];
  EXPECT_EQ(c["paired_examples"], 10);
  EXPECT_EQ(c["wrong_to_right"], 6);
  EXPECT_EQ(c["right_to_wrong"], 0);
  EXPECT_EQ(c["wrong_to_right_ids"], json({"q1", "q2", "q4", "q5", "q7", "q8"}));  // A: only items 0, 3, 6, 9 right
  EXPECT_EQ(c["right_to_wrong_ids"], json::array());
  EXPECT_NEAR(c["difference"]["accuracy"]["b_minus_a"].get<double>(), 0.6, 1e-12);
  EXPECT_GT(c["difference"]["accuracy"]["ci95"][0].get<double>(), 0.0);
  EXPECT_NEAR(c["mcnemar"]["chi2"].get<double>(), 25.0 / 6, 1e-12);     // (|6 - 0| - 1)^2 / 6
  EXPECT_NEAR(c["mcnemar"]["p_value"].get<double>(), 0.04123, 1e-4);  // chi-square(1) tail at 4.1667
}

// The timing mode: each answer may run only to its gold answer's length in the model's tokens, recorded in
// config.json (so a run folder is not resumed under the other mode).
TEST(EvalRun, AnswerLengthsGoldCapEachAnswerAtItsGoldLength) {
  fs::path root = make_fixture("gold-lengths");
  EvalConfig cfg = config(root, "run", "tiny");
  cfg.limit = 4;
  cfg.answer_lengths = "gold";
  FakeGenerator gen;  // counts one token per byte
  run_eval(gen, cfg);
  ASSERT_EQ(gen.last_opts.size(), 4u);
  for (int i = 0; i < 4; i++)
    EXPECT_EQ(gen.last_opts[size_t(i)].max_new_tokens, int(std::string(kLabels[i % 3]).size())) << i;
  json config_file = json::parse(std::ifstream(cfg.out_dir / "config.json"));
  EXPECT_EQ(config_file["answer_lengths"], "gold");
  cfg.answer_lengths = "task";
  EXPECT_NE(bq::test::error_of([&] { run_eval(gen, cfg); }).find("answer_lengths: \"gold\" -> \"task\""), std::string::npos);
  cfg.answer_lengths = "longest";
  cfg.out_dir = root / "other";
  EXPECT_NE(bq::test::error_of([&] { run_eval(gen, cfg); }).find("--answer-lengths is 'longest'"), std::string::npos);
}

TEST(EvalRun, SelfConsistencyVotesOverSeededSamples) {
  fs::path root = make_fixture("sc");
  EvalConfig cfg = config(root, "run", "tiny");
  cfg.prompting = "sc";
  cfg.sc_samples = 3;
  cfg.limit = 4;
  FakeGenerator gen;
  for (int i = 0; i < 10; i++) {
    std::string gold = kLabels[i % 3], wrong = gold == "no" ? "maybe" : "no";
    gen.script[fmt::format("item{} ", i)] = {"Because.\nAnswer: " + gold, "Answer: " + wrong, "Hmm.\nAnswer: " + gold};
  }
  json res = run_eval(gen, cfg);
  EXPECT_EQ(gen.prompts, 12);
  EXPECT_DOUBLE_EQ(res["tasks"]["tiny"]["metrics"]["accuracy"]["value"].get<double>(), 1.0);
  ASSERT_EQ(gen.last_opts.size(), 12u);  // every sample of every example, three per example, consecutive
  EXPECT_FLOAT_EQ(gen.last_opts[0].temperature, 0.7f);
  EXPECT_NE(gen.last_opts[0].seed, gen.last_opts[1].seed);
  EXPECT_NE(gen.last_opts[0].seed, gen.last_opts[3].seed);
  auto records = read_samples(cfg.out_dir / "samples.jsonl", false);
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[0].raw.size(), 3u);
  EXPECT_EQ(records[0].votes.value().size(), 3u);
  EXPECT_NEAR(records[0].latency_ms, 40.0, 1e-9);  // three generations side by side
}

TEST(EvalRun, NerWithSeededShotsFromTrain) {
  fs::path root = make_fixture("ner");
  EvalConfig cfg = config(root, "run", "tinyner");
  cfg.shots = 2;
  cfg.chat = false;
  FakeGenerator gen;
  gen.script["Breast cancer risk"] = {"<span>Breast cancer</span> risk"};
  gen.script["Ataxia and gout ."] = {"Ataxia and gout ."};  // no entities found: 2 misses
  gen.script["No disease but flu"] = {"No disease but <span>flu</span>"};
  json res = run_eval(gen, cfg);
  json t = res["tasks"]["tinyner"];
  EXPECT_DOUBLE_EQ(t["metrics"]["precision"]["value"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(t["metrics"]["recall"]["value"].get<double>(), 0.5);
  EXPECT_NEAR(t["metrics"]["f1"]["value"].get<double>(), 2.0 / 3, 1e-12);
  EXPECT_EQ(t["shots"]["split"], "train");
  ASSERT_EQ(t["shots"]["ids"].size(), 2u);
  auto records = read_samples(cfg.out_dir / "samples.jsonl", false);
  std::string prompt = records[0].prompt.value();
  for (auto& id : t["shots"]["ids"]) {
    int k = std::stoi(id.get<std::string>().substr(6));  // "train-K"
    const char* shot_text[] = {"Colon cancer", "Mild asthma", "Nothing here"};
    EXPECT_NE(prompt.find(shot_text[k]), std::string::npos) << prompt;
  }
  EXPECT_EQ(prompt.find("<|user|>"), std::string::npos);  // chat template off
  EXPECT_EQ(records[1].entity_counts.value()[2], 2);
}

TEST(EvalRun, DevFallbackAndShotSourceErrors) {
  fs::path root = make_fixture("fallback");
  fs::rename(root / "data/Tiny/test.tsv", root / "data/Tiny/dev.tsv");
  std::string yaml = kTinyQa;
  yaml.replace(yaml.find("test: test.tsv"), 14, "dev: dev.tsv, test: test.tsv");
  write(root / "tasks/tiny.yaml", yaml);
  EvalConfig cfg = config(root, "run", "tiny");
  cfg.limit = 2;
  FakeGenerator gen;
  script_qa(gen);
  json t = run_eval(gen, cfg)["tasks"]["tiny"];
  EXPECT_EQ(t["split"], "dev");
  EXPECT_TRUE(t["split_fallback"]);
  EXPECT_NE(t["split_label"].get<std::string>().find("dev"), std::string::npos);
  EXPECT_EQ(t["examples_scored"], 2);

  fs::remove(root / "data/Tiny/train.tsv");
  EvalConfig shots = config(root, "run-shots", "tiny");
  shots.shots = 1;
  EXPECT_THROW(run_eval(gen, shots), bq::Error);  // the only other split is the evaluated one
}

TEST(EvalPrompts, BenchmarkFilesOwnTemplatesAndSeededDraws) {
  fs::path root = make_fixture("prompts");
  write(root / "data/Tiny/prompt_zeroshot.txt", "\xEF\xBB\xBFTASK: answer.\r\nInput: {Input}\r\nOutput:");
  auto tasks = load_task_configs(root / "tasks");
  const TaskConfig& tiny = find_task(tasks, "tiny");
  Dataset ds = load_split(tiny, root / "data", "test", false);
  std::string tpl = load_benchmark_prompt(tiny, root / "data", 0);
  EXPECT_EQ(build_benchmark_prompt(tiny, tpl, 0, ds.examples[1]), "TASK: answer.\nInput: Is item1 fine?\nOutput:");
  EXPECT_THROW(load_benchmark_prompt(tiny, root / "data", 2), bq::Error);
  EXPECT_THROW(load_benchmark_prompt(tiny, root / "data", 1), bq::Error);  // file absent

  Dataset train = load_split(tiny, root / "data", "train", false);
  EXPECT_EQ(build_own_prompt(tiny, ds.examples[0], {train.examples[2]}, false),
            "Answer yes, no or maybe.\nQ: Is train2 fine?\nA: maybe\nQ: Is item0 fine?\nA:");

  auto five = seeded_sample(100, 5, 9), ten = seeded_sample(100, 10, 9);
  EXPECT_EQ(five, std::vector<size_t>(ten.begin(), ten.begin() + 5));
  EXPECT_EQ(five, seeded_sample(100, 5, 9));
  EXPECT_NE(five, seeded_sample(100, 5, 10));
  std::set<size_t> unique(ten.begin(), ten.end());
  EXPECT_EQ(unique.size(), 10u);
}

TEST(EvalTasks, ShippedTaskFilesLoad) {
  auto tasks = load_task_configs(bq::test::source_dir() / "tasks");
  std::vector<std::string> names;
  for (auto& t : tasks) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"bc5cdr-chem", "chemprot", "ddi2013", "hoc", "litcovid", "medqa",
                                             "ncbi-disease", "pubmedqa"}));
  const TaskConfig& hoc = find_task(tasks, "hoc");
  EXPECT_EQ(hoc.labels.size(), 10u);
  EXPECT_EQ(find_task(tasks, "litcovid").labels.size(), 7u);
  EXPECT_EQ(find_task(tasks, "chemprot").negative_label, "false");
  EXPECT_EQ(find_task(tasks, "ncbi-disease").max_new_tokens, 200);
  EXPECT_THROW(find_task(tasks, "nope"), bq::Error);
}

TEST(EvalTasks, InvalidConfigsAreExplained) {
  fs::path dir = bq::test::temp_dir("badtasks");
  auto error_for = [&](const std::string& from, const std::string& to) {
    std::string yaml = kTinyQa;
    if (!from.empty()) yaml.replace(yaml.find(from), from.size(), to);
    write(dir / "t.yaml", yaml);
    try {
      load_task_config(dir / "t.yaml");
    } catch (const bq::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_for("", ""), "no error");
  EXPECT_NE(error_for("parser: label", "parser: spans").find("does not fit"), std::string::npos);
  EXPECT_NE(error_for("primary_metric: accuracy", "primary_metric: f1").find("primary_metric"), std::string::npos);
  EXPECT_NE(error_for("label_field: label\n", "").find("label_field"), std::string::npos);
  EXPECT_NE(error_for("name: tiny", "name: tiny\ncolour: red").find("unknown key 'colour'"), std::string::npos);
  EXPECT_NE(error_for("Q: {input}\\nA:\"", "Q:\\nA:\"").find("{input}"), std::string::npos);
  EXPECT_NE(error_for("type: qa", "type: [qa").find("t.yaml"), std::string::npos);
}

TEST(EvalTasks, NamedPartsGiveThePresetsScores) {
  fs::path root = make_fixture("named-parts");
  // The same two tasks with reader, parser and metrics named instead of filled in by `type`.
  auto named = [](std::string yaml, const std::string& type, const std::string& reader, const std::string& metrics) {
    yaml.replace(yaml.find("type: " + type + "\n"), 7 + type.size(), "");
    yaml.replace(yaml.find("format: " + reader), 8 + reader.size(), "reader: " + reader + "\nmetrics: " + metrics);
    return yaml;
  };
  write(root / "tasks-named/tiny.yaml", named(kTinyQa, "qa", "tsv", "[accuracy, macro_f1]"));
  write(root / "tasks-named/tinyner.yaml", named(kTinyNer, "ner", "conll", "[precision, recall, f1]"));
  const TaskConfig ner = load_task_config(root / "tasks-named/tinyner.yaml");
  EXPECT_EQ(ner.type, "");
  EXPECT_EQ(ner.metrics, (std::vector<std::string>{"precision", "recall", "f1", "unparsed_rate"}));
  json results[2];
  for (int i = 0; i < 2; i++) {
    EvalConfig c = config(root, i ? "named" : "preset", "tiny");
    c.tasks = {"tiny", "tinyner"};
    if (i) c.tasks_dir = root / "tasks-named";
    FakeGenerator gen;
    script_qa(gen);
    gen.script["Breast cancer risk"] = {"<span>Breast cancer</span> risk"};
    gen.script["Ataxia and gout"] = {"<span>Ataxia</span> and gout <span>.</span>"};
    results[i] = run_eval(gen, c);
  }
  for (const char* task : {"tiny", "tinyner"}) {
    const json &preset = results[0]["tasks"][task], &named_parts = results[1]["tasks"][task];
    EXPECT_EQ(preset["metrics"], named_parts["metrics"]) << task;
    for (const char* key : {"primary_metric", "examples_scored", "unparsed", "unparsed_rate"})
      EXPECT_EQ(preset[key], named_parts[key]) << task << " " << key;
  }
  EXPECT_NEAR(results[1]["tasks"]["tinyner"]["metrics"]["precision"]["value"].get<double>(), 2.0 / 3, 1e-12);
  EXPECT_NEAR(results[1]["tasks"]["tiny"]["metrics"]["accuracy"]["value"].get<double>(), 0.4, 1e-12);
}

TEST(EvalTasks, UnknownPartsAndMisfitsNameTheFileTheKeyAndTheChoices) {
  fs::path dir = bq::test::temp_dir("badparts");
  auto error_for = [&](const std::string& from, const std::string& to) {
    std::string yaml = kTinyQa;
    yaml.replace(yaml.find(from), from.size(), to);
    write(dir / "t.yaml", yaml);
    try {
      load_task_config(dir / "t.yaml");
    } catch (const bq::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string file = (dir / "t.yaml").string();
  EXPECT_EQ(error_for("format: tsv", "format: xml"), file + ": 'reader' is 'xml'; known readers: conll, tsv");
  EXPECT_EQ(error_for("format: tsv", "reader: tsv\nformat: tsv"),
            file + ": give 'reader' or its older name 'format', not both");
  EXPECT_EQ(error_for("parser: label", "parser: regex"),
            file + ": 'parser' is 'regex'; known answer extractors: spans, multilabel, label, option_letter");
  EXPECT_EQ(error_for("type: qa", "type: summarization"),
            file + ": 'type' is 'summarization'; known types: ner, re, mlc, qa");
  EXPECT_EQ(error_for("parser: label", "parser: label\nmetrics: [accuracy, bleu]"),
            file + ": 'metrics' names 'bleu'; known metrics: precision, recall, f1, macro_f1, micro_f1, "
                   "micro_f1_positive, accuracy, unparsed_rate");
  // A span metric with a label extractor, a one-label metric with a multi-label one, a metric without its key.
  EXPECT_EQ(error_for("parser: label", "parser: label\nmetrics: [accuracy, f1]"),
            file + ": metric 'f1' does not fit reader 'tsv' and parser 'label': it scores entity spans, and the "
                   "task's gold is labels");
  EXPECT_EQ(error_for("parser: label", "parser: multilabel\nlabel_separator: \";\""),
            file + ": metric 'accuracy' does not fit parser 'multilabel': it needs one label per answer, and the "
                   "parser answers several");
  EXPECT_EQ(error_for("parser: label", "parser: multilabel"), file + ": parser 'multilabel' needs 'label_separator'");
  EXPECT_EQ(error_for("primary_metric: accuracy", "primary_metric: micro_f1_positive\nmetrics: [micro_f1_positive]"),
            file + ": metric 'micro_f1_positive' needs 'negative_label'");
  EXPECT_EQ(error_for("parser: label", "parser: option_letter"), file + ": parser 'option_letter' needs 'options_field'");
  // Without a type every part is named.
  EXPECT_EQ(error_for("type: qa\n", ""), file + ": missing required key 'metrics'");
  EXPECT_EQ(error_for("primary_metric: accuracy", "primary_metric: micro_f1"),
            file + ": primary_metric 'micro_f1' is not among the task's metrics (accuracy, macro_f1, unparsed_rate)");
}

TEST(EvalShared, DataCheckCountsOnTheBenchmark) {
  BQ_REQUIRE_SHARED("data/biomed-nlp-benchmarks");
  fs::path data = bq::test::shared_dir() / "data/biomed-nlp-benchmarks";
  std::string out;
  ASSERT_EQ(bq::test::run_command(fmt::format("{} data check --json --data-dir {}", bq::test::biomedq_binary().string(),
                                              data.string()),
                                  &out),
            0)
      << out;
  json report = json::parse(out);
  std::map<std::string, json> test;
  for (auto& t : report["tasks"]) test[t["task"]] = t["splits"]["test"];
  EXPECT_EQ(test["hoc"]["examples"], 315);
  EXPECT_EQ(test["litcovid"]["examples"], 2500);
  EXPECT_EQ(test["bc5cdr-chem"]["examples"], 4797);
  EXPECT_EQ(test["bc5cdr-chem"]["entities"], 5385);
  EXPECT_EQ(test["ncbi-disease"]["examples"], 940);
  EXPECT_EQ(test["ncbi-disease"]["entities"], 960);
  EXPECT_EQ(test["chemprot"]["examples"], 16929);
  EXPECT_EQ(test["ddi2013"]["examples"], 5761);
  EXPECT_EQ(test["medqa"]["examples"], 1273);
  EXPECT_EQ(test["pubmedqa"]["examples"], 500);
  EXPECT_EQ(test["pubmedqa"]["labels"]["yes"], 276);
  EXPECT_EQ(test["chemprot"]["note"], "ChemProt test (reconstructed)");
}

TEST(EvalShared, BenchmarkPromptsOnTheRealFiles) {
  BQ_REQUIRE_SHARED("data/biomed-nlp-benchmarks");
  fs::path data = bq::test::shared_dir() / "data/biomed-nlp-benchmarks";
  auto tasks = load_task_configs(bq::test::source_dir() / "tasks");
  for (auto& task : tasks) {
    Dataset ds = load_split(task, data, choose_eval_split(task, data, "test").split, false);
    for (int shots : {0, 1, 5}) {
      std::string prompt = build_benchmark_prompt(task, load_benchmark_prompt(task, data, shots), shots, ds.examples[0]);
      EXPECT_FALSE(prompt.starts_with("\xEF\xBB\xBF")) << task.name;
      EXPECT_EQ(prompt.find("{Input}"), std::string::npos) << task.name;
      EXPECT_EQ(prompt.find("{INPUT}"), std::string::npos) << task.name;
      EXPECT_EQ(prompt.find('\r'), std::string::npos) << task.name;
      // The example's own text is in the prompt: its first token, or the start of the first templated field.
      std::string field = task.input_template.substr(task.input_template.find('{') + 1);
      field = field.substr(0, field.find_first_of("}|"));
      std::string needle = task.reader == "conll" ? ds.examples[0].tokens[0] : ds.examples[0].fields.at(field).substr(0, 30);
      EXPECT_NE(prompt.find(needle), std::string::npos) << task.name << " " << shots;
    }
  }
  const TaskConfig& medqa = find_task(tasks, "medqa");
  Dataset mq = load_split(medqa, data, "test", false);
  ASSERT_EQ(mq.examples[0].options.size(), 5u);
  std::string p = build_benchmark_prompt(medqa, load_benchmark_prompt(medqa, data, 0), 0, mq.examples[0]);
  EXPECT_NE(p.find("\nA. " + mq.examples[0].options[0].second + "\nB. "), std::string::npos) << p;
  std::string p5 = build_benchmark_prompt(medqa, load_benchmark_prompt(medqa, data, 5), 5, mq.examples[0]);
  EXPECT_NE(p5.find("?A:" + mq.examples[0].options[0].second + "\n B:"), std::string::npos);
}

TEST(EvalShared, GoldAnswersParseBackToPerfectScoresOnEveryTestSplit) {
  BQ_REQUIRE_SHARED("data/biomed-nlp-benchmarks");
  fs::path data = bq::test::shared_dir() / "data/biomed-nlp-benchmarks";
  for (auto& task : load_task_configs(bq::test::source_dir() / "tasks")) {
    Dataset ds = load_split(task, data, choose_eval_split(task, data, "test").split, false);
    std::vector<Scored> scored;
    for (auto& ex : ds.examples) {
      build_own_prompt(task, ex, {}, false);  // every example renders (Python-literal contexts included)
      scored.push_back(score_answer(task, ex, parse_answer(task, ex, gold_answer_text(task, ex), false)));
    }
    auto m = compute_metrics(metric_spec(task), scored);
    EXPECT_EQ(m["unparsed_rate"], 0.0) << task.name;
    EXPECT_EQ(m[task.primary_metric], 1.0) << task.name;
  }
}

TEST(EvalTable, Table1LayoutFromFakeRuns) {
  fs::path root = make_fixture("table");
  // The same fake model at two precisions (bf16 on both tasks, nf4 on the QA task only).
  EvalConfig bf16 = config(root, "bf16", "tiny"), nf4 = config(root, "nf4", "tiny");
  bf16.tasks = {"tiny", "tinyner"};
  bf16.model_info = {{"precision", "bf16"}};
  nf4.model_info = {{"precision", "nf4"}};
  for (EvalConfig* c : {&nf4, &bf16}) {  // nf4 first: columns still come in precision order
    FakeGenerator gen;
    script_qa(gen);
    run_eval(gen, *c);
  }
  std::string md = format_results_table({root / "nf4", root / "bf16"}, TableFormat::markdown);
  EXPECT_NE(md.find("| Task | Metric | Model | bf16 Mem | bf16 Late | bf16 Score | nf4 Mem | nf4 Late | nf4 Score |"),
            std::string::npos) << md;
  // Accuracy 4/10 (items 0, 3, 6, 9), 40 ms per sample, 1234 bytes peak.
  EXPECT_NE(md.find("| tiny | accuracy | fake-model | 0.00 | 0.040 | 40.0 | 0.00 | 0.040 | 40.0 |"), std::string::npos) << md;
  // The NER task got no answers: F1 0, and no nf4 run.
  EXPECT_NE(md.find("| tinyner | f1 | fake-model | 0.00 | 0.040 | 0.0 | – | – | – |"), std::string::npos) << md;
  EXPECT_NE(md.find("peak (peak_bytes)"), std::string::npos) << md;

  std::string csv = format_results_table({root / "bf16", root / "nf4"}, TableFormat::csv);
  EXPECT_EQ(csv,
            "task,split_fallback,metric,model,bf16_mem_gb,bf16_latency_s,bf16_score,nf4_mem_gb,nf4_latency_s,nf4_score\n"
            "tiny,,accuracy,fake-model,0.000,0.0400,0.4000,0.000,0.0400,0.4000\n"
            "tinyner,,f1,fake-model,0.000,0.0400,0.0000,,,\n");

  // The same task, model and precision twice is refused; a folder without results.json too.
  EXPECT_THROW(format_results_table({root / "bf16", root / "bf16"}, TableFormat::latex), bq::Error);
  EXPECT_THROW(format_results_table({root / "data"}, TableFormat::markdown), bq::Error);
}

namespace {

// A Markdown or LaTeX table row's cells, trimmed ("| a | b |" or "a & b \\").
std::vector<std::string> cells_of(std::string row, bool latex) {
  if (latex) row = row.substr(0, row.rfind(" \\\\"));
  else row = row.substr(2, row.size() - 4);
  std::vector<std::string> cells;
  const std::string sep = latex ? " & " : " | ";
  for (size_t at = 0;;) {
    size_t next = row.find(sep, at);
    cells.push_back(row.substr(at, next - at));
    if (next == std::string::npos) return cells;
    at = next + sep.size();
  }
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST(EvalTable, LatexEscapesEverySpecialCharacter) {
  EXPECT_EQ(latex_escape("a&b%c$d#e_f{g}h~i^j\\k"),
            "a\\&b\\%c\\$d\\#e\\_f\\{g\\}h\\textasciitilde{}i\\textasciicircum{}j\\textbackslash{}k");
  EXPECT_EQ(latex_escape("llama-3 (cot, 0-shot)"), "llama-3 (cot, 0-shot)");
}

TEST(EvalTable, LatexHasTheMarkdownRowsAndNumbersInBooktabs) {
  fs::path root = make_fixture("table-latex");
  EvalConfig bf16 = config(root, "bf16", "tiny"), nf4 = config(root, "nf4", "tiny");
  bf16.tasks = {"tiny", "tinyner"};
  bf16.model_info = {{"precision", "bf16"}};
  nf4.model_info = {{"precision", "nf4"}};
  for (EvalConfig* c : {&bf16, &nf4}) {
    FakeGenerator gen;
    gen.name = "org/fake_model & co #2";
    script_qa(gen);
    run_eval(gen, *c);
  }
  std::vector<fs::path> runs = {root / "bf16", root / "nf4"};
  std::string md = format_results_table(runs, TableFormat::markdown);
  std::string tex = format_results_table(runs, TableFormat::latex);
  auto tex_lines = lines_of(tex);
  auto at = [&](const std::string& line) {
    return size_t(std::find(tex_lines.begin(), tex_lines.end(), line) - tex_lines.begin());
  };
  size_t begin = at("\\begin{tabular}{lllrrrrrr}"), top = at("\\toprule"), mid = at("\\midrule"),
         bottom = at("\\bottomrule"), end = at("\\end{tabular}");
  ASSERT_LT(end, tex_lines.size()) << tex;
  EXPECT_TRUE(begin < top && top < mid && mid < bottom && bottom + 1 == end) << tex;
  EXPECT_EQ(tex_lines[top + 1], " & & & \\multicolumn{3}{c}{bf16} & \\multicolumn{3}{c}{nf4} \\\\") << tex;
  EXPECT_EQ(tex_lines[top + 2], "\\cmidrule(lr){4-6} \\cmidrule(lr){7-9}") << tex;
  EXPECT_EQ(tex_lines[top + 3], "Task & Metric & Model & Mem & Latency & Score & Mem & Latency & Score \\\\") << tex;
  EXPECT_EQ(mid, top + 4) << tex;
  for (size_t i = 0; i < begin; i++) EXPECT_TRUE(tex_lines[i].starts_with("% ")) << tex;  // the legend
  EXPECT_NE(tex.find("Latency: seconds per sample"), std::string::npos) << tex;

  // One LaTeX row per Markdown row, cell for cell: names escaped, the same numbers, "--" for "–".
  std::vector<std::string> md_rows;
  for (auto& l : lines_of(md))
    if (l.starts_with("| ") && !l.starts_with("| Task ")) md_rows.push_back(l);
  ASSERT_EQ(md_rows.size(), 2u) << md;
  ASSERT_EQ(bottom - mid - 1, md_rows.size()) << tex;
  for (size_t r = 0; r < md_rows.size(); r++) {
    auto want = cells_of(md_rows[r], false), got = cells_of(tex_lines[mid + 1 + r], true);
    ASSERT_EQ(got.size(), want.size()) << tex_lines[mid + 1 + r];
    for (size_t k = 0; k < want.size(); k++)
      EXPECT_EQ(got[k], want[k] == "–" ? "--" : latex_escape(want[k])) << "row " << r << " cell " << k;
  }
  EXPECT_NE(tex.find(" & org/fake\\_model \\& co \\#2 & "), std::string::npos) << tex;

  // Through the CLI: the same text; --csv with --latex is refused, naming both.
  std::string out;
  std::string table_cmd = bq::test::biomedq_binary().string() + " table " + runs[0].string() + " " + runs[1].string();
  ASSERT_EQ(bq::test::run_command(table_cmd + " --latex", &out), 0) << out;
  EXPECT_EQ(out, tex);
  EXPECT_NE(bq::test::run_command(table_cmd + " --csv --latex", &out), 0) << out;
  EXPECT_NE(out.find("--csv and --latex"), std::string::npos) << out;
  EXPECT_EQ(out.find("\\toprule"), std::string::npos) << out;
}

TEST(EvalCompare, FlipIdsAndFlipsOutAreTheExamplesWhoseCorrectnessDiffers) {
  const int n = 30;
  fs::path root = make_fixture("compare-flips", n);
  // A is right except on items 3, 10, 17, 24; B is right on exactly those and item 0. Their raw texts differ.
  FakeGenerator a, b;
  for (int i = 0; i < n; i++) {
    std::string gold = kLabels[i % 3], wrong = gold == "yes" ? "no" : "yes";
    a.script[fmt::format("item{} ", i)] = {"A thinks " + (i % 7 != 3 ? gold : wrong)};
    b.script[fmt::format("item{} ", i)] = {"B thinks " + (i % 7 == 3 || i == 0 ? gold : wrong)};
  }
  EvalConfig ca = config(root, "a", "tiny"), cb = config(root, "b", "tiny");
  run_eval(a, ca);
  run_eval(b, cb);

  // The flips computed here from the two samples.jsonl files alone.
  std::map<std::string, json> rec_a, rec_b;
  for (auto& r : read_samples(ca.out_dir / "samples.jsonl", false)) rec_a[r.id] = r.to_json();
  for (auto& r : read_samples(cb.out_dir / "samples.jsonl", false)) rec_b[r.id] = r.to_json();
  ASSERT_EQ(rec_a.size(), size_t(n));
  std::vector<std::string> want_rw, want_wr;  // in id order (std::map), as compare sorts them
  for (auto& [id, ra] : rec_a) {
    bool right_a = ra["correct"], right_b = rec_b.at(id)["correct"];
    if (right_a && !right_b) want_rw.push_back(id);
    if (!right_a && right_b) want_wr.push_back(id);
  }
  ASSERT_EQ(want_rw.size(), 25u);
  ASSERT_EQ(want_wr, std::vector<std::string>({"q10", "q17", "q24", "q3"}));

  fs::path flips = root / "out/flips.jsonl";
  fs::create_directories(flips.parent_path());
  std::string cmd = bq::test::biomedq_binary().string() + " compare " + ca.out_dir.string() + " " +
                    cb.out_dir.string() + " --bootstrap 50";
  std::string out;
  ASSERT_EQ(bq::test::run_command(cmd + " --json --flips-out " + flips.string(), &out), 0) << out;
  json c = json::parse(out)["tasks"]["tiny"];
  EXPECT_EQ(c["right_to_wrong_ids"], json(want_rw));
  EXPECT_EQ(c["wrong_to_right_ids"], json(want_wr));
  EXPECT_EQ(c["right_to_wrong"], want_rw.size());
  EXPECT_EQ(c["wrong_to_right"], want_wr.size());

  // One line per flipped example, in id order within each task, with both runs' texts as logged.
  auto lines = lines_of(bq::read_file(flips));
  ASSERT_EQ(lines.size(), want_rw.size() + want_wr.size());
  std::vector<std::string> ids;
  for (auto& l : lines) {
    json f = json::parse(l);
    std::string id = f["id"];
    ids.push_back(id);
    const json &ra = rec_a.at(id), &rb = rec_b.at(id);
    bool rw = std::find(want_rw.begin(), want_rw.end(), id) != want_rw.end();
    EXPECT_EQ(f["task"], "tiny");
    EXPECT_EQ(f["direction"], rw ? "right_to_wrong" : "wrong_to_right") << id;
    EXPECT_EQ(f["gold"], ra["gold"]) << id;
    for (auto& [side, rec] : {std::pair<std::string, const json*>{"a", &ra}, {"b", &rb}}) {
      EXPECT_EQ(f[side]["raw"], (*rec)["raw"]) << id << " " << side;
      EXPECT_EQ(f[side]["prompt"], (*rec)["prompt"]) << id << " " << side;
      EXPECT_EQ(f[side]["answer"], (*rec)["answer"]) << id << " " << side;
      EXPECT_EQ(f[side]["correct"], (*rec)["correct"]) << id << " " << side;
    }
    EXPECT_TRUE(f["a"]["raw"][0].get<std::string>().starts_with("A thinks ")) << l;
    EXPECT_TRUE(f["b"]["raw"][0].get<std::string>().starts_with("B thinks ")) << l;
  }
  std::vector<std::string> all = want_wr;
  all.insert(all.end(), want_rw.begin(), want_rw.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(ids, all);

  // The text form names the first 20 ids of a direction and counts the rest.
  ASSERT_EQ(bq::test::run_command(cmd, &out), 0) << out;
  EXPECT_NE(out.find("wrong->right: q10, q17, q24, q3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("right->wrong: q1, q11, q12,"), std::string::npos) << out;
  EXPECT_NE(out.find("… and 5 more (--flips-out FILE writes all)"), std::string::npos) << out;
  EXPECT_EQ(out.find(" " + want_rw.back()), std::string::npos) << out;  // the 25th is not listed

  // A --flips-out into a folder that is not there is refused, naming it.
  EXPECT_NE(bq::test::run_command(cmd + " --flips-out " + (root / "absent/flips.jsonl").string(), &out), 0) << out;
  EXPECT_NE(out.find("no folder " + (root / "absent").string()), std::string::npos) << out;
}

namespace {

// A checkpoint's content hash streams its files (a shard over the 2 GiB a whole-file read allows, as Llama 3.1 8B's
// 5 GB shards are) and hashes them on several threads: the same digests as coreutils' sha256sum, an independent
// implementation, and the same listing hash as computed from those.
TEST(CheckpointHash, LargeShardsStreamedAndHashedAsSha256sum) {
  const auto dir = bq::test::temp_dir("checkpoint-hash");
  const uint64_t big = (uint64_t(5) << 29) + 12345;  // 2.5 GiB and a ragged tail, sparse: no disk space used
  const auto shard = dir / "model-00001-of-00002.safetensors";
  std::ofstream(shard).close();
  std::filesystem::resize_file(shard, big);
  bq::write_file_atomic(dir / "model-00002-of-00002.safetensors", std::string(1000, 'x'));
  bq::write_file_atomic(dir / "config.json", "{}");
  bq::write_file_atomic(dir / "notes.txt", "not hashed");
  std::string listing;
  for (const char* f : {"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}) {
    std::string out;
    ASSERT_EQ(bq::test::run_command("sha256sum " + (dir / f).string(), &out), 0) << out;
    const std::string digest = out.substr(0, 64);
    EXPECT_EQ(sha256_file(dir / f), digest) << f;
    listing += std::string(f) + '\0' + digest + '\n';
  }
  EXPECT_EQ(checkpoint_sha256(dir), sha256_hex(listing));
  std::filesystem::remove_all(dir);
}

}  // namespace
