// `biomedq serve` from the outside: a server process on a free loopback port, answered by the official OpenAI client
// (node), many concurrent streams, hostile requests, keys, and a clean stop on SIGTERM.
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "core/files.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A `biomedq serve` child process; stdout is read up to its "listening on" line, stderr goes to a file.
class ServeProcess {
 public:
  ServeProcess(const std::string& args, const fs::path& log) : log_(log) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::close(out[1]);
      std::string cmd = "exec " + bq::test::biomedq_binary().string() + " serve " + args + " 2>" + log.string();
      ::setenv("OMP_NUM_THREADS", "1", 1);
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(out[1]);
    FILE* f = ::fdopen(out[0], "r");
    char line[1024];
    while (std::fgets(line, sizeof line, f)) {
      std::string s = line;
      banner_ += s;
      if (auto at = s.find("listening on http://127.0.0.1:"); at != std::string::npos) {
        port_ = std::stoi(s.substr(at + 30));
        break;
      }
    }
    out_ = f;  // kept open: the server may still write to stdout
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_) std::fclose(out_);
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& banner() const { return banner_; }
  std::string log() const { return bq::read_file(log_); }
  // SIGTERM, then the exit status (-1 when it had to be killed after `limit`).
  int stop(std::chrono::seconds limit = std::chrono::seconds(20)) {
    ::kill(pid_, SIGTERM);
    auto until = std::chrono::steady_clock::now() + limit;
    int st = 0;
    while (std::chrono::steady_clock::now() < until) {
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  int port_ = 0;
  std::string banner_;
};

json chat_body(const std::string& prompt, int max_tokens, bool stream = false) {
  return {{"model", "local"},
          {"messages", json::array({{{"role", "user"}, {"content", prompt}}})},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"stream", stream}};
}

// The content of a server-sent event stream of chat chunks, joined; "" and a failure when it is malformed.
std::string join_stream(const std::string& body, std::string* finish = nullptr) {
  std::string text;
  size_t at = 0;
  bool done = false;
  while (at < body.size()) {
    size_t end = body.find("\n\n", at);
    EXPECT_NE(end, std::string::npos) << "unterminated event in: " << body;
    if (end == std::string::npos) return "";
    std::string ev = body.substr(at, end - at);
    at = end + 2;
    EXPECT_TRUE(ev.starts_with("data: ")) << ev;
    std::string data = ev.substr(6);
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    json j = json::parse(data);
    EXPECT_EQ(j["object"], "chat.completion.chunk");
    for (auto& c : j["choices"]) {
      if (c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
      if (finish && !c["finish_reason"].is_null()) *finish = c["finish_reason"];
    }
  }
  EXPECT_TRUE(done) << "no [DONE] at the end";
  return text;
}

// `biomedq generate --chat` for the same message, greedy: the reference every answer must equal.
std::string generate_answer(const fs::path& model, const std::string& prompt, int max_tokens) {
  std::string out;
  const std::string cmd = "(OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() + " generate --model " +
                          model.string() + " --chat --prompt '" + prompt + "' --max-new-tokens " +
                          std::to_string(max_tokens) + " 2>/dev/null)";
  EXPECT_EQ(bq::test::run_command(cmd, &out), 0) << out;
  if (!out.empty() && out.back() == '\n') out.pop_back();  // generate ends the answer with a newline
  return out;
}

// A streamed chat request on a raw socket, returned once the answer has begun (-1 on failure): for clients that
// go away mid-answer, or answers that must be running while something else happens.
int start_stream(int port, const std::string& body, const std::string& headers = "") {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return ::close(fd), -1;
  const std::string request = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
                              headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  char buf[512];
  if (::send(fd, request.data(), request.size(), 0) != ssize_t(request.size()) || ::recv(fd, buf, sizeof buf, 0) <= 0)
    return ::close(fd), -1;
  return fd;
}

// Everything the peer still sends, until it closes.
std::string read_to_end(int fd) {
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, size_t(n));
  ::close(fd);
  return out;
}

const char* const kPrompts[] = {"What does TP53 encode?", "Name a kidney disease.", "Is aspirin an anticoagulant?",
                                "Define apoptosis."};
