#include "eval/run_folder.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/files.h"
#include "core/folder_lock.h"

namespace bq::eval {

namespace {

// j[key] into `out` when it is there (and not null); a value of the wrong type is an Error naming `where`.
template <typename T>
void read_key(const nlohmann::json& j, const char* key, T& out, const std::string& where, bool required = false) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) fail("{}: no '{}'", where, key);
    return;
  }
  try {
    out = it->get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: '{}' is {}, a value of the wrong type", where, key, it->dump());
  }
}

nlohmann::json parse_json_file(const fs::path& file) {
  auto j = nlohmann::json::parse(read_file(file), nullptr, false);
  if (j.is_discarded()) fail("{}: not valid JSON", file.string());
  return j;
}

}  // namespace

std::string RunConfig::precision() const {
  return model_info.is_object() ? model_info.value("precision", "?") : "?";
}

nlohmann::json RunConfig::to_json() const {
  return {{"model", model},
          {"model_info", model_info},
          {"tasks", tasks},
          {"tasks_dir", tasks_dir},
          {"data_dir", data_dir},
          {"split", split},
          {"limit_random", limit_random},
          {"shots", shots},
          {"prompting", prompting},
          {"sc_samples", sc_samples},
          {"temperature", temperature},
          {"top_p", top_p},
          {"seed", seed},
          {"prompts", prompts},
          {"chat_template", chat_template},
          {"lenient", lenient},
          {"answer_lengths", answer_lengths}};
}

RunConfig RunConfig::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) fail("{}: not a run configuration (a JSON object)", where);
  RunConfig c;
  read_key(j, "model", c.model, where);
  read_key(j, "model_info", c.model_info, where);
  read_key(j, "tasks", c.tasks, where);
  read_key(j, "tasks_dir", c.tasks_dir, where);
  read_key(j, "data_dir", c.data_dir, where);
  read_key(j, "split", c.split, where);
  read_key(j, "limit_random", c.limit_random, where);
  read_key(j, "shots", c.shots, where);
  read_key(j, "prompting", c.prompting, where);
  read_key(j, "sc_samples", c.sc_samples, where);
  read_key(j, "temperature", c.temperature, where);
  read_key(j, "top_p", c.top_p, where);
  read_key(j, "seed", c.seed, where);
  read_key(j, "prompts", c.prompts, where);
  read_key(j, "chat_template", c.chat_template, where);
  read_key(j, "lenient", c.lenient, where);
  read_key(j, "answer_lengths", c.answer_lengths, where);
  return c;
}

nlohmann::json SampleRecord::to_json() const {
  nlohmann::json j = {{"task", task},
                      {"split", split},
                      {"id", id},
                      {"prompt_sha256", prompt_sha256},
                      {"raw", raw},
                      {"finish_reason", finish_reason},
                      {"answer", answer},
                      {"gold", gold},
                      {"correct", correct},
                      {"prompt_tokens", prompt_tokens},
                      {"generated_tokens", generated_tokens},
                      {"latency_ms", latency_ms},
                      {"prefill_ms", prefill_ms},
                      {"decode_ms", decode_ms}};
  if (prompt) j["prompt"] = *prompt;
  if (votes) j["votes"] = *votes;
  if (entity_counts) j.update({{"tp", (*entity_counts)[0]}, {"fp", (*entity_counts)[1]}, {"fn", (*entity_counts)[2]}});
  return j;
}

