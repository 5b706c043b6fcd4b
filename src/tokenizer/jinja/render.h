// The Jinja evaluator: walks the parser's AST with the render context as variables. Loops, macros, namespaces
// and assignments live here; what templates call by name is in builtins.h.
#pragma once
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>

#include "tokenizer/jinja/parser.h"

namespace bq::jinja {

// Renders `root` with the keys of `context` (an object) as variables and `now` as strftime_now's time. Errors
// throw bq::Error naming origin:line:column.
std::string render(const Node& root, const nlohmann::ordered_json& context, const std::string& origin,
                   const std::tm& now);

}  // namespace bq::jinja
