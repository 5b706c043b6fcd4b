// `biomedq serve`: an OpenAI-compatible HTTP server over one Engine (chat and text completions, streamed or not).
// Handler threads check a request, submit it to the Scheduler's decode thread and relay what comes back.
#pragma once
#include <httplib.h>

#include <atomic>
#include <memory>
#include <string>

#include "generate/engine.h"
#include "serve/scheduler.h"

namespace bq::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;           // 0: any free port (bind() says which)
  std::string api_key;       // "" : no key asked for (then only a loopback host is allowed)
  int max_batch = 8;         // sequences decoded together
  int max_queue = 64;        // answers waiting beyond those (more: 503)
  int max_context = 0;       // prompt plus answer, in tokens (0: the model's positions)
  bool log_requests = false; // log prompt and answer text (never logged otherwise)
};

// Whether a host to bind names this machine only (127.0.0.0/8, ::1, localhost).
bool is_loopback_host(const std::string& host);

class Server {
 public:
  // Refuses (bq::Error) a host that is not loopback unless an API key is set.
  Server(Engine& engine, ServerOptions opt);
  ~Server();
  // Binds the listening socket; returns the port (the one chosen when opt.port is 0).
  int bind();
  // Serves until shutdown() has drained the requests in flight.
  void listen();
  // From any thread: new requests get 503, those in flight finish (cancelled after kServeDrainSeconds), then
  // listen() returns.
  void shutdown();
  int context() const { return context_; }

 private:
  void handle_completion(const httplib::Request& req, httplib::Response& res, bool chat);
  void log(const std::string& line) const;

  Engine& engine_;
  ServerOptions opt_;
  int context_;
  std::unique_ptr<Scheduler> scheduler_;
  httplib::Server http_;
  int listen_socket_ = -1;  // the bound socket (POSIX: socket_t is int)
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};  // completion requests not yet fully answered (streams until their last byte)
  std::atomic<uint64_t> next_id_{0};
};

}  // namespace bq::serve
