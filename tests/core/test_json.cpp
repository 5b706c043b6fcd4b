// parse_json: the depth bound counts brackets outside strings only, and large flat objects parse in linear time.
#include <gtest/gtest.h>

#include <string>

#include "core/json.h"
#include "test_util.h"

namespace {

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(ParseJson, DepthCountsBracketsOutsideStringsOnly) {
  // Brackets inside strings, escaped quotes included, are text.
  auto j = bq::parse_json("{\"a\": \"" + repeat("[{", 500) + "\\\"" + repeat("[", 500) + "\"}", "t.json");
  EXPECT_EQ(j["a"].get<std::string>(), repeat("[{", 500) + "\"" + repeat("[", 500));
  EXPECT_NO_THROW(bq::parse_json(repeat("[", 100) + repeat("]", 100), "t.json"));
  std::string e = bq::test::error_of([] { bq::parse_json(repeat("[", 101) + repeat("]", 101), "t.json"); });
  EXPECT_NE(e.find("t.json: JSON nested more than 100 deep"), std::string::npos) << e;
  // Unbalanced or truncated text is the parser's error, named.
  e = bq::test::error_of([] { bq::parse_json("{\"a\": [1, 2", "t.json"); });
  EXPECT_NE(e.find("t.json: invalid JSON"), std::string::npos) << e;
}

// An object of 200k object members (a tokenizer's added-token table is one): a parse that searched the parent at
// each closed member (nlohmann's parse callback does) would not finish within the test's timeout.
TEST(ParseJson, ManyObjectMembers) {
  std::string text = "{";
  for (int i = 0; i < 200000; ++i) text += (i ? ",\"" : "\"") + std::to_string(i) + "\":{\"special\":true}";
  text += "}";
  EXPECT_EQ(bq::parse_json(text, "big.json").size(), 200000u);
}

}  // namespace
