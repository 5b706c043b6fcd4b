// Each subcommand lives in its own cmd_*.cpp and registers itself on the root app.
#pragma once
#include <CLI/CLI.hpp>

namespace bq::cli {

void register_model_commands(CLI::App& app);  // synth, generate, logits, inspect (cmd_model.cpp)
void register_tokenizer_commands(CLI::App& app);  // tokenize, chat (cmd_tokenizer.cpp)
void register_bench_command(CLI::App& app);  // bench (cmd_bench.cpp)

}  // namespace bq::cli
