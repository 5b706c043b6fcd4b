#include "eval/run.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "core/folder_lock.h"
#include "core/progress.h"
#include "eval/metrics.h"
#include "eval/parse.h"
#include "eval/prepare.h"
#include "eval/prompts.h"
#include "eval/readers.h"
#include "generate/generate.h"

namespace bq::eval {

namespace {

bool has_span_gold(const TaskConfig& task) { return data_reader(task.reader).gold == GoldKind::spans; }

nlohmann::json gold_json(const TaskConfig& task, const Example& ex) {
  if (!has_span_gold(task)) return ex.gold;
  auto arr = nlohmann::json::array();
  for (auto& e : ex.entities) arr.push_back({e.start, e.end});
  return arr;
}

struct Stats {
  double mean = 0, sd = 0, p50 = 0, p95 = 0;
};

Stats describe(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(ss / double(v.size() - 1));
  }
  s.p50 = percentile(v, 0.5);
  s.p95 = percentile(v, 0.95);
  return s;
}

// The logged samples of one task, re-parsed from their raw outputs (so a rescore after a parser fix agrees with
// a fresh run), in log order. A repeated record of one example counts once (the first) and is counted in
// `duplicates`; two records of one example with different prompts mean two runs were mixed, an Error.
struct TaskSamples {
  size_t duplicates = 0;
  std::vector<Scored> scored;
  std::vector<const nlohmann::json*> records;  // the record each scored sample came from
  std::vector<ParsedAnswer> answers;           // its re-parsed answer (the majority over its raw outputs)
  std::vector<double> latency_s;
  double prompt_tokens = 0, generated_tokens = 0;
};

TaskSamples rescore_samples(const PreparedTask& p, const nlohmann::json& id, const std::vector<nlohmann::json>& samples) {
  const TaskConfig& task = p.task;
  std::map<std::string, const Example*> by_id;
  for (auto& ex : p.data.examples) by_id[ex.id] = &ex;
  bool cot = id["prompting"] != "instruction" && id["prompts"] == "own";
  TaskSamples out;
  std::map<std::string, std::string> prompt_of;  // example id -> its first record's prompt hash
  for (auto& r : samples) {
    if (r["task"] != task.name) continue;
    std::string ex_id = r["id"];
    auto it = by_id.find(ex_id);
    if (it == by_id.end()) fail("samples.jsonl: task {} example '{}' is not in {}", task.name, ex_id, p.data.file.string());
    std::string prompt_hash = r.value("prompt_sha256", "");
    if (auto [seen, fresh] = prompt_of.emplace(ex_id, prompt_hash); !fresh) {
      if (seen->second != prompt_hash)
        fail("samples.jsonl: task {} example '{}' has two records with different prompts (two runs mixed in one "
             "folder)", task.name, ex_id);
      out.duplicates++;
      continue;
    }
    std::vector<ParsedAnswer> answers;
    for (auto& raw : r["raw"]) answers.push_back(parse_answer(task, *it->second, raw.get<std::string>(), cot));
    out.answers.push_back(majority_vote(answers));
    out.records.push_back(&r);
    out.scored.push_back(score_answer(task, *it->second, out.answers.back()));
    out.latency_s.push_back(r["latency_ms"].get<double>() / 1000.0);
    out.prompt_tokens += r["prompt_tokens"].get<double>();
    out.generated_tokens += r["generated_tokens"].get<double>();
  }
  return out;
}

nlohmann::ordered_json score_task(const PreparedTask& p, const nlohmann::json& id, const std::vector<nlohmann::json>& samples,
                          int resamples) {
  const TaskConfig& task = p.task;
  TaskSamples ts = rescore_samples(p, id, samples);
  if (ts.duplicates)
    std::fprintf(stderr, "warning: samples.jsonl: %zu repeated records of task %s ignored (the first of each kept)\n",
                 ts.duplicates, task.name.c_str());
  const std::vector<Scored>& scored = ts.scored;
  const std::vector<double>& latency_s = ts.latency_s;
  double prompt_tokens = ts.prompt_tokens, generated_tokens = ts.generated_tokens;
  MetricSpec spec = metric_spec(task);
  nlohmann::ordered_json metrics = nlohmann::ordered_json::object();
  for (auto& [name, iv] : bootstrap_metrics(spec, scored, derive_seed(id["seed"], "bootstrap:" + task.name), resamples))
    metrics[name] = {{"value", iv.value}, {"ci95", {iv.lo, iv.hi}}};
  size_t unparsed = 0;
  for (auto& s : scored) unparsed += !s.parsed;
  Stats lat = describe(latency_s);
  double total_s = 0;
  for (double x : latency_s) total_s += x;

  std::string split_label = p.split.split;
  if (p.split.fallback) split_label = "dev (no test split in the data; dev used instead)";
  if (auto note = task.split_notes.find(p.split.split); note != task.split_notes.end())
    split_label += " [" + note->second + "]";
  nlohmann::ordered_json shots = {{"k", id["shots"]}};
  if (id["prompts"] == "benchmark") {
    shots["source"] = "examples written in " + p.benchmark_file.string();
  } else if (!p.shots.empty()) {
    shots["split"] = p.shot_split;
    auto ids = nlohmann::json::array();
    for (auto& s : p.shots) ids.push_back(s.id);
    shots["ids"] = ids;
  }
  nlohmann::ordered_json out = {
      {"task", task.name},
      {"type", task.type},
      {"task_file", task.source.string()},
      {"task_file_sha256", sha256_file(task.source)},
      {"split", p.split.split},
      {"split_fallback", p.split.fallback},
      {"split_label", split_label},
      {"data_files", p.data_files},
      {"examples_available", p.data.examples.size()},
      {"examples_selected", p.selected.size()},
      {"examples_scored", scored.size()},
      {"malformed_rows_skipped", p.data.skipped},
      {"shots", shots},
      {"primary_metric", task.primary_metric},
      {"metrics", metrics},
      {"unparsed", unparsed},
      {"duplicate_records_ignored", ts.duplicates},
      {"unparsed_rate", scored.empty() ? 0.0 : double(unparsed) / double(scored.size())},
      {"efficiency",
       {{"latency_s", {{"mean", lat.mean}, {"sd", lat.sd}, {"p50", lat.p50}, {"p95", lat.p95}}},
        {"prompt_tokens", prompt_tokens},
        {"generated_tokens", generated_tokens},
        {"tokens_per_s", total_s > 0 ? generated_tokens / total_s : 0.0}}},
  };
  return out;
}

std::vector<TaskConfig> resolve_tasks(const nlohmann::json& id) {
  auto all = load_task_configs(id["tasks_dir"].get<std::string>());
  std::vector<TaskConfig> out;
  for (auto& name : id["tasks"]) out.push_back(find_task(all, name));
  return out;
}

// Where a run ran: biomedq's version, the host and its CPU, and the backend's device. Kept as first recorded by
// rescore (like the memory figures), and not part of a run's identity: a run may resume on another machine.
nlohmann::json describe_environment(const nlohmann::json& memory) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  std::string cpu;
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (cpu.empty() && std::fgets(line, sizeof line, f))
      if (std::string s = line; s.starts_with("model name"))
        if (auto colon = s.find(':'); colon != std::string::npos) cpu = s.substr(s.find_first_not_of(' ', colon + 1));
    std::fclose(f);
    if (!cpu.empty() && cpu.back() == '\n') cpu.pop_back();
  }
  std::string device = memory.value("device", "cpu");
  return {{"biomedq_version", BIOMEDQ_VERSION},
          {"hostname", host},
          {"cpu", cpu},
          {"device", device},
          {"device_name", device == "cpu" ? cpu : memory.value("device_name", device)}};
}

