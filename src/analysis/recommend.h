// `biomedq recommend`: which model x precision to run on a GPU of a given memory, from evaluation runs. Among the
// configurations that fit (plan/memory_planner.h), those measured are ranked by score; per model the lowest-memory
// precision whose paired 95% interval of (quantized - full precision) stays above -margin is recommended.
// Configurations that fit but were not measured are listed as such, never scored.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bq::analysis {

// A paired difference (this configuration minus the model's full-precision run) of one task's primary metric.
struct PairedDifference {
  std::string task;
  double diff = 0, lo = 0, hi = 0;
  size_t paired_examples = 0;
};

// One model x precision, measured (a run) or not; the input of decide().
struct Candidate {
  std::string model, precision;
  size_t planned_bytes = 0;  // what the card must hold (planner total)
  bool measured = false;
  std::string run_dir;
  double score = 0;          // mean primary metric over the selected tasks
  double unparsed_rate = 0;  // over the selected tasks' scored examples
  size_t scored_examples = 0;  // on the selected task with the fewest
  std::vector<PairedDifference> vs_full;  // empty for the baseline itself or when there is no baseline run
};

// Below these a run's numbers are no evidence either way: its verdict is "not enough evidence", saying why.
// A paired 95% interval from a handful of examples is wide or degenerate (3 examples can give [0, 0]), and when
// most answers are unparsed the score measures the answer format, not the model.
constexpr size_t kMinScoredExamples = 30;     // per selected task, scored and (against the baseline) paired
constexpr double kMaxUnparsedRate = 0.2;      // of the selected tasks' scored answers, the run's and its baseline's
struct EvidenceRule {
  size_t min_examples = kMinScoredExamples;
  double max_unparsed_rate = kMaxUnparsedRate;
};

struct Decision {
  Candidate candidate;
  bool fits = false;
  bool full_precision = false;
  // baseline | non-inferior | inferior | no baseline | not enough evidence | not measured
  std::string verdict;
  bool recommended = false;
  std::string reason;   // one line: fit, interval, unparsed rate
  std::string lacking;  // measured: why the numbers are not enough evidence ("" when they are)
};

struct Recommendation {
  size_t budget_bytes = 0;
  double margin = 0;
  EvidenceRule evidence;
  std::vector<Decision> ranked;      // measured and fitting, best score first
  std::vector<Decision> others;      // measured but not fitting, then fitting but not measured, then neither
  std::vector<std::string> per_model;  // one line per model: what to run
};


// The decision logic on prepared candidates: fits when planned_bytes <= budget; not enough evidence when the run
// or its model's baseline falls short of `evidence` (then never recommended); else non-inferior when every
// vs_full lower bound is above -margin.
Recommendation decide(const std::vector<Candidate>& candidates, size_t budget_bytes, double margin,
                      const EvidenceRule& evidence = {});

struct RecommendOptions {
  std::vector<std::filesystem::path> runs;
  size_t budget_bytes = 0;
  std::string task, task_type;  // at most one: the tasks scored (default: every task of the runs)
  double margin = 0.02;
  EvidenceRule evidence;
  int batch = 1;                // prompts generated together (eval --batch)
  uint64_t seed = 1234;
  int resamples = 1000;
};

// Reads the runs (results.json, config.json, samples.jsonl), plans each model at each precision for the context
// the runs needed, pairs every quantized run with its model's full-precision run (eval::compare_runs), decides.
Recommendation recommend(const RecommendOptions& opt);

nlohmann::ordered_json to_json(const Recommendation& r);
std::string format_recommendation(const Recommendation& r);

}  // namespace bq::analysis