SampleRecord SampleRecord::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) fail("{}: not a sample record (a JSON object)", where);
  SampleRecord r;
  read_key(j, "task", r.task, where, true);
  read_key(j, "id", r.id, where, true);
  read_key(j, "raw", r.raw, where, true);
  read_key(j, "split", r.split, where);
  if (j.contains("prompt")) read_key(j, "prompt", r.prompt.emplace(), where, true);
  read_key(j, "prompt_sha256", r.prompt_sha256, where);
  read_key(j, "finish_reason", r.finish_reason, where);
  read_key(j, "answer", r.answer, where);
  read_key(j, "gold", r.gold, where);
  read_key(j, "correct", r.correct, where);
  read_key(j, "prompt_tokens", r.prompt_tokens, where);
  read_key(j, "generated_tokens", r.generated_tokens, where);
  read_key(j, "latency_ms", r.latency_ms, where);
  read_key(j, "prefill_ms", r.prefill_ms, where);
  read_key(j, "decode_ms", r.decode_ms, where);
  if (j.contains("votes")) read_key(j, "votes", r.votes.emplace(), where);
  if (j.contains("tp")) {
    auto& c = r.entity_counts.emplace();
    read_key(j, "tp", c[0], where, true);
    read_key(j, "fp", c[1], where, true);
    read_key(j, "fn", c[2], where, true);
  }
  return r;
}

nlohmann::ordered_json TaskScores::to_json() const {
  nlohmann::ordered_json shots_json = {{"k", shots.k}};
  if (!shots.source.empty()) {
    shots_json["source"] = shots.source;
  } else if (!shots.ids.empty()) {
    shots_json["split"] = shots.split;
    shots_json["ids"] = shots.ids;
  }
  nlohmann::ordered_json metrics_json = nlohmann::ordered_json::object();
  for (auto& [name, iv] : metrics) metrics_json[name] = {{"value", iv.value}, {"ci95", {iv.lo, iv.hi}}};
  return {
      {"task", task},
      {"type", type},
      {"task_file", task_file},
      {"task_file_sha256", task_file_sha256},
      {"split", split},
      {"split_fallback", split_fallback},
      {"split_label", split_label},
      {"data_files", data_files},
      {"examples_available", examples_available},
      {"examples_selected", examples_selected},
      {"examples_scored", examples_scored},
      {"malformed_rows_skipped", malformed_rows_skipped},
      {"shots", shots_json},
      {"primary_metric", primary_metric},
      {"metrics", metrics_json},
      {"unparsed", unparsed},
      {"duplicate_records_ignored", duplicate_records_ignored},
      {"unparsed_rate", unparsed_rate},
      {"efficiency",
       {{"latency_s", {{"mean", latency_s.mean}, {"sd", latency_s.sd}, {"p50", latency_s.p50}, {"p95", latency_s.p95}}},
        {"prompt_tokens", prompt_tokens},
        {"generated_tokens", generated_tokens},
        {"tokens_per_s", tokens_per_s}}},
  };
}