nlohmann::json score_run(const fs::path& run_dir, const nlohmann::json& id, size_t limit, int resamples,
                         const nlohmann::json& memory, const nlohmann::json& environment,
                         const std::string& command_line) {
  auto samples = read_samples(run_dir / "samples.jsonl", false);
  nlohmann::ordered_json tasks = nlohmann::ordered_json::object();
  for (auto& task : resolve_tasks(id)) tasks[task.name] = score_task(prepare_task(task, id, limit), id, samples, resamples);
  nlohmann::ordered_json results = {{"format", "biomedq-results-1"},
                                    {"config", id},
                                    {"limit", limit},
                                    {"bootstrap", {{"resamples", resamples}, {"interval", "percentile 95%"}}},
                                    {"environment", environment},
                                    {"memory", memory},
                                    {"tasks", tasks}};
  if (!command_line.empty()) results["command"] = command_line;
  write_file_atomic(run_dir / "results.json", results.dump(2) + "\n");
  return results;
}

// Appends whole lines to samples.jsonl and makes each durable before the next sample starts.
class SampleWriter {
 public:
  explicit SampleWriter(const fs::path& file) : path_(file.string()) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd_ < 0) fail("{}: cannot open for appending: {}", path_, std::strerror(errno));
  }
  ~SampleWriter() { ::close(fd_); }
  SampleWriter(const SampleWriter&) = delete;
  SampleWriter& operator=(const SampleWriter&) = delete;

  void append(const nlohmann::json& record) {
    std::string line = record.dump() + "\n";
    size_t done = 0;
    while (done < line.size()) {
      ssize_t w = ::write(fd_, line.data() + done, line.size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) fail("{}: write failed: {}", path_, std::strerror(errno));
      done += size_t(w);
    }
    if (::fsync(fd_) != 0) fail("{}: fsync failed: {}", path_, std::strerror(errno));
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace

nlohmann::json eval_identity(const EvalConfig& cfg, const std::string& model_name) {
  if (cfg.prompting != "instruction" && cfg.prompting != "cot" && cfg.prompting != "sc")
    fail("--prompting is '{}', expected instruction, cot or sc", cfg.prompting);
  if (cfg.prompts != "own" && cfg.prompts != "benchmark") fail("--prompts is '{}', expected own or benchmark", cfg.prompts);
  if (cfg.prompts == "benchmark" && cfg.prompting == "cot")
    fail("--prompting cot needs biomedq's own prompts (the benchmark's prompt files ask for the answer only)");
  if (cfg.shots < 0) fail("--shots must be 0 or more");
  if (cfg.sc_samples < 1) fail("--sc-samples must be at least 1");
  if (cfg.batch < 1) fail("--batch must be at least 1");
  if (cfg.split != "test" && cfg.split != "dev" && cfg.split != "train") fail("--split must be test, dev or train");
  if (cfg.data_dir.empty()) fail("no data directory given (--data-dir)");
  if (!fs::is_directory(cfg.data_dir)) fail("{}: data directory not found", cfg.data_dir.string());
  fs::path tasks_dir = cfg.tasks_dir.empty() ? default_tasks_dir() : cfg.tasks_dir;
  auto all = load_task_configs(tasks_dir);
  std::vector<std::string> names;
  for (auto& n : cfg.tasks) {
    if (n == "all") {
      for (auto& t : all) names.push_back(t.name);
    } else {
      names.push_back(find_task(all, n).name);
    }
  }
  if (names.empty()) fail("no tasks given");
  bool sc = cfg.prompting == "sc";
  return {{"model", model_name},
          {"model_info", cfg.model_info},
          {"tasks", names},
          {"tasks_dir", fs::absolute(tasks_dir).lexically_normal().string()},
          {"data_dir", fs::absolute(cfg.data_dir).lexically_normal().string()},
          {"split", cfg.split},
          {"limit_random", cfg.limit_random},
          {"shots", cfg.shots},
          {"prompting", cfg.prompting},
          {"sc_samples", sc ? cfg.sc_samples : 1},
          {"temperature", sc ? cfg.temperature : 0.0f},
          {"top_p", sc ? cfg.top_p : 1.0f},
          {"seed", cfg.seed},
          {"prompts", cfg.prompts},
          {"chat_template", cfg.chat},
          {"lenient", cfg.lenient}};
}

std::vector<nlohmann::json> read_samples(const fs::path& file, bool repair) {
  std::vector<nlohmann::json> out;
  if (!fs::exists(file)) return out;
  std::string text = read_file(file);
  size_t pos = 0, line = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    bool complete = eol != std::string::npos;
    std::string_view l(text.data() + pos, (complete ? eol : text.size()) - pos);
    line++;
    auto j = nlohmann::json::parse(l, nullptr, false);
    bool ok = complete && !j.is_discarded() && j.is_object() && j.contains("task") && j.contains("id") && j.contains("raw");
    bool last = !complete || eol + 1 == text.size();
    if (!ok) {
      if (!last) fail("{}:{}: not a sample record (the file is damaged before its last line)", file.string(), line);
      if (repair) fs::resize_file(file, pos);  // drop the half-written record of an interrupted run
      break;
    }
    out.push_back(std::move(j));
    pos = eol + 1;
  }
  return out;
}

