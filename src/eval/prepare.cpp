#include "eval/prepare.h"

#include <algorithm>

#include "core/error.h"
#include "eval/prompts.h"

namespace bq::eval {

namespace {

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t hash_string(std::string_view s) {  // FNV-1a: stable across platforms, unlike std::hash
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace

uint64_t derive_seed(uint64_t seed, std::string_view what) { return mix64(seed ^ hash_string(what)); }

PreparedTask prepare_task(const TaskConfig& task, const RunConfig& cfg, size_t limit) {
  PreparedTask p;
  p.task = task;
  fs::path data_dir = cfg.data_dir;
  bool lenient = cfg.lenient;
  uint64_t seed = cfg.seed;
  int shots = cfg.shots;
  p.split = choose_eval_split(task, data_dir, cfg.split);
  p.data = load_split(task, data_dir, p.split.split, lenient);
  p.data_files[p.data.file.string()] = p.data.sha256;
  size_t n = p.data.examples.size();
  if (limit == 0 || limit >= n) {
    for (size_t i = 0; i < n; i++) p.selected.push_back(i);
  } else if (cfg.limit_random) {
    p.selected = seeded_sample(n, limit, derive_seed(seed, "limit:" + task.name));
    std::sort(p.selected.begin(), p.selected.end());
  } else {
    for (size_t i = 0; i < limit; i++) p.selected.push_back(i);
  }
  if (cfg.prompts == "benchmark") {
    p.benchmark_file = benchmark_prompt_path(task, data_dir, shots);
    p.benchmark_template = load_benchmark_prompt(task, data_dir, shots);
    p.data_files[p.benchmark_file.string()] = sha256_file(p.benchmark_file);
  } else if (shots > 0) {
    p.shot_split = choose_shot_split(task, data_dir, p.split.split);
    if (p.shot_split.empty())
      fail("{}: task '{}' has no train or dev split apart from the evaluated '{}' to draw {} shots from",
           (data_dir / task.data_folder).string(), task.name, p.split.split, shots);
    Dataset pool = load_split(task, data_dir, p.shot_split, lenient);
    p.data_files[pool.file.string()] = pool.sha256;
    for (size_t i : seeded_sample(pool.examples.size(), size_t(shots), derive_seed(seed, "shots:" + task.name)))
      p.shots.push_back(pool.examples[i]);
    if (int(p.shots.size()) < shots) fail("{}: only {} examples to draw {} shots from", pool.file.string(), pool.examples.size(), shots);
  }
  return p;
}

std::string build_prompt(const PreparedTask& p, const RunConfig& cfg, const Example& ex) {
  if (cfg.prompts == "benchmark") return build_benchmark_prompt(p.task, p.benchmark_template, cfg.shots, ex);
  return build_own_prompt(p.task, ex, p.shots, cfg.prompting != "instruction");
}

std::vector<nlohmann::json> prompt_records(const PreparedTask& p, const RunConfig& cfg) {
  std::vector<nlohmann::json> out;
  for (size_t i : p.selected) {
    const Example& ex = p.data.examples[i];
    out.push_back({{"task", p.task.name},
                   {"split", p.split.split},
                   {"id", ex.id},
                   {"prompt", build_prompt(p, cfg, ex)},
                   {"answer", gold_answer_text(p.task, ex)}});
  }
  return out;
}

}  // namespace bq::eval
