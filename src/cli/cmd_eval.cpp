// `eval`, `data check`, `rescore`, `compare`.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "core/progress.h"
#include "eval/data_check.h"
#include "eval/open_model.h"
#include "eval/run.h"
#include "eval/summary.h"
#include "eval/run_folder.h"
#include "eval/table.h"
#include "model/config.h"

namespace bq::cli {

namespace {

// This process's arguments, shell-quoted where needed, so a run records the command that reproduces it.
std::string invocation() {
  std::string raw = read_file("/proc/self/cmdline"), line;
  size_t start = 0;
  while (start < raw.size()) {
    size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    const std::string arg = shell_quote(raw.substr(start, end - start));
    line += (line.empty() ? "" : " ") + arg;
    start = end + 1;
  }
  return line;
}

// The ids of one direction of flips under compare's counts, wrapped: the first 20 (enough to look up in the
// runs' samples.jsonl by hand), then how many more; --flips-out has them all.
void print_flipped_ids(const std::string& direction, const nlohmann::json& ids) {
  if (ids.empty()) return;
  constexpr size_t kShown = 20, kWidth = 100;
  const std::string prefix = "    " + direction + ": ";
  std::string line = prefix;
  for (size_t i = 0; i < std::min(ids.size(), kShown); i++) {
    std::string id = ids[i].get<std::string>() + (i + 1 < ids.size() ? "," : "");
    if (line.size() > prefix.size() && line.size() + id.size() > kWidth) {
      std::printf("%s\n", line.c_str());
      line = std::string(prefix.size(), ' ');
    }
    line += (line.size() > prefix.size() ? " " : "") + id;
  }
  if (ids.size() > kShown) line += fmt::format(" … and {} more (--flips-out FILE writes all)", ids.size() - kShown);
  std::printf("%s\n", line.c_str());
}

}  // namespace

namespace {

// lm-evaluation-harness's options where biomedq means the same (hidden from --help, named in the docs), and a
// clear pointer for those it does not take. --num_fewshot, --batch_size and --output_path are spelled on the
// options themselves; --limit and --seed are the same words in both.
void add_lm_eval_spellings(CLI::App* cmd, eval::EvalConfig& cfg) {
  static const std::string log_samples = "lm-eval's; samples.jsonl always keeps every sample";
  cmd->add_flag("--log_samples", log_samples)->group("");
  cmd->add_flag("--apply_chat_template", cfg.chat, "lm-eval's; the chat template is applied by default")->group("");
  static const std::pair<const char*, const char*> counterparts[] = {
      {"--model_args", "--model DIR (a checkpoint folder) with --precision bf16|int8|llm-int8|nf4|fp4"},
      {"--include_path", "--tasks-dir DIR (task files are YAML in biomedq's own layout, see tasks/)"},
      {"--gen_kwargs", "--temperature and --top-p (with --prompting sc); decoding is greedy otherwise"},
      {"--use_cache", "the run folder itself: re-running the same command resumes it"},
      {"--system_instruction", "the task files' prompts (tasks/*.yaml)"},
      {"--fewshot_as_multiturn", "--shots K (few-shot examples go into the one user message, as in the study)"},
      {"--trust_remote_code", "nothing: biomedq runs no code from a checkpoint"},
      {"--wandb_args", "nothing: biomedq sends nothing off this machine; use `biomedq report`"},
      {"--hf_hub_log_args", "nothing: biomedq sends nothing off this machine"},
      {"--predict_only", "rescore, which recomputes results from samples.jsonl"},
  };
  for (auto& [name, instead] : counterparts) {
    std::string n = name, use = instead;
    cmd->add_option_function<std::string>(
           n, [n, use](const std::string&) { fail("{} is lm-eval's option; in biomedq use {}", n, use); })
        ->group("")
        ->expected(0, 1);
  }
}

}  // namespace

void add_eval_options(CLI::App* cmd, eval::EvalConfig& cfg) {
  cmd->add_option("--data-dir", cfg.data_dir,
                  "folder laid out like biomed-nlp-benchmarks (one folder per dataset); default: the small example "
                  "set shipped with biomedq (examples/data, a few examples per task)");
  cmd->add_option("--out,--output_path", cfg.out_dir, "run folder: samples.jsonl, config.json, results.json (resumable)")->required();
  std::string task_names;
  try {
    for (auto& t : eval::load_task_configs(eval::default_tasks_dir())) task_names += " " + t.name;
  } catch (const std::exception&) {  // help must work even where the task files are missing or broken
    task_names = " (no task folder found next to the binary; see --tasks-dir)";
  }
  cmd->add_option("--tasks", cfg.tasks, "comma-separated task names, or all; tasks:" + task_names)->delimiter(',');
  cmd->add_option("--tasks-dir", cfg.tasks_dir, "folder of task files (*.yaml); default: the installed tasks/");
  cmd->add_option("--split", cfg.split, "split to evaluate; test falls back to dev where absent (marked)")
      ->check(CLI::IsMember({"test", "dev", "train"}));
  cmd->add_option("--limit", cfg.limit, "evaluate only N examples per task (0 = all)");
  cmd->add_flag("--limit-random", cfg.limit_random, "with --limit: draw the N examples with the seed, not the first N");
  cmd->add_option("--shots,--num_fewshot", cfg.shots, "few-shot examples per prompt (drawn from train, else dev)");
  cmd->add_option("--prompting", cfg.prompting, "instruction | cot | sc (self-consistency)")
      ->check(CLI::IsMember({"instruction", "cot", "sc"}));
  cmd->add_option("--sc-samples", cfg.sc_samples, "samples per example for --prompting sc");
  cmd->add_option("--temperature", cfg.temperature, "sampling temperature for --prompting sc");
  cmd->add_option("--top-p", cfg.top_p, "nucleus sampling for --prompting sc");
  cmd->add_option("--seed", cfg.seed, "seed of shot draws, random limits, sampling and bootstrap");
  cmd->add_option("--prompts", cfg.prompts, "own (biomedq's templates) | benchmark (the data's prompt_*.txt)")
      ->check(CLI::IsMember({"own", "benchmark"}));
  cmd->add_flag("!--no-chat-template", cfg.chat, "send the prompt as plain text, without the model's chat template");
  cmd->add_option("--batch,--batch_size", cfg.batch, "prompts per generation call (1 = the study's one-at-a-time latency)");
  cmd->add_flag("--lenient", cfg.lenient, "skip and count malformed data rows instead of stopping");
  cmd->add_option("--bootstrap", cfg.bootstrap_resamples, "bootstrap resamples for the 95% intervals");
  cmd->add_flag("!--no-progress", cfg.progress,
                "no progress output (on a terminal a redrawn line; otherwise a line every 10 s, or every "
                "BIOMEDQ_PROGRESS_SECONDS; BIOMEDQ_PROGRESS=0 silences every command)");
  add_lm_eval_spellings(cmd, cfg);
}

void register_eval_commands(CLI::App& app) {
  auto* data = app.add_subcommand("data", "inspect evaluation data");
  data->require_subcommand(1);
  auto* check = data->add_subcommand("check", "count examples, entities and labels per task and split");
  static std::filesystem::path data_dir, tasks_dir;
  static bool lenient = false, json = false;
  check->add_option("--data-dir", data_dir, "folder laid out like biomed-nlp-benchmarks")->required();
  check->add_option("--tasks-dir", tasks_dir, "folder of task files (*.yaml); default: the installed tasks/");
  check->add_flag("--lenient", lenient, "skip and count malformed rows instead of stopping at the first");
  check->add_flag("--json", json, "print the report as JSON");
  check->callback([] {
    auto tasks = eval::load_task_configs(tasks_dir.empty() ? eval::default_tasks_dir() : tasks_dir);
    auto report = eval::data_check(tasks, data_dir, lenient);
    std::string text = json ? report.dump(2) + "\n" : eval::format_data_check(report);
    std::fwrite(text.data(), 1, text.size(), stdout);
  });

  auto* prompts = data->add_subcommand("prompts", "write the prompts eval would send (before the chat template) with "
                                                  "each example's gold answer, as JSON lines: for inspection or "
                                                  "fine-tuning");
  static eval::EvalConfig prompt_cfg;
  static std::filesystem::path prompts_out;
  prompts->add_option("--data-dir", prompt_cfg.data_dir, "folder laid out like biomed-nlp-benchmarks")->required();
  prompts->add_option("--tasks", prompt_cfg.tasks, "comma-separated task names, or all")->delimiter(',');
  prompts->add_option("--tasks-dir", prompt_cfg.tasks_dir, "folder of task files (*.yaml); default: the installed tasks/");
  prompts->add_option("--split", prompt_cfg.split, "split to write; test falls back to dev where absent")
      ->check(CLI::IsMember({"test", "dev", "train"}));
  prompts->add_option("--limit", prompt_cfg.limit, "only N examples per task (0 = all)");
  prompts->add_option("--shots", prompt_cfg.shots, "few-shot examples per prompt");
  prompts->add_option("--prompting", prompt_cfg.prompting, "instruction | cot")
      ->check(CLI::IsMember({"instruction", "cot"}));
  prompts->add_option("--prompts", prompt_cfg.prompts, "own | benchmark")->check(CLI::IsMember({"own", "benchmark"}));
  prompts->add_option("--seed", prompt_cfg.seed, "seed of the few-shot draws");
  prompts->add_option("--out", prompts_out, "JSON-lines file to write (atomically)")->required();
  prompts->callback([] {
    std::string text;
    size_t n = 0;
    for (auto& rec : eval::export_prompts(prompt_cfg)) {
      text += rec.dump() + "\n";
      n++;
    }
    write_file_atomic(prompts_out, text);
    std::printf("%zu prompts written to %s\n", n, prompts_out.string().c_str());
  });

  auto* rescore = app.add_subcommand("rescore", "recompute RUN_DIR/results.json from samples.jsonl, without a model");
  static std::filesystem::path run_dir;
  static int resamples = 1000;
  rescore->add_option("run_dir", run_dir, "run folder written by eval")->required();
  rescore->add_option("--bootstrap", resamples, "bootstrap resamples for the 95% intervals");
  rescore->callback([] {
    eval::rescore_run(run_dir, resamples);
    std::printf("%s\n", (run_dir / "results.json").string().c_str());
  });

  auto* compare = app.add_subcommand("compare", "pair two runs by example: score differences with paired-bootstrap "
                                                "95% intervals, flipped answers, McNemar's test");
  static std::vector<std::filesystem::path> compared;
  static std::string baseline = "bf16";
  static uint64_t seed = 1234;
  static bool compare_json = false;
  static std::filesystem::path flips_out;
  compare->add_option("runs", compared,
                      "two run folders, A (the baseline, e.g. bf16) then B (e.g. 4-bit); or one folder of runs (a "
                      "sweep's): each run against the --baseline run of the same model and prompting")
      ->required()
      ->expected(1, 2);
  compare->add_option("--baseline", baseline, "with one folder of runs: the precision the others are compared with "
                                              "(default bf16)");
  compare->add_option("--seed", seed, "bootstrap seed");
  compare->add_option("--bootstrap", resamples, "bootstrap resamples");
  compare->add_flag("--json", compare_json, "print the comparison as JSON (one folder of runs: a list of them)");
  compare->add_option("--flips-out", flips_out,
                      "write every flipped example as a JSON line (written atomically): task, id, direction, gold, "
                      "and each run's prompt, raw output, answer and correctness")
      ->type_name("FILE.jsonl");
  compare->callback([] {
    if (!flips_out.empty()) {  // before the comparison's work, not after it
      auto folder = std::filesystem::absolute(flips_out).parent_path();
      if (!std::filesystem::is_directory(folder))
        fail("--flips-out {}: there is no folder {} to write it in", flips_out.string(), folder.string());
    }
    const auto pairs = compared.size() == 2 ? std::vector{std::pair{compared[0], compared[1]}}
                                            : eval::pairs_with_baseline(compared[0], baseline);
    std::vector<nlohmann::ordered_json> flips;
    nlohmann::json all = nlohmann::json::array();
    for (const auto& [run_a, run_b] : pairs) {
      auto c = eval::compare_runs(run_a, run_b, seed, resamples, flips_out.empty() ? nullptr : &flips);
      if (compare_json) {
        all.push_back(std::move(c));
        continue;
      }
      std::printf("%sB = %s minus A = %s, paired by example\n", &run_a == &pairs.front().first ? "" : "\n",
                  run_b.string().c_str(), run_a.string().c_str());
      for (auto& [name, t] : c["tasks"].items()) {
        std::printf("\n%s (%d paired examples)\n", name.c_str(), t["paired_examples"].get<int>());
        for (auto& [metric, d] : t["difference"].items())
          std::printf("  %-18s %+.4f  [%+.4f, %+.4f]%s\n", metric.c_str(), d["b_minus_a"].get<double>(),
                      d["ci95"][0].get<double>(), d["ci95"][1].get<double>(),
                      metric == t["primary_metric"].get<std::string>() ? "  (primary)" : "");
        std::printf("  right->wrong %d, wrong->right %d, McNemar p = %.4g\n", t["right_to_wrong"].get<int>(),
                    t["wrong_to_right"].get<int>(), t["mcnemar"]["p_value"].get<double>());
        print_flipped_ids("right->wrong", t["right_to_wrong_ids"]);
        print_flipped_ids("wrong->right", t["wrong_to_right_ids"]);
      }
    }
    if (!flips_out.empty()) {
      std::string text;
      for (auto& f : flips) text += f.dump() + "\n";
      write_file_atomic(flips_out, text);
    }
    if (compare_json) std::printf("%s\n", (pairs.size() == 1 ? all[0] : all).dump(2).c_str());
    else if (!flips_out.empty())
      std::printf("\n%zu flipped examples written to %s\n", flips.size(), flips_out.string().c_str());
  });

  auto* table = app.add_subcommand("table", "print the study's Table 1 from runs: rows task x model, per precision "
                                           "Mem (GB, peak), Late (s/sample), Score (primary metric)");
  static std::vector<std::filesystem::path> table_runs;
  static bool table_csv = false, table_latex = false;
  table->add_option("run_dirs", table_runs,
                    "run folders written by eval (one per model and precision), or folders of them; folders that "
                    "are not finished runs are skipped and listed")
      ->required();
  table->add_flag("--csv", table_csv, "CSV instead of Markdown");
  table->add_flag("--latex", table_latex, "a LaTeX tabular (booktabs) instead of Markdown, the legend as comments");
  table->callback([] {
    if (table_csv && table_latex) fail("table: --csv and --latex are two output forms; give one of them");
    auto selection = eval::select_finished_runs(table_runs);
    for (auto& s : selection.skipped) std::fprintf(stderr, "biomedq: table: skipped %s\n", s.c_str());
    auto format = table_csv ? eval::TableFormat::csv : table_latex ? eval::TableFormat::latex : eval::TableFormat::markdown;
    std::string text = eval::format_results_table(selection.finished, format);
    std::fwrite(text.data(), 1, text.size(), stdout);
  });

  struct EvalArgs {
    std::string model, synthetic, devices, tokenizer;
    uint64_t synthetic_seed = 0;
    EngineOptions engine;
    eval::EvalConfig cfg;
  };
  auto ev = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "evaluate a model on the biomedical tasks: scores with 95% intervals, "
                                         "latency and memory; resumable");
  auto* model_opt = cmd->add_option("--model", ev->model, "Hugging Face checkpoint folder");
  std::string presets;
  for (auto& p : preset_names()) presets += (presets.empty() ? "" : ", ") + p;
  auto* synth_opt = cmd->add_option("--synthetic", ev->synthetic,
                                    "instead of --model: a random-weight model in memory with a synthetic tokenizer "
                                    "(scores are chance level; for trying the pipeline and timing): " + presets);
  cmd->add_option("--synthetic-seed", ev->synthetic_seed, "weights seed for --synthetic");
  cmd->add_option("--tokenizer", ev->tokenizer,
                  "with --synthetic: a real tokenizer's folder (tokenizer.json, tokenizer_config.json) instead of the "
                  "synthetic one, so prompts have a real model's token counts")
      ->needs(synth_opt);
  cmd->add_option("--answer-lengths", ev->cfg.answer_lengths,
                  "with --synthetic: task (answers may run to the task's max_new_tokens) | gold (each answer stops at "
                  "the token length of its gold answer, the work a real model would do)")
      ->check(CLI::IsMember({"task", "gold"}))
      ->needs(synth_opt);
  model_opt->excludes(synth_opt);
  cmd->add_option("--model-name", ev->cfg.model_name,
                  "the model's name in tables, reports and comparisons (default: the checkpoint folder's name, or the "
                  "preset's)");
  add_engine_options(cmd, ev->engine);
  cmd->add_option("--devices", ev->devices,
                  "cuda: split the layers into a pipeline over these GPUs, e.g. 0,1,2 or all, each taking layers in "
                  "proportion to its free memory (default: the current GPU alone); an id may repeat: 0,0 runs two "
                  "stages on one GPU, to test the pipeline there");
  add_eval_options(cmd, ev->cfg);
  cmd->callback([ev, model_opt, synth_opt] {
    if (model_opt->count() + synth_opt->count() != 1) fail("eval: give --model DIR or --synthetic PRESET");
    if (!ev->cfg.progress) set_progress_enabled(false);  // loading and quantizing are quiet too
    if (ev->cfg.data_dir.empty()) ev->cfg.data_dir = eval::default_data_dir();
    eval::check_eval(ev->cfg);  // bad settings are found before the model loads
    const eval::ModelSource source{ev->model, ev->synthetic, ev->synthetic_seed, ev->tokenizer, ev->devices};
    eval::LoadTimes load;
    auto engine = eval::open_model(source, ev->engine, ev->cfg.batch, ev->cfg.model_info, &load);
    ev->cfg.model_load = load.to_json();
    ev->cfg.command_line = invocation();
    auto results = eval::run_eval(*engine, ev->cfg);
    std::string summary = eval::format_run_summary(results);
    std::fwrite(summary.data(), 1, summary.size(), stdout);
    std::printf("results: %s\n", (ev->cfg.out_dir / "results.json").string().c_str());
  });
}

}  // namespace bq::cli
