#include "serve/server.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <thread>

#include "core/limits.h"
#include "serve/openai.h"

namespace bq::serve {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Text from the model is valid UTF-8 (decoding replaces broken bytes); replacing on dump is a second guard.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type,
                const std::string& param = "", const std::string& code = "") {
  res.status = status;
  res.set_content(dump(error_body(message, type, param, code)), "application/json");
}

std::string finish_reason(const std::string& engine_reason) {
  return engine_reason == "length" ? "length" : "stop";  // "eos" and "stop" are both OpenAI's "stop"
}

// Compares without stopping at the first difference, so response times say nothing about the key.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() != b.size();
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i)
    diff |= (i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0);
  return diff == 0;
}

// What a handler learned before answering: the request, its prompt ids and the job carrying its answers.
struct Submitted {
  CompletionRequest req;
  std::string prompt_text;
  std::shared_ptr<Job> job;
  std::string id;
  int64_t created;
  Clock::time_point start;
};

// The JSON of one choice's chunk (stream) or of a whole answer.
json stream_chunk(const Submitted& s, const std::string& model, json choices) {
  return {{"id", s.id},
          {"object", s.req.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", s.created},
          {"model", model},
          {"choices", std::move(choices)}};
}

json choice_delta(const Submitted& s, int index, const std::string& text, bool first, const json& reason) {
  if (!s.req.chat) return {{"index", index}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", reason}};
  json delta = json::object();
  if (first) delta["role"] = "assistant";
  if (first || !text.empty()) delta["content"] = text;
  return {{"index", index}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", reason}};
}

json usage(size_t prompt, size_t completion) {
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

// One streamed request: the answers' text so far and how many have ended; owned by the content provider.
struct Stream {
  Submitted sub;
  std::vector<AnswerText> answers;
  std::vector<bool> started;
  size_t ended = 0, completion_tokens = 0;
  std::string error;
  bool finished = false;
};

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

Server::Server(Engine& engine, ServerOptions opt) : engine_(engine), opt_(std::move(opt)) {
  if (!is_loopback_host(opt_.host) && opt_.api_key.empty())
    fail("serve: --host {} is reachable from other machines; give --api-key-file to allow it (or keep 127.0.0.1)",
         opt_.host);
  if (opt_.max_batch < 1 || opt_.max_queue < 0) fail("serve: --max-batch must be at least 1, --max-queue at least 0");
  const int positions = engine_.model().cfg.max_positions;
  context_ = opt_.max_context > 0 ? std::min(opt_.max_context, positions) : positions;
  if (opt_.max_context > positions)
    std::fprintf(stderr, "serve: --max-context %d is beyond the model's %d positions; using %d\n", opt_.max_context,
                 positions, positions);
  scheduler_ = std::make_unique<Scheduler>(engine_, opt_.max_batch, opt_.max_batch + opt_.max_queue);

  // A handler thread per waiting or streaming request, and a few for health checks and refusals.
  const size_t threads = size_t(opt_.max_batch + opt_.max_queue) + 8;
  http_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_.set_payload_max_length(limits::kServeBodyBytes);
  http_.set_socket_options([this](int sock) {
    // SO_REUSEADDR only: the library's default adds SO_REUSEPORT, which would let another process share the port.
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_socket_ = sock;
  });
  http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (opt_.api_key.empty() || !req.path.starts_with("/v1/")) return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.starts_with("Bearer ") && same_secret(std::string_view(auth).substr(7), opt_.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, 401, auth.empty() ? "no API key given (Authorization: Bearer KEY)" : "incorrect API key",
               "invalid_request_error", "", "invalid_api_key");
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors the library answers itself (unknown path, body too large, ...) get OpenAI's shape too.
  http_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) send_error(res, 404, "unknown path " + req.path, "invalid_request_error", "", "not_found");
    else if (res.status == 413)
      send_error(res, 413, fmt::format("the request body is over {} bytes", limits::kServeBodyBytes),
                 "invalid_request_error", "", "request_too_large");
    else send_error(res, res.status, fmt::format("HTTP error {}", res.status), "invalid_request_error");
  });
  http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    send_error(res, 500, "internal error", "server_error");
  });
  http_.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  const int64_t started = int64_t(std::time(nullptr));
  http_.Get("/v1/models", [this, started](const httplib::Request&, httplib::Response& res) {
    json model = {{"id", engine_.model_name()}, {"object", "model"}, {"created", started}, {"owned_by", "biomedq"}};
    res.set_content(dump({{"object", "list"}, {"data", json::array({model})}}), "application/json");
  });
  http_.Post("/v1/chat/completions",
             [this](const httplib::Request& req, httplib::Response& res) { handle_completion(req, res, true); });
  http_.Post("/v1/completions",
             [this](const httplib::Request& req, httplib::Response& res) { handle_completion(req, res, false); });
}

