// Renders a conversation with a checkpoint's own chat template, the way transformers' apply_chat_template does.
#pragma once
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace bq {

struct ChatMessage {
  std::string role;
  std::string content;
};

struct ChatTemplateOptions {
  bool add_generation_prompt = true;
  std::string bos_token, eos_token;
  // More template variables (tools, date_string, enable_thinking, ...); they override bos_token/eos_token.
  // Ordered so that tool schemas keep their key order in tojson.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  std::optional<std::tm> now;  // what strftime_now() sees; unset: the current local time
  std::string origin = "chat_template";  // the file the template came from, named in its errors
};

// Context: messages, add_generation_prompt, bos_token, eos_token, tools/documents (none unless given), plus
// extra. Returns the prompt text with special tokens as text (the tokenizer splits them out).
std::string apply_chat_template(const std::string& template_source, const std::vector<ChatMessage>& messages,
                                const ChatTemplateOptions& opt);

class Tokenizer;
// A conversation as a model reads it, ready for its reply: the tokenizer's own chat template (an Error if it has
// none) with the generation prompt, the tokenizer's BOS and EOS tokens, and enable_thinking where `thinking` is set.
std::string render_chat(const Tokenizer& tok, const std::vector<ChatMessage>& messages, std::optional<bool> thinking);

}  // namespace bq