TaskScores TaskScores::from_json(const std::string& task, const nlohmann::json& j, const std::string& where_file) {
  const std::string where = fmt::format("{}: task {}", where_file, task);
  if (!j.is_object()) fail("{}: not a task's scores (a JSON object)", where);
  TaskScores t;
  t.task = task;
  read_key(j, "type", t.type, where);
  read_key(j, "task_file", t.task_file, where);
  read_key(j, "task_file_sha256", t.task_file_sha256, where);
  read_key(j, "split", t.split, where);
  read_key(j, "split_fallback", t.split_fallback, where);
  read_key(j, "split_label", t.split_label, where);
  read_key(j, "data_files", t.data_files, where);
  read_key(j, "examples_available", t.examples_available, where);
  read_key(j, "examples_selected", t.examples_selected, where);
  read_key(j, "examples_scored", t.examples_scored, where, true);
  read_key(j, "malformed_rows_skipped", t.malformed_rows_skipped, where);
  if (j.contains("shots")) {
    const auto& s = j["shots"];
    read_key(s, "k", t.shots.k, where + " shots");
    read_key(s, "split", t.shots.split, where + " shots");
    read_key(s, "ids", t.shots.ids, where + " shots");
    read_key(s, "source", t.shots.source, where + " shots");
  }
  read_key(j, "primary_metric", t.primary_metric, where, true);
  nlohmann::json metrics;
  read_key(j, "metrics", metrics, where, true);
  if (!metrics.is_object()) fail("{}: 'metrics' is not an object", where);
  for (auto& [name, m] : metrics.items()) {
    Interval& iv = t.metrics[name];
    std::array<double, 2> ci{};
    read_key(m, "value", iv.value, where + " metric " + name, true);
    read_key(m, "ci95", ci, where + " metric " + name, true);
    iv.lo = ci[0];
    iv.hi = ci[1];
  }
  if (!t.metrics.contains(t.primary_metric))
    fail("{}: no score of its primary metric '{}'", where, t.primary_metric);
  read_key(j, "unparsed", t.unparsed, where);
  read_key(j, "duplicate_records_ignored", t.duplicate_records_ignored, where);
  read_key(j, "unparsed_rate", t.unparsed_rate, where);
  nlohmann::json efficiency, latency;
  read_key(j, "efficiency", efficiency, where, true);
  read_key(efficiency, "latency_s", latency, where + " efficiency", true);
  read_key(latency, "mean", t.latency_s.mean, where + " latency_s", true);
  read_key(latency, "sd", t.latency_s.sd, where + " latency_s");
  read_key(latency, "p50", t.latency_s.p50, where + " latency_s");
  read_key(latency, "p95", t.latency_s.p95, where + " latency_s");
  read_key(efficiency, "prompt_tokens", t.prompt_tokens, where + " efficiency");
  read_key(efficiency, "generated_tokens", t.generated_tokens, where + " efficiency");
  read_key(efficiency, "tokens_per_s", t.tokens_per_s, where + " efficiency");
  return t;
}

const TaskScores* RunResults::find(const std::string& task) const {
  for (auto& t : tasks)
    if (t.task == task) return &t;
  return nullptr;
}

nlohmann::ordered_json RunResults::to_json() const {
  nlohmann::ordered_json tasks_json = nlohmann::ordered_json::object();
  for (auto& t : tasks) tasks_json[t.task] = t.to_json();
  nlohmann::ordered_json j = {{"format", "biomedq-results-1"},
                              {"config", config.to_json()},
                              {"limit", limit},
                              {"bootstrap", {{"resamples", bootstrap_resamples}, {"interval", "percentile 95%"}}},
                              {"environment", environment},
                              {"memory", memory},
                              {"throughput", throughput},
                              {"tasks", tasks_json}};
  if (!command.empty()) j["command"] = command;
  return j;
}

RunResults RunResults::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("config") || !j["config"].is_object() || !j.contains("tasks") ||
      !j["tasks"].is_object())
    fail("{}: not a biomedq results file (no config or tasks)", where);
  RunResults r;
  r.config = RunConfig::from_json(j["config"], where + ": config");
  read_key(j, "limit", r.limit, where);
  if (j.contains("bootstrap")) read_key(j["bootstrap"], "resamples", r.bootstrap_resamples, where + ": bootstrap");
  read_key(j, "environment", r.environment, where);
  read_key(j, "memory", r.memory, where);
  read_key(j, "throughput", r.throughput, where);
  read_key(j, "command", r.command, where);
  for (auto& [name, t] : j["tasks"].items()) r.tasks.push_back(TaskScores::from_json(name, t, where));
  return r;
}

RunConfig read_run_config(const fs::path& dir) {
  fs::path file = dir / kRunConfigFile;
  if (!fs::is_regular_file(file)) fail("{}: not a run folder (no {})", dir.string(), kRunConfigFile);
  return RunConfig::from_json(parse_json_file(file), file.string());
}

RunResults read_run_results(const fs::path& dir) {
  fs::path file = dir / kResultsFile;
  if (!fs::exists(file)) fail("{}: no {} (run eval, or rescore, first)", dir.string(), kResultsFile);
  return RunResults::from_json(parse_json_file(file), file.string());
}

RunFolder read_run_folder(const fs::path& dir) {
  RunFolder f;
  f.dir = dir;
  f.config = read_run_config(dir);
  f.samples = read_samples(dir / kSamplesFile, false);
  if (fs::exists(dir / kResultsFile)) f.results = read_run_results(dir);
  return f;
}

