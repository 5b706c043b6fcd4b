// A Jinja template engine for Hugging Face chat templates: lexer -> parser -> AST -> tree-walking evaluator.
// It follows the environment transformers renders chat templates in (trim_blocks and lstrip_blocks on, loop
// controls, a `tojson` that behaves like Python's json.dumps with ensure_ascii=False, `raise_exception` and
// `strftime_now` globals). Python semantics where they differ from JavaScript: `undefined` is distinct from
// `none`, `/` is true division, True/None render as "True"/"None".
#pragma once
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace bq {

namespace jinja {
struct Node;
}

struct JinjaRenderOptions {
  std::optional<std::tm> now;  // the local time strftime_now() reports; unset: the current local time
};

// Parses once; renders many times. Syntax errors throw bq::Error naming origin:line:column; runtime errors
// (raise_exception, unknown filter or method, type errors) throw bq::Error with the message and the line.
class JinjaTemplate {
 public:
  explicit JinjaTemplate(std::string_view source, std::string origin_for_errors = "chat_template");
  // `context` must be an object. Objects keep their key order (tojson of tool schemas depends on it); a
  // nlohmann::json converts implicitly but arrives with its keys sorted.
  std::string render(const nlohmann::ordered_json& context, const JinjaRenderOptions& opt = {}) const;

 private:
  std::string origin_;
  std::shared_ptr<const jinja::Node> root_;
};

}  // namespace bq