constexpr int kMaxTokens = 20;

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = bq::test::temp_dir("serve");
    std::string out;
    ASSERT_EQ(bq::test::run_command(bq::test::biomedq_binary().string() + " synth --preset tiny --out " +
                                        (dir_ / "model").string(), &out), 0) << out;
    server_ = new ServeProcess("--model " + (dir_ / "model").string() + " --port 0 --max-batch 16 --max-queue 64",
                               dir_ / "serve.log");
    ASSERT_GT(server_->port(), 0) << server_->banner() << server_->log();
    for (const char* p : kPrompts) expected_.push_back(generate_answer(dir_ / "model", p, kMaxTokens));
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static httplib::Client client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(30, 0);
    return c;
  }
  static httplib::Result post(const std::string& path, const std::string& body) {
    return client().Post(path.c_str(), body, "application/json");
  }
  static void expect_healthy() {
    auto r = client().Get("/health");
    ASSERT_TRUE(r) << "the server stopped answering";
    EXPECT_EQ(r->status, 200);
  }
  // A refusal in OpenAI's shape, with the status and (when given) the param it names.
  static void expect_error(const httplib::Result& r, int status, const std::string& param = "") {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.contains("error")) << r->body;
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_TRUE(j["error"]["type"].is_string());
    if (!param.empty()) {
      EXPECT_EQ(j["error"]["param"], param) << r->body;
    }
  }

  static inline fs::path dir_;
  static inline ServeProcess* server_ = nullptr;
  static inline std::vector<std::string> expected_;
};

TEST_F(Serve, BannerSaysWhereAndHowMuchMemoryAndStaysOnLoopback) {
  EXPECT_NE(server_->banner().find("memory: weights"), std::string::npos) << server_->banner();
  EXPECT_NE(server_->banner().find("(bf16 on cpu)"), std::string::npos) << server_->banner();
  EXPECT_NE(server_->banner().find("API key off; request text not logged"), std::string::npos);
  auto models = client().Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "model");
}

TEST_F(Serve, GreedyAnswersEqualGenerateStreamedOrNot) {
  for (size_t i = 0; i < std::size(kPrompts); ++i) {
    auto r = post("/v1/chat/completions", chat_body(kPrompts[i], kMaxTokens).dump());
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    json j = json::parse(r->body);
    EXPECT_EQ(j["object"], "chat.completion");
    EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
    EXPECT_EQ(j["choices"][0]["message"]["content"], expected_[i]) << kPrompts[i];
    EXPECT_EQ(j["usage"]["total_tokens"].get<int>(),
              j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());
    auto s = post("/v1/chat/completions", chat_body(kPrompts[i], kMaxTokens, true).dump());
    ASSERT_TRUE(s);
    EXPECT_EQ(s->get_header_value("Content-Type"), "text/event-stream");
    std::string finish;
    EXPECT_EQ(join_stream(s->body, &finish), expected_[i]);
    EXPECT_EQ(finish, j["choices"][0]["finish_reason"].get<std::string>());
  }
  // A stop string ends the answer before it, streamed or not, as generate --stop does.
  std::string stopped;
  ASSERT_EQ(bq::test::run_command("(OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() + " generate --model " +
                                      (dir_ / "model").string() + " --chat --prompt '" + kPrompts[0] +
                                      "' --max-new-tokens 20 --stop it 2>/dev/null)", &stopped), 0);
  stopped.pop_back();
  json with_stop = chat_body(kPrompts[0], kMaxTokens);
  with_stop["stop"] = "it";
  auto r = post("/v1/chat/completions", with_stop.dump());
  ASSERT_TRUE(r);
  EXPECT_EQ(json::parse(r->body)["choices"][0]["message"]["content"], stopped);
  EXPECT_EQ(json::parse(r->body)["choices"][0]["finish_reason"], "stop");
  with_stop["stream"] = true;
  r = post("/v1/chat/completions", with_stop.dump());
  ASSERT_TRUE(r);
  EXPECT_EQ(join_stream(r->body), stopped);
  // Text completions take the prompt as it is: `generate` without --chat.
  r = post("/v1/completions", json{{"prompt", "Kidney"}, {"max_tokens", 8}, {"temperature", 0}}.dump());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  std::string want;
  ASSERT_EQ(bq::test::run_command("(OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() + " generate --model " +
                                      (dir_ / "model").string() + " --prompt Kidney --max-new-tokens 8 2>/dev/null)",
                                  &want), 0);
  want.pop_back();
  EXPECT_EQ(json::parse(r->body)["choices"][0]["text"], want);
}

