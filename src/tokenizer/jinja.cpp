// Jinja for chat templates: see jinja.h. The engine is in jinja/: values, lexer, parser, the evaluator
// (render) and the builtins it calls by name (filters, tests, methods, globals).
#include "tokenizer/jinja.h"

#include "core/error.h"
#include "core/files.h"
#include "core/limits.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/parser.h"
#include "tokenizer/jinja/render.h"

namespace bq {

JinjaTemplate::JinjaTemplate(std::string_view source, std::string origin_for_errors)
    : origin_(std::move(origin_for_errors)) {
  if (source.size() > limits::kChatTemplateBytes)
    fail("{}: a template of {} is larger than the {} allowed", origin_, size_str(source.size()),
         size_str(limits::kChatTemplateBytes));
  root_ = jinja::parse(jinja::lex(source, origin_), source, origin_);
}

std::string JinjaTemplate::render(const nlohmann::ordered_json& context, const JinjaRenderOptions& opt) const {
  std::tm now{};
  if (opt.now) {
    now = *opt.now;
  } else {
    std::time_t t = std::time(nullptr);
    localtime_r(&t, &now);
  }
  return jinja::render(*root_, context, origin_, now);
}

}  // namespace bq
