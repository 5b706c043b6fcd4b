#include "serve/openai.h"

#include <cmath>

#include "core/limits.h"

namespace bq::serve {

namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

// A present, non-null field (absent and null both mean "the default", as in OpenAI's API).
const json* field(const json& body, const char* key) {
  auto it = body.find(key);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number_in(const json& body, const char* key, double lo, double hi, double fallback) {
  const json* v = field(body, key);
  if (!v) return fallback;
  if (!v->is_number()) bad(key, fmt::format("'{}' must be a number", key));
  double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) bad(key, fmt::format("'{}' must be between {} and {}", key, lo, hi));
  return x;
}

int64_t integer_in(const json& body, const char* key, int64_t lo, int64_t hi, int64_t fallback) {
  const json* v = field(body, key);
  if (!v) return fallback;
  if (!v->is_number_integer()) bad(key, fmt::format("'{}' must be an integer", key));
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX))
    bad(key, fmt::format("'{}' must be between {} and {}", key, lo, hi));
  int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) bad(key, fmt::format("'{}' must be between {} and {}", key, lo, hi));
  return x;
}

bool flag(const json& body, const char* key) {
  const json* v = field(body, key);
  if (!v) return false;
  if (!v->is_boolean()) bad(key, fmt::format("'{}' must be true or false", key));
  return v->get<bool>();
}

// A message's content: a string, or a list of text parts (what newer clients send).
std::string message_content(const json& content, size_t i) {
  const std::string param = fmt::format("messages[{}].content", i);
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(param, "'" + param + "' must be a string or a list of text parts");
  std::string text;
  for (auto& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      bad(param, "only text parts ({\"type\": \"text\", \"text\": ...}) are supported in '" + param + "'");
    text += part["text"].get<std::string>();
  }
  return text;
}

std::vector<ChatTurn> parse_messages(const json& body) {
  const json* msgs = field(body, "messages");
  if (!msgs) bad("messages", "'messages' is required");
  if (!msgs->is_array() || msgs->empty()) bad("messages", "'messages' must be a non-empty list");
  if (msgs->size() > size_t(limits::kServeMaxMessages))
    bad("messages", fmt::format("at most {} messages per request", limits::kServeMaxMessages));
  std::vector<ChatTurn> turns;
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    if (!m.is_object()) bad(fmt::format("messages[{}]", i), fmt::format("'messages[{}]' must be an object", i));
    const json* role = field(m, "role");
    const json* content = field(m, "content");
    if (!role || !role->is_string()) bad(fmt::format("messages[{}].role", i), "each message needs a string 'role'");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // newer clients' name for the system message
    if (r != "system" && r != "user" && r != "assistant")
      bad(fmt::format("messages[{}].role", i), "role must be system, developer, user or assistant, not '" + r + "'");
    if (!content) bad(fmt::format("messages[{}].content", i), "each message needs 'content'");
    turns.push_back({r, message_content(*content, i)});
  }
  return turns;
}

std::vector<std::string> parse_stop(const json& body) {
  const json* v = field(body, "stop");
  if (!v) return {};
  std::vector<std::string> stop;
  if (v->is_string()) {
    stop.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    for (auto& s : *v) {
      if (!s.is_string()) bad("stop", "'stop' must be a string or a list of strings");
      stop.push_back(s.get<std::string>());
    }
  } else {
    bad("stop", "'stop' must be a string or a list of strings");
  }
  if (stop.size() > size_t(limits::kServeMaxStopStrings))
    bad("stop", fmt::format("at most {} stop strings", limits::kServeMaxStopStrings));
  for (auto& s : stop)
    if (s.size() > limits::kServeMaxStopBytes)
      bad("stop", fmt::format("a stop string may have at most {} bytes", limits::kServeMaxStopBytes));
  return stop;
}

}  // namespace

nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& param,
                          const std::string& code) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

CompletionRequest parse_completion_request(std::string_view body, bool chat) {
  json j;
  try {
    // The parser also refuses strings that are not valid UTF-8.
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  CompletionRequest r;
  r.chat = chat;
  if (chat) {
    r.messages = parse_messages(j);
    // vLLM's way to pass template variables; enable_thinking is the one the engine takes (Qwen3).
    if (const json* kw = field(j, "chat_template_kwargs")) {
      if (!kw->is_object()) bad("chat_template_kwargs", "'chat_template_kwargs' must be an object");
      if (const json* t = field(*kw, "enable_thinking")) {
        if (!t->is_boolean()) bad("chat_template_kwargs.enable_thinking", "'enable_thinking' must be true or false");
        r.thinking = t->get<bool>();
      }
    }
  } else {
    const json* p = field(j, "prompt");
    if (!p) bad("prompt", "'prompt' is required");
    if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
    if (!p->is_string()) bad("prompt", "'prompt' must be a string");
    r.prompt = p->get<std::string>();
  }
  if (const json* m = field(j, "model"); m && !m->is_string()) bad("model", "'model' must be a string");
  // max_completion_tokens is the newer name; either bounds the answer.
  const char* max_key = field(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  r.max_tokens = int(integer_in(j, max_key, 1, 1 << 24, 0));
  r.n = int(integer_in(j, "n", 1, limits::kServeMaxChoices, 1));
  r.stream = flag(j, "stream");
  if (const json* so = field(j, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = flag(*so, "include_usage");
  }
  r.sampling.temperature = float(number_in(j, "temperature", 0, 2, 1));  // OpenAI's default: sample at 1
  r.sampling.top_p = float(number_in(j, "top_p", 0, 1, 1));
  if (field(j, "top_p") && r.sampling.top_p <= 0) bad("top_p", "'top_p' must be above 0");
  r.seed_given = field(j, "seed") != nullptr;
  r.sampling.seed = uint64_t(integer_in(j, "seed", INT64_MIN, INT64_MAX, 0));
  r.sampling.stop = parse_stop(j);
  if (flag(j, "logprobs")) bad("logprobs", "logprobs are not supported");
  return r;
}

std::string AnswerText::push(int32_t token) {
  tokens_.push_back(token);
  const std::string text = engine_->answer_text(tokens_, *stop_);
  std::string_view safe = text;
  // A character whose bytes have not all arrived decodes as U+FFFD at the end: wait for the rest.
  constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  while (safe.ends_with(kReplacement)) safe.remove_suffix(kReplacement.size());
  // The text may end in the beginning of a stop string; it is sent once it is known not to be one.
  size_t held = 0;
  for (auto& s : *stop_)
    for (size_t k = std::min(s.size() - (s.empty() ? 0 : 1), safe.size()); k > held; --k)
      if (safe.ends_with(std::string_view(s).substr(0, k))) {
        held = k;
        break;
      }
  safe.remove_suffix(held);
  if (safe.size() <= sent_) return "";
  std::string piece(safe.substr(sent_));
  sent_ = safe.size();
  return piece;
}

std::string AnswerText::finish() {
  const std::string text = engine_->answer_text(tokens_, *stop_);
  std::string rest = text.size() > sent_ ? text.substr(sent_) : "";
  sent_ = std::max(sent_, text.size());
  return rest;
}

}  // namespace bq::serve
