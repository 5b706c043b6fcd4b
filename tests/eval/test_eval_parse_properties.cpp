// Answer parsers and scoring on random and adversarial answers: no exception escapes, and every credited entity
// is exactly the text of a span (or listed name) of the answer at token boundaries of the sentence.
#include <gtest/gtest.h>

#include <random>

#include "eval/parse.h"

using namespace bq::eval;

namespace {

using E = std::vector<EntitySpan>;

Example make_sentence(const std::vector<std::string>& tokens) {
  Example ex;
  ex.id = "s";
  ex.tokens = tokens;
  return ex;
}

std::string squeeze(std::string_view s) {  // without whitespace and without tags
  std::string out;
  bool in_tag = false;
  for (char c : s) {
    if (c == '<') in_tag = true;
    if (!in_tag && c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') out += c;
    if (c == '>') in_tag = false;
  }
  return out;
}

std::string entity_text(const Example& ex, EntitySpan e) {
  std::string t;
  for (int i = e.start; i < e.end; i++) t += squeeze(ex.tokens[size_t(i)]);
  return t;
}

// Token texts that collide by prefix and suffix ("A", "ATP", "TP"), so that partial matches are everywhere.
std::vector<std::string> random_tokens(std::mt19937_64& rng, size_t n) {
  static const char* pool[] = {"A", "T", "ATP", "TP", "am", "meloxicam", "xicam", "-", ".", ",", "(", ")", "1",
                               "L", "dopa", "de", "cell", "s", "&", "p", "0.05", "\xC3\xA9", "\xE4\xB8\x96"};
  std::vector<std::string> out;
  for (size_t i = 0; i < n; i++) out.push_back(pool[rng() % std::size(pool)]);
  return out;
}

// The sentence written back with <span>s around random token ranges; the ranges returned.
std::string tag_sentence(std::mt19937_64& rng, const Example& ex, E& spans) {
  std::string s;
  for (int t = 0; t < int(ex.tokens.size());) {
    if (rng() % 4 == 0) {
      int end = std::min<int>(int(ex.tokens.size()), t + 1 + int(rng() % 3));
      s += "<span> ";
      for (int k = t; k < end; k++) s += ex.tokens[size_t(k)] + " ";
      s += "</span> ";
      spans.push_back({t, end});
      t = end;
    } else {
      s += ex.tokens[size_t(t)] + " ";
      t++;
    }
  }
  return s;
}

// Damage of the kinds real and hostile outputs show.
std::string damage(std::mt19937_64& rng, std::string s) {
  switch (rng() % 10) {
    case 0: return s + " <span>" + s + "</span>";                                   // spans past the sentence
    case 1: return "<span></span><span> </span>" + s;                               // empty spans
    case 2: return "<span><span>" + s;                                              // nested, unclosed
    case 3: return "Sure! Here is the HTML you asked for:\n" + s + "\nHope it helps.";  // prose around it
    case 4: return s + s + s;                                                        // repeated text
    case 5: return rng() % 20 ? s : std::string(200000, 'x') + "<span>" + s;       // huge output (rare: slow)
    case 6: s.insert(rng() % (s.size() + 1), "\xFF\xFE\xC3"); return s;              // invalid UTF-8
    case 7: if (!s.empty()) s.erase(rng() % s.size(), 1 + rng() % 8); return s;     // dropped characters
    case 8: return "</span>" + s + "<span";                                          // stray close, torn tag
    default: {
      std::string bytes(rng() % 64, '\0');
      for (char& c : bytes) c = char(rng());
      return bytes;
    }
  }
}

void expect_entities_are_answer_text(const Example& ex, const ParsedAnswer& p, const std::string& answer) {
  std::string answer_text = squeeze(answer);
  for (auto& e : p.entities) {
    ASSERT_GE(e.start, 0);
    ASSERT_LT(e.start, e.end);
    ASSERT_LE(e.end, int(ex.tokens.size()));
    EXPECT_NE(answer_text.find(entity_text(ex, e)), std::string::npos)
        << "credited [" << e.start << ", " << e.end << ") is not text of the answer: " << answer;
  }
}

// A task of the preset `type` read by `extractor`.
TaskConfig task_of(const std::string& type, const std::string& extractor, std::vector<std::string> labels) {
  TaskConfig t;
  t.type = type;
  t.extractor = extractor;
  t.labels = std::move(labels);
  apply_task_preset(t);
  return t;
}

}  // namespace

TEST(EvalParseProperties, UndamagedHtmlGivesExactlyTheTaggedRanges) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 2000; trial++) {
    Example ex = make_sentence(random_tokens(rng, 1 + rng() % 30));
    E spans;
    std::string answer = tag_sentence(rng, ex, spans);
    ParsedAnswer p = parse_spans(ex, answer);
    ASSERT_TRUE(p.ok) << answer;
    E want = spans;
    std::sort(want.begin(), want.end());
    // Only whitespace-only tokens can make a tagged range empty; the pool has none.
    EXPECT_EQ(p.entities, want) << answer;
    EXPECT_EQ(p.unaligned, 0) << answer;
  }
}