TEST_F(Serve, OfficialOpenAiClient) {
  fs::path modules = bq::test::source_dir() / "build/test-assets/node_modules";
  if (!fs::exists(modules / "openai/package.json"))
    GTEST_SKIP() << "the openai npm package is not in build/test-assets (run scripts/fetch-test-assets.sh)";
  std::string out;
  const std::string url = "http://127.0.0.1:" + std::to_string(server_->port()) + "/v1";
  ASSERT_EQ(bq::test::run_command("node " + (bq::test::source_dir() / "tests/serve_client.mjs").string() + " " +
                                      modules.string() + " " + url + " '" + kPrompts[0] + "' " +
                                      std::to_string(kMaxTokens), &out), 0) << out;
  json j = json::parse(out.substr(out.find('{')));
  EXPECT_EQ(j["chat"], expected_[0]);
  EXPECT_EQ(j["streamed"], expected_[0]);
  EXPECT_EQ(j["stream_finish"], j["chat_finish"]);
  EXPECT_EQ(j["stream_usage"], j["chat_usage"]);
  EXPECT_EQ(j["n2"], json::array({expected_[0], expected_[0]}));  // greedy: both answers alike
  EXPECT_EQ(j["n2_indexes"], json::array({0, 1}));
  EXPECT_EQ(j["error"]["status"], 400) << out;
  EXPECT_EQ(j["error"]["param"], "max_tokens") << out;
}

TEST_F(Serve, ManyConcurrentStreamsEachEqualItsSingleAnswer) {
  constexpr int kClients = 64, kRequestsEach = 2;
  std::atomic<int> failures{0}, mismatches{0};
  std::vector<std::thread> clients;
  const auto start = std::chrono::steady_clock::now();
  for (int c = 0; c < kClients; ++c)
    clients.emplace_back([&, c] {
      for (int k = 0; k < kRequestsEach; ++k) {
        const size_t p = size_t(c + k) % std::size(kPrompts);
        auto r = post("/v1/chat/completions", chat_body(kPrompts[p], kMaxTokens, true).dump());
        if (!r || r->status != 200) {
          failures++;
          ADD_FAILURE() << "stream " << c << "." << k << ": "
                        << (r ? std::to_string(r->status) + " " + r->body : httplib::to_string(r.error()));
        }
        else if (join_stream(r->body) != expected_[p]) mismatches++;
      }
    });
  for (auto& t : clients) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(mismatches, 0);
  EXPECT_LT(seconds, 40) << kClients * kRequestsEach << " streams";
  expect_healthy();
}

TEST_F(Serve, HostileRequestsGetClearRefusalsAndTheServerKeepsServing) {
  expect_error(post("/v1/chat/completions", "{\"messages\": [ oops"), 400);
  expect_error(post("/v1/chat/completions", "[1, 2]"), 400);
  expect_error(post("/v1/chat/completions", std::string(5u << 20, ' ')), 413);
  auto with = [](const char* key, json v) {
    json b = chat_body("hi", 4);
    b[key] = std::move(v);
    return b.dump();
  };
  expect_error(post("/v1/chat/completions", with("max_tokens", -5)), 400, "max_tokens");
  expect_error(post("/v1/chat/completions", with("max_tokens", 1e12)), 400, "max_tokens");
  expect_error(post("/v1/chat/completions", with("temperature", "hot")), 400, "temperature");
  expect_error(post("/v1/chat/completions", with("temperature", 1e9)), 400, "temperature");
  expect_error(post("/v1/chat/completions", with("top_p", -1)), 400, "top_p");
  expect_error(post("/v1/chat/completions", with("n", 100000)), 400, "n");
  expect_error(post("/v1/chat/completions", with("stop", json::array({1, 2}))), 400, "stop");
  expect_error(post("/v1/chat/completions", with("chat_template_kwargs", 5)), 400, "chat_template_kwargs");
  expect_error(post("/v1/chat/completions", with("chat_template_kwargs", {{"enable_thinking", "yes"}})), 400,
               "chat_template_kwargs.enable_thinking");
  EXPECT_EQ(post("/v1/chat/completions", with("chat_template_kwargs", {{"enable_thinking", false}}))->status, 200);
  expect_error(post("/v1/chat/completions", with("messages", json::array())), 400, "messages");
  expect_error(post("/v1/chat/completions", with("messages", json::array({{{"role", "wizard"}, {"content", "x"}}}))),
               400, "messages[0].role");
  // Invalid UTF-8 inside a JSON string.
  expect_error(post("/v1/chat/completions",
                    "{\"messages\": [{\"role\": \"user\", \"content\": \"caf\xC3\x28\"}], \"max_tokens\": 4}"),
               400);
  // Longer than the context: OpenAI's code for it.
  auto r = post("/v1/chat/completions", with("max_tokens", 9000));
  expect_error(r, 400);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "context_length_exceeded");
  r = client().Get("/v1/nowhere");
  expect_error(r, 404);
  expect_healthy();
}

