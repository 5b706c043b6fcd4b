// JSON parsing for files from outside: nesting is bounded, because whatever reads the value (Jinja's context, the
// tokenizer's nested Sequences, dump()) recurses once per level.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace bq {

// Throws bq::Error "origin: invalid JSON: ..." or "origin: JSON nested more than N deep".
nlohmann::json parse_json(std::string_view text, const std::string& origin);

}  // namespace bq