TEST(EvalParseProperties, DamagedAnswersNeverThrowAndCreditOnlyAnswerText) {
  std::mt19937_64 rng(11);
  TaskConfig ner = task_of("ner", "spans", {});
  for (int trial = 0; trial < 3000; trial++) {
    Example ex = make_sentence(random_tokens(rng, 1 + rng() % 20));
    E spans;
    std::string answer = damage(rng, tag_sentence(rng, ex, spans));
    if (trial % 500 == 0) answer = std::string(100000, '[') + answer;  // deep nesting (a list literal reader)
    for (bool cot : {false, true}) {
      ParsedAnswer p;
      ASSERT_NO_THROW(p = parse_answer(ner, ex, answer, cot)) << answer;
      expect_entities_are_answer_text(ex, p, answer);
      Scored s = score_answer(ner, ex, p);
      EXPECT_EQ(s.tp + s.fn, int(ex.entities.size()));
      EXPECT_GE(s.fp, 0);
    }
  }
}

TEST(EvalParseProperties, ShortSentencesAndSpansPastTheirEnd) {
  // The crash of issue 13: a span starting past the end of a two-character sentence.
  Example ex = make_sentence({"1", "."});
  ParsedAnswer p;
  ASSERT_NO_THROW(p = parse_spans(ex, "<span>S</span> and <span>propotamine</span> ."));
  EXPECT_TRUE(p.ok);
  EXPECT_TRUE(p.entities.empty());
  EXPECT_EQ(p.unaligned, 2);
  Example empty = make_sentence({});
  ASSERT_NO_THROW(p = parse_spans(empty, "<span>x</span>"));
  EXPECT_TRUE(p.entities.empty());
}

TEST(EvalParseProperties, PartialTokensAreNotEntities) {
  // <span>T</span> is not the entity ATP, nor <span>am</span> meloxicam: a span must be a whole token range.
  Example ex = make_sentence({"ATP", "and", "meloxicam", "T", "cells"});
  auto p = parse_spans(ex, "<span>T</span> and <span>am</span>");
  EXPECT_TRUE(p.entities.empty());
  EXPECT_EQ(p.unaligned, 2);
  // At the right offsets the same letters are the token T.
  p = parse_spans(ex, "ATP and meloxicam <span>T</span> cells");
  EXPECT_EQ(p.entities, (E{{3, 4}}));
  // A span over the right text at shifted offsets (a token dropped before it) is a false positive, not moved.
  p = parse_spans(ex, "ATP meloxicam <span>T</span> cells");
  EXPECT_TRUE(p.entities.empty());
  EXPECT_EQ(p.unaligned, 1);
  // Text altered inside the span: not the sentence's text there.
  p = parse_spans(ex, "ATP and <span>meloxicum</span> T cells");
  EXPECT_TRUE(p.entities.empty());
}

TEST(EvalParseProperties, ClassificationParsersNeverThrow) {
  std::mt19937_64 rng(13);
  TaskConfig re = task_of("re", "label", {"CPR:3", "CPR:4", "false"});
  re.negative_label = "false";
  TaskConfig mlc = task_of("mlc", "multilabel", {"Treatment", "Diagnosis", "Case Report"});
  TaskConfig qa = task_of("qa", "option_letter", {"A", "B", "C", "D", "E"});
  Example ex = make_sentence({"x"});
  ex.gold = {"A"};
  ex.options = {{"A", "aspirin"}, {"B", "bed rest"}, {"C", ""}};
  const std::string seeds[] = {"CPR:4", "{\"Treatment\": 1, \"Diagnosis\": 0}", "[\"Case Report\"]", "Answer: (C)",
                               "{\"a\": [[[[[[", "[[[[[[[[[[", "{'Treatment': 1,", "Treatment: yes\nDiagnosis: no"};
  for (int trial = 0; trial < 3000; trial++) {
    std::string answer = damage(rng, seeds[rng() % std::size(seeds)]);
    if (trial % 97 == 0) answer = std::string(100000, '[') + answer;  // deep nesting
    for (bool cot : {false, true})
      for (const TaskConfig* t : {&re, &mlc, &qa}) {
        ParsedAnswer p;
        ASSERT_NO_THROW(p = parse_answer(*t, ex, answer, cot)) << answer.substr(0, 200);
        for (auto& l : p.labels) EXPECT_NE(std::find(t->labels.begin(), t->labels.end(), l), t->labels.end());
        if (t->type != "mlc") {
          EXPECT_LE(p.labels.size(), 1u);
        }
      }
  }
}

TEST(EvalParseProperties, MetricsOfRandomAnswersLieInTheUnitInterval) {
  std::mt19937_64 rng(17);
  for (std::string type : {"ner", "re", "mlc", "qa"}) {
    MetricSpec spec{task_preset(type).metrics, 5, type == "re" ? 4 : -1};
    for (int trial = 0; trial < 200; trial++) {
      std::vector<Scored> scored(1 + rng() % 40);
      for (auto& s : scored) {
        s.parsed = rng() % 4 != 0;
        s.tp = int(rng() % 3), s.fp = int(rng() % 3), s.fn = int(rng() % 3);
        for (int l = 0; l < 5; l++) {
          if (rng() % 3 == 0) s.gold.push_back(l);
          if (s.parsed && rng() % 3 == 0) s.pred.push_back(l);
        }
        if (type == "re" || type == "qa") {  // one label each
          s.gold = {int(rng() % 5)};
          if (s.pred.size() > 1) s.pred.resize(1);
        }
      }
      for (auto& [name, iv] : bootstrap_metrics(spec, scored, rng(), 50)) {
        EXPECT_GE(iv.value, 0.0) << name;
        EXPECT_LE(iv.value, 1.0) << name;
        EXPECT_LE(iv.lo, iv.hi) << name;
        EXPECT_GE(iv.lo, 0.0) << name;
        EXPECT_LE(iv.hi, 1.0) << name;
      }
    }
  }
}
