#include "sweep/run_cells.h"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <memory>

#include "core/error.h"
#include "core/files.h"
#include "core/folder_lock.h"
#include "eval/open_model.h"
#include "eval/run.h"

namespace bq::sweep {

namespace {

// The cells of one model and precision next to each other, groups in the order they first appear.
std::vector<size_t> grouped_by_model(const std::vector<Cell>& cells, const std::vector<size_t>& indices) {
  std::vector<size_t> out, rest = indices;
  while (!rest.empty()) {
    const Cell& head = cells[rest.front()];
    std::vector<size_t> later;
    for (size_t i : rest)
      (cells[i].model == head.model && cells[i].precision == head.precision ? out : later).push_back(i);
    rest = std::move(later);
  }
  return out;
}

void record_error(const Cell& c, const std::string& message) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  const std::time_t now = std::time(nullptr);
  char when[32] = {};
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  const char* job = std::getenv("SLURM_JOB_ID");
  fs::create_directories(c.dir);
  write_file_atomic(c.dir / kCellErrorFile, fmt::format("{}\nat {} on {}{}\n", message, when, host,
                                                        job ? fmt::format(" (Slurm job {})", job) : ""));
}

}  // namespace

ShardTally run_cells(const SweepFile& s, const std::vector<Cell>& cells, const std::vector<size_t>& indices,
                     std::FILE* log) {
  ShardTally tally;
  std::unique_ptr<Engine> engine;
  nlohmann::json model_info;
  const auto say = [log](const char* what, const Cell& c, const std::string& detail) {
    std::fprintf(log, "%-10s %s%s\n", what, c.name.c_str(), detail.c_str());
    std::fflush(log);  // a job's log shows each cell as it ends
  };
  const Cell* loaded = nullptr;  // the model and precision `engine` holds
  std::string load_error;        // why that model did not load (its other cells fail the same way)
  for (size_t i : grouped_by_model(cells, indices)) {
    const Cell& c = cells[i];
    if (const std::string why = unrunnable_reason(s, c); !why.empty()) {
      say("not run", c, ": " + why);
      tally.unrunnable++;
      continue;
    }
    const CellState state = cell_state(c.dir);
    if (state == CellState::done || state == CellState::running) {
      say(state == CellState::done ? "done" : "elsewhere", c, "");
      (state == CellState::done ? tally.already : tally.elsewhere)++;
      continue;
    }
    const auto start = std::chrono::steady_clock::now();
    try {
      if (!loaded || loaded->model != c.model || loaded->precision != c.precision) {
        engine.reset();  // the previous model's memory is given back before the next one loads
        loaded = &c;
        load_error.clear();
        const SweepModel& m = s.models[c.model];
        EngineOptions options;
        options.device = s.device;
        options.precision = c.precision;
        options.batch_invariant = s.batch_invariant;
        const eval::ModelSource source{m.path, m.path.empty() ? m.preset : "", 0, {},
                                       s.device == "cuda" && s.gpus_per_job > 1 ? "all" : ""};
        try {
          engine = eval::open_model(source, options, s.batch * c.prompting.samples, model_info);
        } catch (const std::exception& e) {
          load_error = e.what();
        }
      }
      if (!engine) fail("the model did not load: {}", load_error);
      eval::EvalConfig cfg = cell_eval_config(s, c);
      cfg.model_info = model_info;
      eval::check_eval(cfg);
      eval::run_eval(*engine, cfg);
      fs::remove(c.dir / kCellErrorFile);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      say("finished", c, fmt::format(" ({:.1f} s)", seconds));
      tally.finished++;
    } catch (const std::exception& e) {
      if (FolderLock::held(c.dir)) {  // another process took the folder between the state check and the lock
        say("elsewhere", c, "");
        tally.elsewhere++;
        continue;
      }
      record_error(c, e.what());
      say("failed", c, std::string(": ") + e.what());
      tally.failed++;
    }
  }
  return tally;
}

}  // namespace bq::sweep