std::vector<SampleRecord> read_samples(const fs::path& file, bool repair) {
  std::vector<SampleRecord> out;
  if (!fs::exists(file)) return out;
  std::string text = read_file(file);
  size_t pos = 0, line = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    bool complete = eol != std::string::npos;
    std::string_view l(text.data() + pos, (complete ? eol : text.size()) - pos);
    line++;
    auto j = nlohmann::json::parse(l, nullptr, false);
    std::optional<SampleRecord> record;
    if (complete && !j.is_discarded()) try {
        record = SampleRecord::from_json(j, fmt::format("{}:{}", file.string(), line));
      } catch (const Error&) {
      }
    bool last = !complete || eol + 1 == text.size();
    if (!record) {
      if (!last) fail("{}:{}: not a sample record (the file is damaged before its last line)", file.string(), line);
      if (repair) fs::resize_file(file, pos);  // drop the half-written record of an interrupted run
      break;
    }
    out.push_back(std::move(*record));
    pos = eol + 1;
  }
  return out;
}

void write_run_config(const fs::path& dir, const RunConfig& config) {
  write_file_atomic(dir / kRunConfigFile, config.to_json().dump(2) + "\n");
}

void write_run_results(const fs::path& dir, const RunResults& results) {
  write_file_atomic(dir / kResultsFile, results.to_json().dump(2) + "\n");
}

SampleWriter::SampleWriter(const fs::path& dir) : path_((dir / kSamplesFile).string()) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd_ < 0) fail("{}: cannot open for appending: {}", path_, std::strerror(errno));
}

SampleWriter::~SampleWriter() {
  if (unsynced_) ::fsync(fd_);
  ::close(fd_);
}

void SampleWriter::sync() {
  if (!unsynced_) return;
  if (::fsync(fd_) != 0) fail("{}: fsync failed: {}", path_, std::strerror(errno));
  unsynced_ = false;
  synced_at_ = std::chrono::steady_clock::now();
}

void SampleWriter::append(const SampleRecord& record) {
  std::string line = record.to_json().dump() + "\n";
  size_t done = 0;
  while (done < line.size()) {
    ssize_t w = ::write(fd_, line.data() + done, line.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) fail("{}: write failed: {}", path_, std::strerror(errno));
    done += size_t(w);
  }
  unsynced_ = true;
  if (std::chrono::steady_clock::now() - synced_at_ >= std::chrono::seconds(1)) sync();
}

void check_run_folder(const fs::path& dir) {
  if (!fs::exists(dir)) return;
  if (!fs::is_directory(dir)) fail("{}: --out must be a folder, and this is a file", dir.string());
  bool has_config = fs::exists(dir / kRunConfigFile);
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    bool ours = name == kRunConfigFile || name == kSamplesFile || name == kResultsFile ||
                name == FolderLock::file_name ||
                (name.starts_with(std::string(kResultsFile) + ".") && name.ends_with(".tmp"));
    if (!ours || (name == kSamplesFile && !has_config))
      fail("{}: not a biomedq run folder (it holds {}); give --out a new or empty folder", dir.string(), name);
  }
  if (has_config) {
    auto old = nlohmann::json::parse(read_file(dir / kRunConfigFile), nullptr, false);
    if (old.is_discarded() || !old.is_object() || !old.contains("tasks") || !old.contains("prompting"))
      fail("{}: not a biomedq run's configuration; give --out a new or empty folder", (dir / kRunConfigFile).string());
  }
}

