// The OpenAI API's side of the server: reading and checking request bodies, the error shape, and turning an
// answer's tokens into text pieces for streaming.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "generate/engine.h"

namespace bq::serve {

// A request the server refuses, with the HTTP status and OpenAI's error fields.
struct ApiError : Error {
  int status;
  std::string type, param, code;
  ApiError(int status, const std::string& message, std::string param = "", std::string code = "",
           std::string type = "invalid_request_error")
      : Error(message), status(status), type(std::move(type)), param(std::move(param)), code(std::move(code)) {}
};

// {"error": {"message", "type", "param", "code"}}; empty param and code are null, as OpenAI sends them.
nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& param = "",
                          const std::string& code = "");

// One /v1/chat/completions or /v1/completions request body, checked (ApiError 400 names the offending field).
struct CompletionRequest {
  bool chat = true;
  std::vector<ChatTurn> messages;  // chat
  std::optional<bool> thinking;    // chat_template_kwargs.enable_thinking (unset: the template's default)
  std::string prompt;              // completions
  int max_tokens = 0;              // 0: not given (the server decides)
  int n = 1;
  bool stream = false, include_usage = false;
  bool seed_given = false;
  SamplingOptions sampling;  // temperature, top_p, seed and stop; max_new_tokens is set from max_tokens later
};
CompletionRequest parse_completion_request(std::string_view body, bool chat);

// One answer's text as its tokens arrive. What is handed out is never taken back, so a piece never ends inside a
// character still incomplete, nor in what could be the start of a stop string; the pieces joined equal the
// answer generate() gives for the same tokens.
class AnswerText {
 public:
  AnswerText(const Engine& engine, const std::vector<std::string>& stop) : engine_(&engine), stop_(&stop) {}
  std::string push(int32_t token);  // the text that became safe to send (often "")
  std::string finish();             // the rest of the final answer
  const std::vector<int32_t>& tokens() const { return tokens_; }

 private:
  const Engine* engine_;
  const std::vector<std::string>* stop_;
  std::vector<int32_t> tokens_;
  size_t sent_ = 0;  // bytes of the answer handed out
};

}  // namespace bq::serve
