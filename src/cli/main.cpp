#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"biomedq: run and measure quantized LLMs on biomedical tasks, locally"};
  app.require_subcommand(1);
  bq::cli::register_model_commands(app);
  bq::cli::register_tokenizer_commands(app);
  bq::cli::register_eval_commands(app);
  bq::cli::register_bench_command(app);
  bq::cli::register_quant_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const bq::Error& e) {
    std::fprintf(stderr, "biomedq: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "biomedq: error: out of host memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "biomedq: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
