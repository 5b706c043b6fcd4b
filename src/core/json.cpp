#include "core/json.h"

#include <algorithm>

#include "core/error.h"
#include "core/limits.h"

namespace bq {

// The deepest nesting of objects and arrays in text (brackets inside strings not counted). A scan before parsing,
// because nlohmann's parse callback, the other way to bound depth, makes every closed object search its parent:
// quadratic in the members of one object (a tokenizer's 128k added tokens took minutes).
static int nesting_depth(std::string_view text, int stop_above) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '{' || ch == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > stop_above) break;
    } else if (ch == '}' || ch == ']') {
      --depth;
    }
  }
  return deepest;
}

nlohmann::json parse_json(std::string_view text, const std::string& origin) {
  using json = nlohmann::json;
  if (nesting_depth(text, limits::kMaxNesting) > limits::kMaxNesting)
    fail("{}: JSON nested more than {} deep", origin, limits::kMaxNesting);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", origin, e.what());
  }
}

}  // namespace bq