Server::~Server() = default;

int Server::bind() {
  int port = opt_.port;
  if (port == 0) port = http_.bind_to_any_port(opt_.host);
  else if (!http_.bind_to_port(opt_.host, port)) port = -1;
  if (port < 0) fail("serve: cannot listen on {}:{} (in use, or not an address of this machine)", opt_.host, opt_.port);
  // The library listens with a backlog of 5, which drops connections when many clients arrive at once.
  ::listen(listen_socket_, SOMAXCONN);
  return port;
}

void Server::listen() { http_.listen_after_bind(); }

void Server::shutdown() {
  draining_ = true;
  const auto deadline = Clock::now() + std::chrono::seconds(limits::kServeDrainSeconds);
  while (in_flight_ > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (in_flight_ > 0) {  // past the grace period: end the answers, each client gets what it has so far
    scheduler_->cancel_all();
    while (in_flight_ > 0 && Clock::now() < deadline + std::chrono::seconds(5))
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  http_.stop();
}

void Server::log(const std::string& line) const { std::fprintf(stderr, "serve: %s\n", line.c_str()); }

void Server::handle_completion(const httplib::Request& req, httplib::Response& res, bool chat) {
  auto sub = std::make_shared<Submitted>();
  sub->start = Clock::now();
  try {
    sub->req = parse_completion_request(req.body, chat);
    sub->prompt_text = chat ? engine_.format_prompt(sub->req.messages, true, sub->req.thinking) : sub->req.prompt;
  } catch (const ApiError& e) {
    log(fmt::format("{} {}: {} ({})", req.method, req.path, e.status, e.param.empty() ? "body" : e.param));
    return send_error(res, e.status, e.what(), e.type, e.param, e.code);
  } catch (const Error& e) {  // the chat template failed on these messages
    log(fmt::format("{} {}: 400 (chat template)", req.method, req.path));
    return send_error(res, 400, e.what(), "invalid_request_error", "messages");
  }
  CompletionRequest& r = sub->req;
  std::vector<int32_t> prompt;
  try {
    prompt = engine_.encode_prompt(sub->prompt_text);
  } catch (const Error& e) {
    return send_error(res, 400, e.what(), "invalid_request_error", chat ? "messages" : "prompt");
  }
  const size_t room = prompt.size() < size_t(context_) ? size_t(context_) - prompt.size() : 0;
  if (room == 0 || size_t(r.max_tokens) > room) {
    log(fmt::format("{} {}: 400 (context length: {} prompt tokens)", req.method, req.path, prompt.size()));
    const std::string asked = r.max_tokens > 0 ? fmt::format(" and {} more were asked for", r.max_tokens) : "";
    return send_error(res, 400,
                      fmt::format("this model's context is {} tokens; the prompt has {}{}", context_, prompt.size(),
                                  asked),
                      "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded");
  }
  const int max_tokens = r.max_tokens > 0 ? r.max_tokens : int(std::min<size_t>(limits::kServeDefaultMaxTokens, room));
  if (!r.seed_given) r.sampling.seed = std::random_device{}();
  std::vector<SamplingOptions> choices;
  for (int i = 0; i < r.n; ++i) {
    SamplingOptions o = r.sampling;
    o.seed = r.sampling.seed + uint64_t(i);  // n answers: seeds seed, seed+1, ...
    o.max_new_tokens = max_tokens;
    choices.push_back(o);
  }
  const size_t prompt_tokens = prompt.size();
  sub->job = std::make_shared<Job>(std::move(prompt), std::move(choices));
  sub->id = fmt::format("{}-{:x}{:08x}", chat ? "chatcmpl" : "cmpl", next_id_++, std::random_device{}());
  sub->created = int64_t(std::time(nullptr));
  if (draining_ || !scheduler_->submit(sub->job)) {
    log(fmt::format("{} {}: 503 (busy)", req.method, req.path));
    return send_error(res, 503, draining_ ? "the server is shutting down" : "the server is busy; try again shortly",
                      "server_error", "", "server_overloaded");
  }
  in_flight_++;
  if (opt_.log_requests) log(fmt::format("{} {} prompt: {}", req.method, req.path, dump(json(sub->prompt_text))));
  const std::string model = engine_.model_name();
  auto done_log = [this, sub, prompt_tokens, method = req.method, path = req.path](size_t completion,
                                                                                  const std::string& outcome) {
    log(fmt::format("{} {}: {}; {} prompt + {} completion tokens, n={}, {:.2f} s", method, path, outcome,
                    prompt_tokens, completion, sub->req.n,
                    std::chrono::duration<double>(Clock::now() - sub->start).count()));
  };

  if (!r.stream) {
    std::vector<std::vector<int32_t>> tokens(size_t(r.n));
    std::vector<std::string> reasons(size_t(r.n));
    std::string error;
    for (int ended = 0; ended < r.n;)
      for (JobEvent& e : sub->job->wait(std::chrono::milliseconds(500))) {
        if (!e.ended) tokens[size_t(e.choice)].push_back(e.token);
        else {
          ended++;
          reasons[size_t(e.choice)] = e.finish_reason;
          if (!e.error.empty()) error = e.error;
        }
      }
    in_flight_--;
    if (!error.empty()) {
      done_log(0, "500");
      return send_error(res, 500, "generation failed: " + error, "server_error");
    }
    json out_choices = json::array();
    size_t completion = 0;
    for (int i = 0; i < r.n; ++i) {
      const auto& choice = sub->job->choices()[size_t(i)];
      std::string text = engine_.answer_text(tokens[size_t(i)], choice.stop);
      if (opt_.log_requests) log(fmt::format("answer {}: {}", i, dump(json(text))));
      completion += tokens[size_t(i)].size();
      json c = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", finish_reason(reasons[size_t(i)])}};
      if (chat) c["message"] = {{"role", "assistant"}, {"content", text}};
      else c["text"] = text;
      out_choices.push_back(std::move(c));
    }
    json body = {{"id", sub->id},
                 {"object", chat ? "chat.completion" : "text_completion"},
                 {"created", sub->created},
                 {"model", model},
                 {"choices", std::move(out_choices)},
                 {"usage", usage(prompt_tokens, completion)}};
    res.set_content(dump(body), "application/json");
    done_log(completion, "200");
    return;
  }

  auto stream = std::make_shared<Stream>();
  stream->sub = *sub;
  for (auto& choice : stream->sub.job->choices()) stream->answers.emplace_back(engine_, choice.stop);
  stream->started.assign(size_t(r.n), false);
  auto write = [](httplib::DataSink& sink, const std::string& data) { return sink.write(data.data(), data.size()); };
  auto event = [](const json& j) { return "data: " + dump(j) + "\n\n"; };
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, stream, model, write, event, prompt_tokens](size_t, httplib::DataSink& sink) {
        Stream& s = *stream;
        const auto events = s.sub.job->wait(std::chrono::milliseconds(200));
        // A client that went away frees its place in the batch at once.
        if (!sink.is_writable()) return false;
        std::string out;
        for (const JobEvent& e : events) {
          const size_t i = size_t(e.choice);
          AnswerText& text = s.answers[i];
          std::string piece = e.ended ? text.finish() : text.push(e.token);
          json reason = nullptr;
          if (e.ended) {
            s.ended++;
            s.completion_tokens += text.tokens().size();
            if (!e.error.empty()) s.error = e.error;
            reason = finish_reason(e.finish_reason);
          }
          if (!s.started[i] || !piece.empty()) {
            out += event(stream_chunk(s.sub, model, json::array({choice_delta(s.sub, e.choice, piece, !s.started[i],
                                                                              nullptr)})));
            s.started[i] = true;
          }
          if (e.ended) {
            if (opt_.log_requests)
              log(fmt::format("answer {}: {}", e.choice,
                              dump(json(engine_.answer_text(text.tokens(), s.sub.job->choices()[i].stop)))));
            out += event(stream_chunk(s.sub, model, json::array({choice_delta(s.sub, e.choice, "", false, reason)})));
          }
        }
        if (s.ended == s.sub.job->choices().size()) {
          if (!s.error.empty()) out += event(error_body("generation failed: " + s.error, "server_error"));
          if (s.sub.req.include_usage) {
            json last = stream_chunk(s.sub, model, json::array());
            last["usage"] = usage(prompt_tokens, s.completion_tokens);
            out += event(last);
          }
          out += "data: [DONE]\n\n";
        }
        if (!out.empty() && !write(sink, out)) return false;
        if (s.ended == s.sub.job->choices().size()) {
          s.finished = true;
          sink.done();
        }
        return true;
      },
      [this, stream, done_log](bool success) {
        if (!stream->finished) scheduler_->cancel(stream->sub.job);  // the client went away mid-answer
        in_flight_--;
        size_t generated = 0;
        for (auto& a : stream->answers) generated += a.tokens().size();
        done_log(generated, success && stream->finished ? "200 (stream)" : "stream cut off");
      });
}

}  // namespace bq::serve
