#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "core/error.h"

namespace {

// What `biomedq --version` prints: enough to reproduce a result (version, commit, backends, GPU code built).
std::string version_text() {
  std::string cuda = "CUDA off";
#ifdef BIOMEDQ_HAVE_CUDA
  cuda = "CUDA on, built for compute capability " BIOMEDQ_CUDA_ARCHS;
#endif
  return std::string("biomedq " BIOMEDQ_VERSION " (commit " BIOMEDQ_GIT_COMMIT "; ") + cuda + ")";
}

}  // namespace

int main(int argc, char** argv) {
  // OpenMP threads that spin between the many small parallel regions of a decode step made it 4-5x slower on small
  // VMs (measured: 20 vs 95 tokens/s on 2 cores). The policy is read when the OpenMP runtime loads, before main, so
  // set it and start again; an explicit OMP_WAIT_POLICY from the user is kept.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    ::setenv("OMP_WAIT_POLICY", "passive", 1);
    ::execv("/proc/self/exe", argv);  // returns only on failure: then carry on with the default policy
  }
  CLI::App app{"biomedq: run and measure quantized LLMs on biomedical tasks, locally"};
  app.require_subcommand(1);
  app.set_version_flag("--version", version_text());
  app.option_defaults()->always_capture_default();  // --help shows every option's default
  bq::cli::register_model_commands(app);
  bq::cli::register_tokenizer_commands(app);
  bq::cli::register_eval_commands(app);
  bq::cli::register_bench_command(app);
  bq::cli::register_quant_commands(app);
  bq::cli::register_plan_commands(app);
  bq::cli::register_serve_command(app);
  bq::cli::register_sweep_commands(app);
#ifdef BIOMEDQ_HAVE_REPORT
  bq::cli::register_report_commands(app);
#endif
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
