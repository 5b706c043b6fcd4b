#include "eval/run.h"

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
  std::vector<const SampleRecord*> records;  // the record each scored sample came from
  std::vector<ParsedAnswer> answers;           // its re-parsed answer (the majority over its raw outputs)
  std::vector<double> latency_s;
  double prompt_tokens = 0, generated_tokens = 0;
};

TaskSamples rescore_samples(const PreparedTask& p, const RunConfig& cfg, const std::vector<SampleRecord>& samples) {
  const TaskConfig& task = p.task;
  std::map<std::string, const Example*> by_id;
  for (auto& ex : p.data.examples) by_id[ex.id] = &ex;
  TaskSamples out;
  std::map<std::string, std::string> prompt_of;  // example id -> its first record's prompt hash
  for (auto& r : samples) {
    if (r.task != task.name) continue;
    const std::string& ex_id = r.id;
    auto it = by_id.find(ex_id);
    if (it == by_id.end()) fail("samples.jsonl: task {} example '{}' is not in {}", task.name, ex_id, p.data.file.string());
    const std::string& prompt_hash = r.prompt_sha256;
    if (auto [seen, fresh] = prompt_of.emplace(ex_id, prompt_hash); !fresh) {
      if (seen->second != prompt_hash)
        fail("samples.jsonl: task {} example '{}' has two records with different prompts (two runs mixed in one "
             "folder)", task.name, ex_id);
      out.duplicates++;
      continue;
    }
    std::vector<ParsedAnswer> answers;
    for (auto& raw : r.raw) answers.push_back(parse_answer(task, *it->second, raw, cfg.cot()));
    out.answers.push_back(majority_vote(answers));
    out.records.push_back(&r);
    out.scored.push_back(score_answer(task, *it->second, out.answers.back()));
    out.latency_s.push_back(r.latency_ms / 1000.0);
    out.prompt_tokens += double(r.prompt_tokens);
    out.generated_tokens += double(r.generated_tokens);
  }
  return out;
}

TaskScores score_task(const PreparedTask& p, const RunConfig& cfg, const std::vector<SampleRecord>& samples,
                      int resamples) {
  const TaskConfig& task = p.task;
  TaskSamples ts = rescore_samples(p, cfg, samples);
  if (ts.duplicates)
    std::fprintf(stderr, "warning: samples.jsonl: %zu repeated records of task %s ignored (the first of each kept)\n",
                 ts.duplicates, task.name.c_str());
  TaskScores out;
  out.metrics = bootstrap_metrics(metric_spec(task), ts.scored, derive_seed(cfg.seed, "bootstrap:" + task.name), resamples);
  for (auto& s : ts.scored) out.unparsed += !s.parsed;
  Stats lat = describe(ts.latency_s);
  double total_s = 0;
  for (double x : ts.latency_s) total_s += x;

  out.split_label = p.split.split;
  if (p.split.fallback) out.split_label = "dev (no test split in the data; dev used instead)";
  if (auto note = task.split_notes.find(p.split.split); note != task.split_notes.end())
    out.split_label += " [" + note->second + "]";
  out.shots.k = cfg.shots;
  if (cfg.prompts == "benchmark") {
    out.shots.source = "examples written in " + p.benchmark_file.string();
  } else {
    out.shots.split = p.shot_split;
    for (auto& s : p.shots) out.shots.ids.push_back(s.id);
  }
  out.task = task.name;
  out.type = task.type;
  out.task_file = task.source.string();
  out.task_file_sha256 = sha256_file(task.source);
  out.split = p.split.split;
  out.split_fallback = p.split.fallback;
  out.data_files = p.data_files;
  out.examples_available = p.data.examples.size();
  out.examples_selected = p.selected.size();
  out.examples_scored = ts.scored.size();
  out.malformed_rows_skipped = p.data.skipped;
  out.primary_metric = task.primary_metric;
  out.duplicate_records_ignored = ts.duplicates;
  out.unparsed_rate = ts.scored.empty() ? 0.0 : double(out.unparsed) / double(ts.scored.size());
  out.latency_s = {lat.mean, lat.sd, lat.p50, lat.p95};
  out.prompt_tokens = ts.prompt_tokens;
  out.generated_tokens = ts.generated_tokens;
  out.tokens_per_s = total_s > 0 ? ts.generated_tokens / total_s : 0.0;
  return out;
}

