// `plan` (memory a configuration needs, and which cards it fits) and `recommend` (what to run on a GPU budget,
// from evaluation runs).
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "analysis/recommend.h"
#include "cli/commands.h"
#include "core/error.h"
#include "eval/named_table.h"
#include "eval/task.h"
#include "model/config.h"
#include "plan/memory_planner.h"

namespace bq::cli {

void register_plan_commands(CLI::App& app) {
  struct PlanArgs {
    std::string model, preset;
    std::vector<std::string> device_memory;
    plan::PlanRequest req;
    bool json = false;
  };
  auto a = std::make_shared<PlanArgs>();
  auto* cmd = app.add_subcommand("plan", "expected memory of a model at a precision, context and batch: weights by "
                                         "group, KV cache, activations, workspace; which common GPUs it fits");
  auto* src = cmd->add_option_group("source");
  src->add_option("--model", a->model, "Hugging Face checkpoint folder (16-bit or pre-quantized)");
  src->add_option("--preset", a->preset, "model shapes by name (a synthetic model of them), e.g. llama-3.1-8b");
  src->require_option(1);
  add_precision_options(cmd, a->req);
  cmd->add_option("--context", a->req.context, "positions per sequence, prompt + generated (default 4096, or the model's limit)");
  cmd->add_option("--prompt-len", a->req.prompt, "prompt tokens per sequence, prefilled together (default: the context)");
  cmd->add_option("--batch", a->req.batch, "sequences held and decoded together (default 1)");
  cmd->add_option("--max-step-tokens", a->req.max_step_tokens,
                  "rows of one forward step at most, as eval / serve --max-step-tokens (smaller activation buffers; "
                  "default 0: no limit)");
  cmd->add_flag("--batch-invariant", a->req.batch_invariant,
                "CUDA: the buffers of eval / serve --batch-invariant (no dequantized weight tile)");
  cmd->add_option("--devices", a->req.devices, "GPUs the layers are split over evenly: per-device figures (default 1)");
  cmd->add_option("--device-memory", a->device_memory,
                  "each GPU's memory, comma-separated (e.g. 40GB,24GB): the layers are split to fit them")
      ->delimiter(',');
  cmd->add_option("--device", a->req.device, "cuda | cpu (default cuda)")->check(CLI::IsMember({"cuda", "cpu"}));
  cmd->add_option("--threads", a->req.threads, "CPU: OpenMP threads (per-thread scratch; default: this process's)");
  cmd->add_flag("--json", a->json, "print one JSON object");
  cmd->callback([a] {
    plan::PlanRequest r = a->req;
    for (auto& m : a->device_memory) r.device_memory.push_back(plan::parse_memory_size(m, "--device-memory"));
    if (!a->model.empty()) {
      r.checkpoint = a->model;
      r.config = load_model_config(a->model);
      r.model_label = a->model;
    } else {
      r.config = preset_config(a->preset);
      r.model_label = a->preset;
    }
    auto e = plan::plan_memory(r);
    std::string text = a->json ? plan::to_json(e).dump(2) + "\n" : plan::format_plan(e);
    std::fwrite(text.data(), 1, text.size(), stdout);
  });

  struct RecommendArgs {
    analysis::RecommendOptions opt;
    std::string gpu_memory;
    bool json = false;
  };
  auto rc = std::make_shared<RecommendArgs>();
  auto* rec = app.add_subcommand("recommend", "which model x precision to run on a GPU of this memory, from eval runs: "
                                              "ranked by score, lowest-memory precision non-inferior to full precision");
  rec->add_option("--gpu-memory", rc->gpu_memory, "the GPU's memory, e.g. 40GB (GB as the cards' nominal GiB), 24576MiB")
      ->required();
  rec->add_option("--runs", rc->opt.runs, "run folders written by eval (one per model and precision)")->required();
  auto* task = rec->add_option("--task", rc->opt.task, "score one task only");
  std::vector<std::string> types;  // the task files' presets
  for (auto& preset : eval::task_presets()) types.emplace_back(preset.name);
  auto* type = rec->add_option("--task-type", rc->opt.task_type,
                               "score the tasks of one type (a task file's type: " +
                                   eval::known_names(eval::task_presets()) + ")")
                   ->check(CLI::IsMember(types));
  task->excludes(type);
  rec->add_option("--margin", rc->opt.margin, "non-inferiority margin on the primary metric (default 0.02)");
  rec->add_option("--min-examples", rc->opt.evidence.min_examples,
                  "fewest scored (and paired) examples per task a verdict needs; below: not enough evidence "
                  "(default " + std::to_string(analysis::kMinScoredExamples) + ")");
  rec->add_option("--max-unparsed", rc->opt.evidence.max_unparsed_rate,
                  "highest unparsed-answer rate (0..1) of a run or its baseline a verdict accepts; above: not enough "
                  "evidence (default " + fmt::format("{}", analysis::kMaxUnparsedRate) + ")");
  rec->add_option("--batch", rc->opt.batch, "prompts generated together, as eval --batch (default 1)");
  rec->add_option("--seed", rc->opt.seed, "paired-bootstrap seed");
  rec->add_option("--bootstrap", rc->opt.resamples, "paired-bootstrap resamples");
  rec->add_flag("--json", rc->json, "print one JSON object");
  rec->callback([rc] {
    rc->opt.budget_bytes = plan::parse_memory_size(rc->gpu_memory, "--gpu-memory");
    auto r = analysis::recommend(rc->opt);
    std::string text = rc->json ? analysis::to_json(r).dump(2) + "\n" : analysis::format_recommendation(r);
    std::fwrite(text.data(), 1, text.size(), stdout);
  });
}

}  // namespace bq::cli