namespace {

// A run folder holds config.json, samples.jsonl, results.json and the lock, nothing else of ours; a folder with
// other files (or a samples.jsonl without config.json) is someone else's and is never written into.
void check_run_folder(const fs::path& dir) {
  if (!fs::exists(dir)) return;
  if (!fs::is_directory(dir)) fail("{}: --out must be a folder, and this is a file", dir.string());
  bool has_config = fs::exists(dir / "config.json");
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    bool ours = name == "config.json" || name == "samples.jsonl" || name == "results.json" ||
                name == FolderLock::file_name || (name.starts_with("results.json.") && name.ends_with(".tmp"));
    if (!ours || (name == "samples.jsonl" && !has_config))
      fail("{}: not a biomedq run folder (it holds {}); give --out a new or empty folder", dir.string(), name);
  }
  if (has_config) {
    auto old = nlohmann::json::parse(read_file(dir / "config.json"), nullptr, false);
    if (old.is_discarded() || !old.is_object() || !old.contains("tasks") || !old.contains("prompting"))
      fail("{}: not a biomedq run's configuration; give --out a new or empty folder", (dir / "config.json").string());
  }
}

std::vector<PreparedTask> prepare_tasks(const nlohmann::json& id, size_t limit) {
  std::vector<PreparedTask> out;
  for (auto& task : resolve_tasks(id)) out.push_back(prepare_task(task, id, limit));
  return out;
}

}  // namespace