std::vector<TaskConfig> resolve_tasks(const RunConfig& cfg) {
  auto all = load_task_configs(cfg.tasks_dir);
  std::vector<TaskConfig> out;
  for (auto& name : cfg.tasks) out.push_back(find_task(all, name));
  return out;
}

// Every task of the run, its data read (and hashed) once for the whole run.
std::vector<PreparedTask> prepare_tasks(const RunConfig& cfg, size_t limit) {
  std::vector<PreparedTask> out;
  for (auto& task : resolve_tasks(cfg)) out.push_back(prepare_task(task, cfg, limit));
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

// The run's results from its samples, written to results.json. `results` brings what is kept as first recorded
// (memory, environment, command) and the limit; its config and tasks are filled in here.
RunResults score_run(const fs::path& run_dir, const std::vector<PreparedTask>& prepared, RunResults results,
                     int resamples) {
  auto samples = read_samples(run_dir / kSamplesFile, false);
  results.bootstrap_resamples = resamples;
  results.tasks.clear();
  for (auto& p : prepared) results.tasks.push_back(score_task(p, results.config, samples, resamples));
  write_run_results(run_dir, results);
  return results;
}

}  // namespace

RunConfig eval_identity(const EvalConfig& cfg, const std::string& model_name) {
  if (cfg.prompting != "instruction" && cfg.prompting != "cot" && cfg.prompting != "sc")
    fail("--prompting is '{}', expected instruction, cot or sc", cfg.prompting);
  if (cfg.prompts != "own" && cfg.prompts != "benchmark") fail("--prompts is '{}', expected own or benchmark", cfg.prompts);
  if (cfg.prompts == "benchmark" && cfg.prompting == "cot")
    fail("--prompting cot needs biomedq's own prompts (the benchmark's prompt files ask for the answer only)");
  if (cfg.answer_lengths != "task" && cfg.answer_lengths != "gold")
    fail("--answer-lengths is '{}', expected task or gold", cfg.answer_lengths);
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
  RunConfig id;
  id.model = model_name;
  id.model_info = cfg.model_info;
  id.tasks = names;
  id.tasks_dir = fs::absolute(tasks_dir).lexically_normal().string();
  id.data_dir = fs::absolute(cfg.data_dir).lexically_normal().string();
  id.split = cfg.split;
  id.limit_random = cfg.limit_random;
  id.shots = cfg.shots;
  id.prompting = cfg.prompting;
  id.sc_samples = sc ? cfg.sc_samples : 1;
  id.temperature = sc ? cfg.temperature : 0.0f;  // recorded as the float it is sampled with
  id.top_p = sc ? cfg.top_p : 1.0f;
  id.seed = cfg.seed;
  id.prompts = cfg.prompts;
  id.chat_template = cfg.chat;
  id.lenient = cfg.lenient;
  id.answer_lengths = cfg.answer_lengths;
  return id;
}

void check_eval(const EvalConfig& cfg) {
  if (cfg.out_dir.empty()) fail("no run folder given (--out)");
  RunConfig id = eval_identity(cfg, "");
  prepare_tasks(id, cfg.limit);
  check_run_folder(cfg.out_dir);
}

std::vector<nlohmann::json> export_prompts(const EvalConfig& cfg) {
  RunConfig id = eval_identity(cfg, "");
  std::vector<nlohmann::json> out;
  for (auto& p : prepare_tasks(id, cfg.limit))
    for (auto& rec : prompt_records(p, id)) out.push_back(std::move(rec));
  return out;
}

