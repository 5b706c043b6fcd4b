#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer.h"

namespace bq {

std::string apply_chat_template(const std::string& template_source, const std::vector<ChatMessage>& messages,
                                const ChatTemplateOptions& opt) {
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  // transformers always passes tools and documents (None when absent), so `tools is defined` holds.
  ctx["tools"] = nullptr;
  ctx["documents"] = nullptr;
  ctx["bos_token"] = opt.bos_token;
  ctx["eos_token"] = opt.eos_token;
  if (!opt.extra.is_null()) {
    if (!opt.extra.is_object()) fail("chat template: extra variables must be a JSON object");
    for (auto it = opt.extra.begin(); it != opt.extra.end(); ++it) ctx[it.key()] = it.value();
  }
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (auto& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
  ctx["messages"] = std::move(msgs);
  ctx["add_generation_prompt"] = opt.add_generation_prompt;
  return JinjaTemplate(template_source, opt.origin).render(ctx, JinjaRenderOptions{opt.now});
}

std::string render_chat(const Tokenizer& tok, const std::vector<ChatMessage>& messages, std::optional<bool> thinking) {
  if (tok.chat_template().empty()) fail("the tokenizer has no chat template");
  ChatTemplateOptions opt;
  opt.add_generation_prompt = true;
  if (thinking) opt.extra["enable_thinking"] = *thinking;
  opt.bos_token = tok.bos_token();
  opt.eos_token = tok.eos_token();
  opt.origin = tok.chat_template_origin();
  return apply_chat_template(tok.chat_template(), messages, opt);
}

}  // namespace bq