void check_eval(const EvalConfig& cfg) {
  if (cfg.out_dir.empty()) fail("no run folder given (--out)");
  nlohmann::json id = eval_identity(cfg, "");
  prepare_tasks(id, cfg.limit);
  check_run_folder(cfg.out_dir);
}

std::vector<nlohmann::json> export_prompts(const EvalConfig& cfg) {
  nlohmann::json id = eval_identity(cfg, "");
  std::vector<nlohmann::json> out;
  for (auto& p : prepare_tasks(id, cfg.limit))
    for (auto& rec : prompt_records(p, id)) out.push_back(std::move(rec));
  return out;
}

nlohmann::json run_eval(TextGenerator& gen, const EvalConfig& cfg) {
  nlohmann::json id = eval_identity(cfg, gen.model_name());
  if (cfg.out_dir.empty()) fail("no run folder given (--out)");
  // Everything that can be refused is refused before the folder is touched.
  std::vector<PreparedTask> prepared = prepare_tasks(id, cfg.limit);
  check_run_folder(cfg.out_dir);
  fs::create_directories(cfg.out_dir);
  FolderLock lock(cfg.out_dir, "biomedq eval" + (cfg.command_line.empty() ? "" : ": " + cfg.command_line));
  check_run_folder(cfg.out_dir);  // again, now that no one else can change it

  fs::path config_file = cfg.out_dir / "config.json", samples_file = cfg.out_dir / "samples.jsonl";
  auto finished = read_samples(samples_file, true);
  if (fs::exists(config_file)) {
    auto old = nlohmann::json::parse(read_file(config_file), nullptr, false);
    if (old != id && !finished.empty()) {
      std::string diff;
      for (auto& [k, v] : id.items())
        if (!old.contains(k) || old[k] != v) diff += fmt::format("\n  {}: {} -> {}", k, old.value(k, nlohmann::json()).dump(), v.dump());
      fail("{}: this run folder holds {} samples of a run with another configuration; use a new --out folder.{}",
           cfg.out_dir.string(), finished.size(), diff);
    }
    // A folder whose run never finished a sample holds nothing to lose: it takes the new configuration.
    if (old != id) write_file_atomic(config_file, id.dump(2) + "\n");
  } else {
    write_file_atomic(config_file, id.dump(2) + "\n");
  }

  std::set<std::string> done;
  for (auto& r : finished) done.insert(r["task"].get<std::string>() + '\x1f' + r["id"].get<std::string>());
  SampleWriter writer(samples_file);

  bool cot = cfg.prompting != "instruction" && cfg.prompts == "own";
  int n_samples = cfg.prompting == "sc" ? cfg.sc_samples : 1;
  // One meter over the whole run: examples of all tasks, those finished by an earlier invocation included.
  size_t total = 0, finished_before = 0;
  for (PreparedTask& p : prepared)
    for (size_t i : p.selected) {
      total++;
      finished_before += done.contains(p.task.name + '\x1f' + p.data.examples[i].id);
    }
  ProgressMeter progress("eval", double(total), "examples", cfg.progress);
  progress.set_done_before(double(finished_before));
  size_t tokens_generated = 0;
  for (size_t t = 0; t < prepared.size(); ++t) {
    PreparedTask& p = prepared[t];
    const TaskConfig& task = p.task;
    std::vector<const Example*> pending;
    for (size_t i : p.selected)
      if (!done.contains(task.name + '\x1f' + p.data.examples[i].id)) pending.push_back(&p.data.examples[i]);
    auto note = [&] {
      return fmt::format("task {}/{} {}, {} tokens generated", t + 1, prepared.size(), task.name, tokens_generated);
    };
    progress.set_note(note());
    // Every pending example at once, n_samples consecutive prompts each; the generator keeps `batch` examples in
    // flight (continuous batching) and each record is written as soon as its example's last sample ends, so an
    // interruption loses only the examples in flight.
    std::vector<std::string> prompts;
    std::vector<SamplingOptions> opts;
    for (const Example* ex : pending) {
      std::string formatted = gen.format_prompt({{"user", build_prompt(p, id, *ex)}}, cfg.chat);
      for (int s = 0; s < n_samples; s++) {
        SamplingOptions o;
        o.max_new_tokens = cot ? task.max_new_tokens_cot : task.max_new_tokens;
        if (cfg.prompting == "sc") {
          o.temperature = cfg.temperature;
          o.top_p = cfg.top_p;
          o.seed = derive_seed(cfg.seed, task.name + '\x1f' + ex->id) + uint64_t(s);
        }
        prompts.push_back(formatted);
        opts.push_back(o);
      }
    }
    std::vector<GenerationResult> results(prompts.size());
    std::vector<int> samples_left(pending.size(), n_samples);
    auto last_finish = std::chrono::steady_clock::now();
    auto write_record = [&](size_t k, double wall_ms) {
      const Example& ex = *pending[k];
      nlohmann::json raw = nlohmann::json::array(), finish = nlohmann::json::array();
      std::vector<ParsedAnswer> answers;
      double prefill = 0, decode = 0;
      int ptok = 0, gtok = 0;
      for (int s = 0; s < n_samples; s++) {
        const GenerationResult& r = results[k * size_t(n_samples) + size_t(s)];
        raw.push_back(r.text);
        finish.push_back(r.finish_reason);
        answers.push_back(parse_answer(task, ex, r.text, cot));
        // The samples of one example decode together: its latency is its slowest sample's.
        prefill = std::max(prefill, r.prefill_ms);
        decode = std::max(decode, r.decode_ms);
        ptok += r.prompt_tokens;
        gtok += r.generated_tokens;
      }
      // The engine's own timing; the wall time since the previous example ended when it reports none.
      double latency = prefill + decode > 0 ? prefill + decode : wall_ms;
      ParsedAnswer answer = majority_vote(answers);
      Scored sc = score_answer(task, ex, answer);
      const std::string& formatted = prompts[k * size_t(n_samples)];
      nlohmann::json rec = {{"task", task.name},
                            {"split", p.split.split},
                            {"id", ex.id},
                            {"prompt", formatted},
                            {"prompt_sha256", sha256_hex(formatted)},
                            {"raw", raw},
                            {"finish_reason", finish},
                            {"answer", answer.to_json()},
                            {"gold", gold_json(task, ex)},
                            {"correct", is_correct(task, sc)},
                            {"prompt_tokens", ptok},
                            {"generated_tokens", gtok},
                            {"latency_ms", latency},
                            {"prefill_ms", prefill},
                            {"decode_ms", decode}};
      if (n_samples > 1) {
        auto votes = nlohmann::json::array();
        for (auto& a : answers) votes.push_back(a.to_json());
        rec["votes"] = votes;
      }
      if (has_span_gold(task)) rec.update({{"tp", sc.tp}, {"fp", sc.fp}, {"fn", sc.fn}});
      writer.append(rec);
      progress.advance(1);
    };
    BatchControl control;
    control.max_in_flight = cfg.batch * n_samples;
    control.on_step = [&](size_t new_tokens) {  // the line moves while long answers are being generated
      tokens_generated += new_tokens;
      progress.set_note(note());
    };
    control.on_finish = [&](size_t i, const GenerationResult& r) {
      if (i >= results.size()) fail("generator reported prompt {} of {}", i, results.size());
      results[i] = r;
      size_t k = i / size_t(n_samples);
      if (--samples_left[k] > 0) return;
      auto now = std::chrono::steady_clock::now();
      write_record(k, std::chrono::duration<double, std::milli>(now - last_finish).count());
      last_finish = now;
    };
    if (prompts.empty()) continue;  // this task's examples are all done
    try {
      gen.generate(prompts, opts, control);
    } catch (const PromptTooLong& err) {  // name the example, not the generator's prompt index
      fail("task {}, example {}: {}", task.name, pending[err.request / size_t(n_samples)]->id, err.what());
    }
    for (size_t k = 0; k < pending.size(); k++)
      if (samples_left[k] > 0) fail("task {}: the generator never finished example {}", task.name, pending[k]->id);
  }
  nlohmann::json memory = gen.memory_report();
  return score_run(cfg.out_dir, id, cfg.limit, cfg.bootstrap_resamples, memory, describe_environment(memory),
                   cfg.command_line);
}

