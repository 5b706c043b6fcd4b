// serve: the OpenAI-compatible local server (src/serve/), private by default.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "serve/server.h"

namespace bq::cli {

namespace {

struct ServeArgs {
  std::string model, synthetic, api_key_file;
  uint64_t synthetic_seed = 0;
  EngineOptions engine;
  serve::ServerOptions server;
};

// The key is the file's first line; the file is read once and the key never printed.
std::string read_api_key(const std::string& path) {
  std::string text = read_file(path, 4096);
  std::string key = text.substr(0, text.find_first_of("\r\n"));
  while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
  if (key.size() < 16) fail("--api-key-file {}: the key on its first line must have at least 16 characters", path);
  return key;
}

// SIGINT and SIGTERM write their number to this pipe, which one thread waits on. A handler (not a blocked mask and
// sigwait) because libraries start threads before main (OpenBLAS, OpenMP) that a mask set later would not cover, and
// a signal delivered to one of them would end the process without draining.
int stop_pipe[2] = {-1, -1};

void on_stop_signal(int sig) {
  const unsigned char byte = static_cast<unsigned char>(sig);
  [[maybe_unused]] ssize_t n = write(stop_pipe[1], &byte, 1);
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, u++;
  return fmt::format("{:.1f} {}", b, units[u]);
}

void run_serve(ServeArgs& a) {
  if (!a.api_key_file.empty()) a.server.api_key = read_api_key(a.api_key_file);
  // Checked before the model loads: a refused host should not cost a load.
  if (!serve::is_loopback_host(a.server.host) && a.server.api_key.empty())
    fail("serve: --host {} is reachable from other machines; give --api-key-file to allow it (or keep 127.0.0.1)",
         a.server.host);
  // Writing to a client that went away must fail the write, not end the process.
  signal(SIGPIPE, SIG_IGN);
  if (pipe(stop_pipe) != 0) fail("serve: cannot create a pipe for stop signals");
  struct sigaction stop{};
  stop.sa_handler = on_stop_signal;
  sigemptyset(&stop.sa_mask);
  sigaction(SIGINT, &stop, nullptr);
  sigaction(SIGTERM, &stop, nullptr);

  std::unique_ptr<Engine> engine = a.synthetic.empty() ? std::make_unique<Engine>(a.model, a.engine)
                                                       : Engine::synthetic(a.synthetic, a.synthetic_seed, a.engine);
  serve::Server server(*engine, a.server);
  const int port = server.bind();
  const auto mem = engine->memory_report();
  const std::string precision(engine->options().precision->name);
  std::printf("model: %s (%s on %s)\n", engine->model_name().c_str(), precision.c_str(),
              engine->options().device.c_str());
  std::printf("memory: weights %s", human_bytes(mem.value("weight_bytes", 0.0)).c_str());
  if (mem.contains("host_peak_rss_bytes"))
    std::printf(", process peak %s", human_bytes(mem["host_peak_rss_bytes"].get<double>()).c_str());
  if (mem.contains("device_peak_bytes"))
    std::printf(", device peak %s", human_bytes(mem["device_peak_bytes"].get<double>()).c_str());
  std::printf("\ncontext: %d tokens, batch %d, queue %d; API key %s; request text %s\n", server.context(),
              a.server.max_batch, a.server.max_queue, a.server.api_key.empty() ? "off" : "required",
              a.server.log_requests ? "logged" : "not logged");
  std::printf("listening on http://%s:%d/v1\n", a.server.host.c_str(), port);
  std::fflush(stdout);

  std::thread waiter([&] {
    unsigned char sig = 0;
    while (read(stop_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    if (sig == SIGINT || sig == SIGTERM) std::fprintf(stderr, "serve: stopping: finishing requests in flight\n");
    server.shutdown();
  });
  server.listen();
  close(stop_pipe[1]);  // listen ended on its own: the waiter's read returns 0 and it ends too
  waiter.join();
  std::fprintf(stderr, "serve: stopped\n");
}

}  // namespace

void register_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  auto* s = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API, on this machine only by default");
  auto* model_opt = s->add_option("--model", args->model, "Checkpoint folder");
  auto* synth_opt = s->add_option("--synthetic", args->synthetic,
                                  "instead of --model: a random-weight model in memory (e.g. tiny), for tests and timing");
  s->add_option("--synthetic-seed", args->synthetic_seed, "weights seed for --synthetic");
  add_engine_options(s, args->engine);
  s->add_option("--host", args->server.host, "Address to listen on (a non-loopback one needs --api-key-file)");
  s->add_option("--port", args->server.port, "Port (0: any free port; the line 'listening on' names it)")
      ->check(CLI::Range(0, 65535));
  s->add_option("--api-key-file", args->api_key_file,
                "File whose first line is the key clients must send (Authorization: Bearer KEY)");
  s->add_option("--max-batch", args->server.max_batch, "Answers decoded together")->check(CLI::Range(1, 1024));
  s->add_option("--max-queue", args->server.max_queue, "Answers waiting beyond the batch (more: HTTP 503)")
      ->check(CLI::Range(0, 4096));
  s->add_option("--max-context", args->server.max_context, "Prompt plus answer, in tokens (default: the model's)")
      ->check(CLI::Range(1, 1 << 24));
  s->add_flag("--log-requests", args->server.log_requests, "Log prompt and answer text (never logged otherwise)");
  s->callback([args, model_opt, synth_opt] {
    if (model_opt->count() + synth_opt->count() != 1) fail("serve: give --model DIR or --synthetic PRESET");
    run_serve(*args);
  });
}

}  // namespace bq::cli