TEST_F(Serve, AClientThatDisconnectsMidStreamIsCancelled) {
  int fd = start_stream(server_->port(), chat_body("Tell a very long story.", 4000, true).dump());
  ASSERT_GE(fd, 0);
  ::close(fd);
  // The answer ends long before 4000 tokens: the server noticed and cancelled it.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_->log().find("stream cut off") == std::string::npos && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_NE(server_->log().find("stream cut off"), std::string::npos) << server_->log();
  expect_healthy();
}

TEST_F(Serve, PromptTextIsNotLogged) {
  ASSERT_TRUE(post("/v1/chat/completions", chat_body("secret-patient-name-xyz", 2).dump()));
  EXPECT_EQ(server_->log().find("secret-patient-name-xyz"), std::string::npos);
}

TEST(ServeAccess, KeysBusyServerAndStoppingCleanly) {
  fs::path dir = bq::test::temp_dir("serve-key");
  bq::write_file_atomic(dir / "key", "sk-local-test-key-0123456789\n");
  // A non-loopback host without a key is refused before anything loads.
  std::string out;
  EXPECT_NE(bq::test::run_command(bq::test::biomedq_binary().string() + " serve --synthetic tiny --host 0.0.0.0", &out), 0);
  EXPECT_NE(out.find("--api-key-file"), std::string::npos) << out;

  ServeProcess server("--synthetic tiny --port 0 --api-key-file " + (dir / "key").string() +
                          " --max-batch 1 --max-queue 0",
                      dir / "serve.log");
  ASSERT_GT(server.port(), 0) << server.banner() << server.log();
  EXPECT_EQ(server.banner().find("sk-local-test-key"), std::string::npos);
  httplib::Client c("127.0.0.1", server.port());
  const std::string body = chat_body("hi", 4).dump();
  auto r = c.Post("/v1/chat/completions", body, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  r = c.Post("/v1/chat/completions", {{"Authorization", "Bearer wrong-key-wrong-key-00"}}, body, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "invalid_api_key");
  const httplib::Headers auth = {{"Authorization", "Bearer sk-local-test-key-0123456789"}};
  r = c.Post("/v1/chat/completions", auth, body, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;

  // One place in all: while a long answer streams, another request is turned away with 503.
  const int long_answer =
      start_stream(server.port(), chat_body("story", 3000, true).dump(),
                   "Authorization: Bearer sk-local-test-key-0123456789\r\nConnection: close\r\n");
  ASSERT_GE(long_answer, 0);
  r = c.Post("/v1/chat/completions", auth, body, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "server_overloaded");
  // SIGTERM while that answer streams: it is finished, then the server exits 0.
  ::kill(server.pid(), SIGTERM);
  const std::string rest = read_to_end(long_answer);
  EXPECT_NE(rest.find("\"finish_reason\":\"length\""), std::string::npos);
  EXPECT_NE(rest.find("data: [DONE]"), std::string::npos);
  EXPECT_EQ(server.stop(), 0) << server.log();
  EXPECT_NE(server.log().find("serve: stopped"), std::string::npos) << server.log();
  EXPECT_EQ(server.log().find("sk-local-test-key"), std::string::npos);
}

}  // namespace