namespace {

// What results.json records of the generation an eval invocation ran (a resumed run: this invocation's part).
nlohmann::json eval_throughput(const LoopStats& s, double wall_s, int max_in_flight) {
  auto rate = [](double n, double ms) { return ms > 0 ? 1000.0 * n / ms : 0.0; };
  const double mean_decode_batch = s.decode_steps ? double(s.decode_rows) / double(s.decode_steps) : 0.0;
  return {{"wall_s", wall_s},
          {"prompt_tokens", s.prompt_tokens},
          {"prompt_tokens_reused", s.prompt_tokens_reused},
          {"generated_tokens", s.generated_tokens},
          {"generated_tokens_per_s", wall_s > 0 ? double(s.generated_tokens) / wall_s : 0.0},
          {"prefill_steps", s.prefill_steps},
          {"decode_steps", s.decode_steps},
          {"prefill_tokens_per_s", rate(double(s.prompt_tokens), s.prefill_ms)},
          {"decode_tokens_per_s", rate(double(s.decode_rows), s.decode_ms)},
          {"prefill_fraction_of_wall", wall_s > 0 ? s.prefill_ms / 1000.0 / wall_s : 0.0},
          // Where the wall time went: forward steps, the sequences' caches, and the rest (rendering and tokenizing
          // prompts, the loop's own work, writing and scoring samples).
          {"prefill_s", s.prefill_ms / 1000.0},
          {"decode_s", s.decode_ms / 1000.0},
          {"cache_s", s.cache_ms / 1000.0},
          {"other_s", std::max(0.0, wall_s - (s.prefill_ms + s.decode_ms + s.cache_ms) / 1000.0)},
          {"preemptions", s.preemptions},
          {"mean_decode_batch", mean_decode_batch},
          {"max_in_flight", max_in_flight},
          {"occupancy", max_in_flight > 0 ? mean_decode_batch / max_in_flight : 0.0}};
}

}  // namespace

nlohmann::json run_eval(TextGenerator& gen, const EvalConfig& cfg) {
  RunConfig id = eval_identity(cfg, cfg.model_name.empty() ? gen.model_name() : cfg.model_name);
  if (cfg.out_dir.empty()) fail("no run folder given (--out)");
  // Everything that can be refused is refused before the folder is touched.
  std::vector<PreparedTask> prepared = prepare_tasks(id, cfg.limit);
  check_run_folder(cfg.out_dir);
  fs::create_directories(cfg.out_dir);
  FolderLock lock(cfg.out_dir, "biomedq eval" + (cfg.command_line.empty() ? "" : ": " + cfg.command_line));
  check_run_folder(cfg.out_dir);  // again, now that no one else can change it

  fs::path config_file = cfg.out_dir / kRunConfigFile;
  auto finished = read_samples(cfg.out_dir / kSamplesFile, true);
  const nlohmann::json identity = id.to_json();
  if (fs::exists(config_file)) {
    auto old = nlohmann::json::parse(read_file(config_file), nullptr, false);
    if (old != identity && !finished.empty()) {
      std::string diff;
      for (auto& [k, v] : identity.items())
        if (!old.contains(k) || old[k] != v) diff += fmt::format("\n  {}: {} -> {}", k, old.value(k, nlohmann::json()).dump(), v.dump());
      fail("{}: this run folder holds {} samples of a run with another configuration; use a new --out folder.{}",
           cfg.out_dir.string(), finished.size(), diff);
    }
    // A folder whose run never finished a sample holds nothing to lose: it takes the new configuration.
    if (old != identity) write_run_config(cfg.out_dir, id);
  } else {
    write_run_config(cfg.out_dir, id);
  }

  std::set<std::string> done;
  for (auto& r : finished) done.insert(r.task + '\x1f' + r.id);
  SampleWriter writer(cfg.out_dir);

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
  LoopStats loop_stats;
  const auto generation_start = std::chrono::steady_clock::now();
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
      // Thinking off: the study's prompts ask for the answer (a <think> block would be dropped before parsing).
      std::string formatted = gen.format_prompt({{"user", build_prompt(p, id, *ex)}}, cfg.chat, false);
      const int max_new_tokens = cfg.answer_lengths == "gold"
                                     ? std::max(1, gen.count_tokens(gold_answer_text(task, *ex)))
                                     : cot ? task.max_new_tokens_cot : task.max_new_tokens;
      for (int s = 0; s < n_samples; s++) {
        SamplingOptions o;
        o.max_new_tokens = max_new_tokens;
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
      SampleRecord rec;
      std::vector<ParsedAnswer> answers;
      for (int s = 0; s < n_samples; s++) {
        const GenerationResult& r = results[k * size_t(n_samples) + size_t(s)];
        rec.raw.push_back(r.text);
        rec.finish_reason.push_back(r.finish_reason);
        answers.push_back(parse_answer(task, ex, r.text, cot));
        // The samples of one example decode together: its latency is its slowest sample's.
        rec.prefill_ms = std::max(rec.prefill_ms, r.prefill_ms);
        rec.decode_ms = std::max(rec.decode_ms, r.decode_ms);
        rec.prompt_tokens += r.prompt_tokens;
        rec.generated_tokens += r.generated_tokens;
      }
      // The engine's own timing; the wall time since the previous example ended when it reports none.
      rec.latency_ms = rec.prefill_ms + rec.decode_ms > 0 ? rec.prefill_ms + rec.decode_ms : wall_ms;
      ParsedAnswer answer = majority_vote(answers);
      Scored sc = score_answer(task, ex, answer);
      rec.task = task.name;
      rec.split = p.split.split;
      rec.id = ex.id;
      rec.prompt = prompts[k * size_t(n_samples)];
      rec.prompt_sha256 = sha256_hex(*rec.prompt);
      rec.answer = answer.to_json();
      rec.gold = gold_json(task, ex);
      rec.correct = is_correct(task, sc);
      if (n_samples > 1) {
        rec.votes = nlohmann::json::array();
        for (auto& a : answers) rec.votes->push_back(a.to_json());
      }
      if (has_span_gold(task)) rec.entity_counts = std::array{sc.tp, sc.fp, sc.fn};
      writer.append(rec);
      progress.advance(1);
    };
    BatchControl control;
    control.max_in_flight = cfg.batch * n_samples;
    control.stats = &loop_stats;
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
  writer.sync();
  RunResults results;
  results.config = id;
  results.limit = cfg.limit;
  results.memory = gen.memory_report();
  results.throughput = eval_throughput(
      loop_stats, std::chrono::duration<double>(std::chrono::steady_clock::now() - generation_start).count(),
      cfg.batch * n_samples);
  if (!cfg.model_load.is_null()) results.throughput["model_load"] = cfg.model_load;
  results.environment = describe_environment(results.memory);
  results.command = cfg.command_line;
  return score_run(cfg.out_dir, prepared, results, cfg.bootstrap_resamples).to_json();
}

