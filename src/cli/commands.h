// Each subcommand lives in its own cmd_*.cpp and registers itself on the root app.
#pragma once
#include <CLI/CLI.hpp>

#include "generate/engine.h"

namespace bq::eval {
struct EvalConfig;
}

namespace bq::cli {

void register_model_commands(CLI::App& app);  // synth, generate, logits (cmd_model.cpp)
void register_tokenizer_commands(CLI::App& app);  // tokenize, detokenize (cmd_tokenizer.cpp)
void register_eval_commands(CLI::App& app);  // eval, data check, rescore, compare, table (cmd_eval.cpp)
// The options of `eval` (all but the model's), filling `cfg`; the caller adds --model etc. (cmd_eval.cpp)
void add_eval_options(CLI::App* cmd, eval::EvalConfig& cfg);
void register_bench_command(CLI::App& app);  // bench (cmd_bench.cpp)
void register_quant_commands(CLI::App& app);  // quantize, inspect, compare-logits (cmd_quant.cpp)
void register_plan_commands(CLI::App& app);  // plan, recommend (cmd_plan.cpp)
void register_report_commands(CLI::App& app);  // report (cmd_report.cpp)
void register_serve_command(CLI::App& app);  // serve (cmd_serve.cpp)
void register_sweep_commands(CLI::App& app);  // sweep plan, status, run, slurm (cmd_sweep.cpp)
// --precision, --double-quant, --blocksize, --compute-dtype, --quantize-lm-head (cmd_model.cpp)
void add_precision_options(CLI::App* cmd, PrecisionOptions& e);
// --device and the precision options, for commands that load a model (cmd_model.cpp)
void add_engine_options(CLI::App* cmd, EngineOptions& e);

}  // namespace bq::cli
