// Readers of the benchmark formats, on small fixtures with the real files' quirks.
#include <gtest/gtest.h>

#include "core/error.h"
#include "eval/readers.h"
#include "eval/task.h"

using namespace bq::eval;

TEST(EvalTsv, QuotedMultilineCrlfAndBom) {
  std::string text =
      "\xEF\xBB\xBFid\ttext\tlabels\r\n"
      "1\tplain text\ta;b\r\n"
      "2\t\"quoted\twith tab and \"\"quotes\"\"\r\nand a second line\"\tc\r\n"
      "\r\n"
      "3\tmid \"quote\" stays\t\r\n";
  TsvTable t = parse_tsv(text, "fx.tsv", false);
  ASSERT_EQ(t.header, (std::vector<std::string>{"id", "text", "labels"}));
  ASSERT_EQ(t.rows.size(), 3u);
  EXPECT_EQ(t.rows[0].cells[2], "a;b");
  EXPECT_EQ(t.rows[1].cells[1], "quoted\twith tab and \"quotes\"\nand a second line");
  EXPECT_EQ(t.rows[1].cells[2], "c");
  EXPECT_EQ(t.rows[1].line, 3u);
  EXPECT_EQ(t.rows[2].cells[1], "mid \"quote\" stays");
  EXPECT_EQ(t.rows[2].cells[2], "");
  EXPECT_EQ(t.rows[2].line, 6u);  // counts the quoted field's line break and the blank line
}

TEST(EvalTsv, MalformedRowsFailWithFileAndLineOrAreCounted) {
  std::string text = "a\tb\n1\t2\n3\n4\t5\t6\n7\t8\n";
  try {
    parse_tsv(text, "bad.tsv", false);
    FAIL() << "expected an error";
  } catch (const bq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.tsv:3"), std::string::npos) << e.what();
  }
  TsvTable t = parse_tsv(text, "bad.tsv", true);
  EXPECT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.skipped, 2u);
  ASSERT_EQ(t.problems.size(), 2u);
  EXPECT_NE(t.problems[1].find("bad.tsv:4"), std::string::npos);
  EXPECT_THROW(parse_tsv("a\tb\n1\t\"never closed\n", "open.tsv", false), bq::Error);
}

TEST(EvalConll, SentencesTagsAndErrors) {
  std::string text = "Torsade\tB\nde pointes\tI\nin\tO\r\n\r\n\nAspirin\tB\n,\tO\nx\tI\n";
  size_t skipped = 99;
  auto s = parse_conll(text, "fx.tsv", false, &skipped);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(skipped, 0u);
  EXPECT_EQ(s[0].tokens[1], "de pointes");  // split on tabs only
  EXPECT_EQ(s[1].line, 6u);
  EXPECT_EQ(entities_from_tags(s[0].tags), (std::vector<EntitySpan>{{0, 2}}));
  // An I after O starts an entity.
  EXPECT_EQ(entities_from_tags(s[1].tags), (std::vector<EntitySpan>{{0, 1}, {2, 3}}));
  EXPECT_EQ(entities_from_tags({"B", "B", "I", "O", "I", "I"}), (std::vector<EntitySpan>{{0, 1}, {1, 3}, {4, 6}}));

  std::string bad = "a\tO\nb\tX\n\nc\tB\n";
  try {
    parse_conll(bad, "bad.tsv", false, nullptr);
    FAIL();
  } catch (const bq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.tsv:2"), std::string::npos) << e.what();
  }
  auto ok = parse_conll(bad, "bad.tsv", true, &skipped);
  EXPECT_EQ(ok.size(), 1u);
  EXPECT_EQ(skipped, 1u);
}

TEST(EvalPyLiteral, MedQaOptionsAndEscapes) {
  auto j = parse_python_literal(
      "[{'key': 'A', 'value': \"Crohn's disease\"}, {'key': 'B', 'value': 'say \\'hi\\'\\n'},"
      " {\"key\": 'C', 'value': 'caf\\xe9 \\u00b5g'}]");
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[0]["value"], "Crohn's disease");
  EXPECT_EQ(j[1]["value"], "say 'hi'\n");
  EXPECT_EQ(j[2]["value"], "caf\xC3\xA9 \xC2\xB5g");
  auto k = parse_python_literal("{'a': 1, 'b': [True, None, -2.5, ()], 'c': 'x' 'y',}");
  EXPECT_EQ(k["a"], 1);
  EXPECT_EQ(k["b"][0], true);
  EXPECT_TRUE(k["b"][1].is_null());
  EXPECT_DOUBLE_EQ(k["b"][2].get<double>(), -2.5);
  EXPECT_EQ(k["c"], "xy");
  EXPECT_THROW(parse_python_literal("['unterminated]"), bq::Error);
  EXPECT_THROW(parse_python_literal("[1, 2] extra"), bq::Error);
  EXPECT_THROW(parse_python_literal("{'a' 1}"), bq::Error);
}

TEST(EvalFiles, NormalizeStripsBomAndCrlf) {
  EXPECT_EQ(normalize_text_file("\xEF\xBB\xBF" "a\r\nb\rc\n"), "a\nb\rc\n");
}