namespace {

// Why a run folder is not a finished run, naming the folder or its results.json ("" when it is finished).
std::string unfinished_reason(const fs::path& dir) {
  fs::path file = dir / kResultsFile;
  if (!fs::exists(file)) return dir.string() + ": no results.json (not finished: run eval, or rescore, first)";
  auto j = nlohmann::json::parse(read_file(file), nullptr, false);
  if (j.is_discarded()) return file.string() + ": not valid JSON (partly written?)";
  RunResults r;
  try {
    r = RunResults::from_json(j, file.string());
  } catch (const Error& e) {
    return e.what();
  }
  if (r.config.tasks.empty()) return file.string() + ": its config lists no tasks";
  for (auto& task : r.config.tasks)
    if (!r.find(task))
      return fmt::format("{}: no results for task {} of its configuration (a partial run)", file.string(),
                         nlohmann::json(task).dump());
  return "";
}

bool looks_like_run_folder(const fs::path& dir) {
  for (const char* f : {kResultsFile, kRunConfigFile, kSamplesFile})
    if (fs::exists(dir / f)) return true;
  return false;
}

}  // namespace

RunSelection select_finished_runs(const std::vector<fs::path>& paths) {
  RunSelection out;
  auto consider = [&](const fs::path& dir) {
    std::string why = unfinished_reason(dir);
    if (why.empty()) out.finished.push_back(dir);
    else out.skipped.push_back(why);
  };
  // A parent's subfolders in name order, each a run folder or, above the depth limit, a parent itself.
  auto subfolders = [](const fs::path& parent) {
    std::vector<fs::path> inside;
    for (auto& e : fs::directory_iterator(parent))
      if (e.is_directory() && !e.is_symlink() && !e.path().filename().string().starts_with("."))
        inside.push_back(e.path());
    std::sort(inside.begin(), inside.end());
    return inside;
  };
  std::function<void(const fs::path&, int)> look_under = [&](const fs::path& parent, int depth) {
    const std::vector<fs::path> inside = subfolders(parent);
    if (inside.empty() && depth == 1)
      out.skipped.push_back(parent.string() + ": neither a run folder nor a folder of run folders");
    for (auto& d : inside) {
      if (looks_like_run_folder(d) || depth == kRunSearchDepth || subfolders(d).empty()) consider(d);
      else look_under(d, depth + 1);
    }
  };
  for (auto& p : paths) {
    if (!fs::is_directory(p)) {
      out.skipped.push_back(p.string() + (fs::exists(p) ? ": not a folder" : ": not found"));
    } else if (looks_like_run_folder(p)) {
      consider(p);
    } else {
      look_under(p, 1);
    }
  }
  if (out.finished.empty()) {
    std::string why;
    for (auto& s : out.skipped) why += "\n  " + s;
    fail("no finished run among the folders given:{}", why.empty() ? " none given" : why);
  }
  return out;
}

std::vector<std::pair<fs::path, fs::path>> pairs_with_baseline(const fs::path& folder, const std::string& baseline) {
  const std::vector<fs::path> runs = select_finished_runs({folder}).finished;
  std::vector<RunConfig> configs;
  for (const fs::path& r : runs) configs.push_back(read_run_config(r));
  // Everything but the precision: the model (by name and content), prompting, shots, samples, data and prompts.
  auto same_cell = [](const RunConfig& a, const RunConfig& b) {
    return a.model == b.model && a.model_info.value("path", "") == b.model_info.value("path", "") &&
           a.model_info.value("synthetic", "") == b.model_info.value("synthetic", "") && a.tasks == b.tasks &&
           a.data_dir == b.data_dir && a.split == b.split && a.shots == b.shots && a.prompting == b.prompting &&
           a.sc_samples == b.sc_samples && a.prompts == b.prompts && a.seed == b.seed;
  };
  std::vector<std::pair<fs::path, fs::path>> pairs;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (configs[i].precision() == baseline) continue;
    for (size_t j = 0; j < runs.size(); ++j)
      if (configs[j].precision() == baseline && same_cell(configs[i], configs[j])) {
        pairs.emplace_back(runs[j], runs[i]);
        break;
      }
  }
  if (pairs.empty())
    fail("{}: no finished run has a {} run of the same model and prompting to be compared with (--baseline)",
         folder.string(), baseline);
  return pairs;
}

}  // namespace bq::eval