nlohmann::json rescore_run(const fs::path& run_dir, int bootstrap_resamples) {
  if (!fs::is_regular_file(run_dir / kRunConfigFile)) fail("{}: not a run folder (no config.json)", run_dir.string());
  FolderLock lock(run_dir, "biomedq rescore");
  RunResults results;
  // What the run recorded as it ran (memory, environment, limit, command) is kept; a results file that cannot be
  // read is rewritten from the samples.
  if (fs::exists(run_dir / kResultsFile)) try {
      results = read_run_results(run_dir);
    } catch (const Error&) {
    }
  results.config = read_run_config(run_dir);
  return score_run(run_dir, prepare_tasks(results.config, results.limit), results, bootstrap_resamples).to_json();
}

nlohmann::json compare_runs(const fs::path& run_a, const fs::path& run_b, uint64_t seed, int resamples,
                            std::vector<nlohmann::ordered_json>* flips) {
  RunFolder a_run = read_run_folder(run_a), b_run = read_run_folder(run_b);
  const RunConfig &id_a = a_run.config, &id_b = b_run.config;
  const auto &samples_a = a_run.samples, &samples_b = b_run.samples;
  nlohmann::ordered_json tasks = nlohmann::ordered_json::object();
  for (auto& task : resolve_tasks(id_a)) {
    if (std::find(id_b.tasks.begin(), id_b.tasks.end(), task.name) == id_b.tasks.end()) continue;
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
      const SampleRecord& rec = *ts.records[i];
      return nlohmann::ordered_json{{"run", dir.string()},
                                    {"prompt", rec.prompt ? nlohmann::json(*rec.prompt) : nlohmann::json()},
                                    {"raw", rec.raw},
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
                          {"gold", ta.records[ij.first]->gold},
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
