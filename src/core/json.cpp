#include "core/json.h"

#include "core/error.h"
#include "core/limits.h"

namespace bq {

nlohmann::json parse_json(std::string_view text, const std::string& origin) {
  using json = nlohmann::json;
  // The parser itself keeps its own stack; the callback stops it at the first level too deep.
  auto bounded = [&](int depth, json::parse_event_t, json&) {
    if (depth > limits::kMaxNesting) fail("{}: JSON nested more than {} deep", origin, limits::kMaxNesting);
    return true;
  };
  try {
    return json::parse(text, bounded);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", origin, e.what());
  }
}

}  // namespace bq