nlohmann::json rescore_run(const fs::path& run_dir, int bootstrap_resamples) {
  fs::path config_file = run_dir / "config.json";
  if (!fs::is_regular_file(config_file)) fail("{}: not a run folder (no config.json)", run_dir.string());
  FolderLock lock(run_dir, "biomedq rescore");
  auto id = nlohmann::json::parse(read_file(config_file), nullptr, false);
  if (id.is_discarded()) fail("{}: not valid JSON", config_file.string());
  nlohmann::json memory = nlohmann::json::object(), environment = nlohmann::json::object();
  size_t limit = 0;
  std::string command_line;
  if (fs::exists(run_dir / "results.json")) {
    auto old = nlohmann::json::parse(read_file(run_dir / "results.json"), nullptr, false);
    if (!old.is_discarded()) {
      memory = old.value("memory", memory);
      environment = old.value("environment", environment);
      limit = old.value("limit", size_t(0));
      command_line = old.value("command", "");
    }
  }
  return score_run(run_dir, id, limit, bootstrap_resamples, memory, environment, command_line);
}

nlohmann::json compare_runs(const fs::path& run_a, const fs::path& run_b, uint64_t seed, int resamples,
                            std::vector<nlohmann::ordered_json>* flips) {
  auto load_id = [](const fs::path& dir) {
    auto j = nlohmann::json::parse(read_file(dir / "config.json"), nullptr, false);
    if (j.is_discarded()) fail("{}: not valid JSON", (dir / "config.json").string());
    return j;
  };
  nlohmann::json id_a = load_id(run_a), id_b = load_id(run_b);
  auto samples_a = read_samples(run_a / "samples.jsonl", false), samples_b = read_samples(run_b / "samples.jsonl", false);
  nlohmann::ordered_json tasks = nlohmann::ordered_json::object();
  for (auto& task : resolve_tasks(id_a)) {
    auto names_b = id_b["tasks"];
    if (std::find(names_b.begin(), names_b.end(), task.name) == names_b.end()) continue;
    PreparedTask pa = prepare_task(task, id_a, 0), pb = prepare_task(task, id_b, 0);
    if (pa.data.sha256 != pb.data.sha256) fail("task {}: the two runs evaluated different data files", task.name);
    TaskSamples ta = rescore_samples(pa, id_a, samples_a), tb = rescore_samples(pb, id_b, samples_b);
    const std::vector<Scored>& sa = ta.scored;
    const std::vector<Scored>& sb = tb.scored;
    // Pair by example id: only the examples both runs finished, in id order.
    std::map<std::string, size_t> in_b;
    for (size_t i = 0; i < sb.size(); i++) in_b[sb[i].id] = i;
    std::vector<std::pair<std::string, std::pair<size_t, size_t>>> pairs;
    for (size_t i = 0; i < sa.size(); i++)
      if (auto it = in_b.find(sa[i].id); it != in_b.end()) pairs.push_back({sa[i].id, {i, it->second}});
    std::sort(pairs.begin(), pairs.end());
    std::vector<Scored> a, b;
    auto right_to_wrong = nlohmann::json::array(), wrong_to_right = nlohmann::json::array();
    // One run's side of a flipped example (a record lacks prompt or gold only when written by hand: null then).
    auto side = [](const fs::path& dir, const TaskSamples& ts, size_t i, bool correct) {
      const nlohmann::json& rec = *ts.records[i];
      return nlohmann::ordered_json{{"run", dir.string()},
                                    {"prompt", rec.value("prompt", nlohmann::json())},
                                    {"raw", rec["raw"]},
                                    {"answer", ts.answers[i].to_json()},
                                    {"correct", correct}};
    };
    for (auto& [ex_id, ij] : pairs) {
      a.push_back(sa[ij.first]);
      b.push_back(sb[ij.second]);
      bool ca = is_correct(task, a.back()), cb = is_correct(task, b.back());
      if (ca == cb) continue;
      (ca ? right_to_wrong : wrong_to_right).push_back(ex_id);
      if (flips)
        flips->push_back({{"task", task.name},
                          {"id", ex_id},
                          {"direction", ca ? "right_to_wrong" : "wrong_to_right"},
                          {"gold", ta.records[ij.first]->value("gold", nlohmann::json())},
                          {"a", side(run_a, ta, ij.first, ca)},
                          {"b", side(run_b, tb, ij.second, cb)}});
    }
    nlohmann::ordered_json diff = nlohmann::ordered_json::object();
    for (auto& [name, iv] : paired_bootstrap(metric_spec(task), a, b, derive_seed(seed, "paired:" + task.name), resamples))
      diff[name] = {{"b_minus_a", iv.value}, {"ci95", {iv.lo, iv.hi}}};
    // McNemar's test on the per-example correctness (continuity-corrected chi-square, 1 degree of freedom).
    double n_rw = double(right_to_wrong.size()), n_wr = double(wrong_to_right.size());
    double n_disc = n_rw + n_wr;
    double corrected = std::max(0.0, std::fabs(n_rw - n_wr) - 1.0);
    double chi2 = n_disc > 0 ? corrected * corrected / n_disc : 0.0;
    tasks[task.name] = {{"paired_examples", pairs.size()},
                        {"primary_metric", task.primary_metric},
                        {"difference", diff},
                        {"right_to_wrong", right_to_wrong.size()},
                        {"wrong_to_right", wrong_to_right.size()},
                        {"right_to_wrong_ids", right_to_wrong},
                        {"wrong_to_right_ids", wrong_to_right},
                        {"mcnemar", {{"chi2", chi2}, {"p_value", n_disc > 0 ? std::erfc(std::sqrt(chi2 / 2)) : 1.0}}}};
  }
  return {{"run_a", run_a.string()}, {"run_b", run_b.string()}, {"resamples", resamples}, {"tasks", tasks}};
}

}  // namespace bq::eval
