// Parsers on realistic, messy model output.
#include <gtest/gtest.h>

#include "eval/parse.h"
#include "eval/prompts.h"

using namespace bq::eval;

namespace {

// A task of the preset `type` read by `extractor`.
TaskConfig task(const std::string& type, const std::string& extractor, std::vector<std::string> labels) {
  TaskConfig t;
  t.type = type;
  t.extractor = extractor;
  t.labels = std::move(labels);
  apply_task_preset(t);
  return t;
}

Example sentence(const std::string& text) {
  Example ex;
  ex.id = "s";
  size_t p = 0;
  while (p < text.size()) {
    size_t q = text.find(' ', p);
    if (q == std::string::npos) q = text.size();
    ex.tokens.push_back(text.substr(p, q - p));
    p = q + 1;
  }
  return ex;
}

using E = std::vector<EntitySpan>;

}  // namespace

TEST(EvalParseNer, SpansAlignedByCharacters) {
  // 0:Torsade 1:de 2:pointes 3:after 4:L 5:- 6:dopa 7:and 8:L-dopa 9:.
  Example ex = sentence("Torsade de pointes after L - dopa and L-dopa .");
  auto p = parse_spans(ex, "Torsade de pointes after <span>L - dopa</span> and <span> L-dopa </span>.");
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.entities, (E{{4, 7}, {8, 9}}));
  // Whitespace changes do not matter: offsets are over the text without whitespace.
  p = parse_spans(ex, "Torsade de pointes after <span>L-dopa</span> and <SPAN class=\"chem\">L - dopa</SPAN> .");
  EXPECT_EQ(p.entities, (E{{4, 7}, {8, 9}}));
  EXPECT_EQ(p.unaligned, 0);
}

TEST(EvalParseNer, StrayAndMissingTags) {
  Example ex = sentence("Variant ventricular tachycardia in desipramine toxicity .");
  // The benchmark's own five-shot style: a stray unclosed <span> after the entity.
  auto p = parse_spans(ex, "Variant ventricular tachycardia in <span> desipramine </span> <span> toxicity .");
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.entities, (E{{4, 5}}));
  // A second <span> before the first is closed restarts the entity; a closing tag alone is ignored.
  p = parse_spans(ex, "<span> Variant ventricular <span> tachycardia </span> in desipramine </span> toxicity");
  EXPECT_EQ(p.entities, (E{{2, 3}}));
  // A '<' that is not a tag is text.
  Example stats = sentence("after dobutamine ( p < 0 . 01 ) and < 5 years");
  p = parse_spans(stats, "after <span>dobutamine</span> ( p < 0 . 01 ) and <5 years");
  EXPECT_EQ(p.entities, (E{{1, 2}}));
  EXPECT_EQ(p.unaligned, 0);
  // Cut off inside a tag.
  p = parse_spans(ex, "Variant ventricular tachycardia in <span>desipramine</span> tox<sp");
  EXPECT_EQ(p.entities, (E{{4, 5}}));
}

TEST(EvalParseNer, RewrittenTextPlainListsEchoAndProse) {
  Example ex = sentence("Lithium and lithium carbonate raise lithium levels .");
  // The model dropped words: offsets carry over (specs/metrics.md), so a span after the change is not at the
  // sentence's text any more and counts as a false positive; the one before it still counts.
  auto p = parse_spans(ex, "<span>Lithium</span> and ... raise <span>lithium</span> levels");
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.entities, (E{{0, 1}}));
  EXPECT_EQ(p.unaligned, 1);
  // Hallucinated entity: a false positive, not silently dropped.
  p = parse_spans(ex, "Lithium and <span>sodium</span> ...");
  EXPECT_TRUE(p.ok);
  EXPECT_TRUE(p.entities.empty());
  EXPECT_EQ(p.unaligned, 1);
  // A plain list marks every whole-token occurrence.
  p = parse_spans(ex, "- lithium carbonate\n- Lithium");
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.entities, (E{{0, 1}, {2, 4}}));
  p = parse_spans(ex, "[\"lithium\"]");
  EXPECT_EQ(p.entities, (E{{2, 3}, {5, 6}}));
  // The sentence echoed without highlights: no entities, but a valid answer.
  p = parse_spans(ex, "Lithium and lithium carbonate raise lithium levels.");
  EXPECT_TRUE(p.ok);
  EXPECT_TRUE(p.entities.empty());
  // Prose and empty output are not answers.
  EXPECT_FALSE(parse_spans(ex, "I cannot help with that request because it is unclear.").ok);
  EXPECT_FALSE(parse_spans(ex, "   ").ok);
}

TEST(EvalParseNer, GoldAnswerTextRoundTrips) {
  Example ex = sentence("Mutations in ataxia - telangiectasia and cancer");
  ex.entities = {{2, 5}, {6, 7}};
  TaskConfig t = task("ner", "spans", {});
  EXPECT_EQ(gold_answer_text(t, ex), "Mutations in <span> ataxia - telangiectasia </span> and <span> cancer </span>");
  EXPECT_EQ(parse_spans(ex, gold_answer_text(t, ex)).entities, ex.entities);
}

TEST(EvalParseMlc, JsonPythonDictListsAndFailures) {
  TaskConfig t = task("mlc", "multilabel", {"Treatment", "Diagnosis", "Case Report"});
  using L = std::vector<std::string>;
  auto p = parse_multilabel(t, "Here is the output:\n```json\n{\"Treatment\": 1, \"Diagnosis\": 0, \"Case Report\": \"1\"}\n```");
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.labels, (L{"Treatment", "Case Report"}));
  p = parse_multilabel(t, "{'treatment': 0, 'diagnosis': 1, 'case_report': 0}");
  EXPECT_EQ(p.labels, (L{"Diagnosis"}));
  p = parse_multilabel(t, "['Case Report', 'Treatment']");
  EXPECT_EQ(p.labels, (L{"Treatment", "Case Report"}));
  p = parse_multilabel(t, "Treatment: 1\nDiagnosis: 0\nCase Report: 0");
  EXPECT_EQ(p.labels, (L{"Treatment"}));
  p = parse_multilabel(t, "1. Diagnosis\n2. Treatment");
  EXPECT_EQ(p.labels, (L{"Treatment", "Diagnosis"}));
  p = parse_multilabel(t, "{\"Treatment\": 0, \"Diagnosis\": 0, \"Case Report\": 0}");
  EXPECT_TRUE(p.ok);
  EXPECT_TRUE(p.labels.empty());
  EXPECT_FALSE(parse_multilabel(t, "The article discusses vaccines in general.").ok);
  EXPECT_FALSE(parse_multilabel(t, "{\"Vaccines\": 1}").ok);
  EXPECT_FALSE(parse_multilabel(t, "").ok);
}

TEST(EvalParseLabel, FirstValidLabelAsWholeWord) {
  TaskConfig ddi = task("re", "label", {"DDI-effect", "DDI-mechanism", "DDI-advise", "DDI-int", "DDI-false"});
  ddi.label_aliases = {{"effect", "DDI-effect"}, {"int", "DDI-int"}};
  auto first = [&](const TaskConfig& t, const char* s) {
    auto p = parse_label(t, s);
    return p.ok ? p.labels[0] : std::string("<unparsed>");
  };
  EXPECT_EQ(first(ddi, "ddi-MECHANISM"), "DDI-mechanism");
  EXPECT_EQ(first(ddi, "The relation is DDI-advise, not DDI-effect."), "DDI-advise");
  EXPECT_EQ(first(ddi, "Effect."), "DDI-effect");
  EXPECT_EQ(first(ddi, "This is an interaction"), "<unparsed>");  // "int" only as a whole word
  TaskConfig cpr = task("re", "label", {"CPR:3", "CPR:4", "false"});
  EXPECT_EQ(first(cpr, "**CPR:4**"), "CPR:4");
  EXPECT_EQ(first(cpr, "false"), "false");
  EXPECT_EQ(first(cpr, "CPR:10"), "<unparsed>");
  TaskConfig ynm = task("qa", "label", {"yes", "no", "maybe"});
  EXPECT_EQ(first(ynm, "Yes, the abstract supports it."), "yes");
  EXPECT_EQ(first(ynm, "Based on the results, maybe."), "maybe");
  EXPECT_EQ(first(ynm, "Nothing noteworthy yesterday"), "<unparsed>");
  EXPECT_EQ(first(ynm, ""), "<unparsed>");
}

TEST(EvalParseQa, OptionLetters) {
  TaskConfig t = task("qa", "option_letter", {"A", "B", "C", "D", "E"});
  Example ex;
  ex.options = {{"A", "Ampicillin"}, {"B", "Ceftriaxone"}, {"C", "Ciprofloxacin"}, {"D", "Doxycycline"}, {"E", "Nitrofurantoin"}};
  auto letter = [&](const char* s) {
    auto p = parse_option_letter(t, ex, s);
    return p.ok ? p.labels[0] : std::string("<unparsed>");
  };
  EXPECT_EQ(letter("E"), "E");
  EXPECT_EQ(letter("E. Nitrofurantoin"), "E");
  EXPECT_EQ(letter("(C)"), "C");
  EXPECT_EQ(letter("**D**"), "D");
  EXPECT_EQ(letter("The answer is E. Nitrofurantoin is safe in pregnancy."), "E");
  EXPECT_EQ(letter("A pregnant woman with cystitis... the correct option is (B)"), "B");
  EXPECT_EQ(letter("b"), "B");
  EXPECT_EQ(letter("I would give nitrofurantoin."), "E");  // exactly one option's text
  EXPECT_EQ(letter("Either ampicillin or ceftriaxone."), "<unparsed>");
  EXPECT_EQ(letter("A 23-year-old woman needs antibiotics"), "<unparsed>");
  EXPECT_EQ(letter(""), "<unparsed>");
}

TEST(EvalParse, ReasoningAndFinalAnswerLine) {
  TaskConfig t = task("qa", "label", {"yes", "no", "maybe"});
  Example ex;
  std::string cot = "Reasoning: the trial found no effect, so maybe not yes.\n\n**Final Answer:** no";
  auto p = parse_answer(t, ex, cot, true);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.labels[0], "no");
  EXPECT_FALSE(parse_answer(t, ex, "It is probably yes.", true).ok);  // CoT without the answer line
  EXPECT_TRUE(parse_answer(t, ex, "It is probably yes.", false).ok);
  // Reasoning blocks are dropped before looking for the label.
  p = parse_answer(t, ex, "<think>no, wait: maybe</think>\nyes", false);
  EXPECT_EQ(p.labels[0], "yes");
  p = parse_answer(t, ex, "Answer: maybe\nOn reflection, not quite.\nAnswer: no", true);
  EXPECT_EQ(p.labels[0], "no");  // the last answer line counts
}

TEST(EvalParse, MajorityVoteTieBreak) {
  auto a = [](const char* l, bool ok = true) {
    ParsedAnswer p;
    p.ok = ok;
    if (ok) p.labels = {l};
    return p;
  };
  EXPECT_EQ(majority_vote({a("no"), a("yes"), a("yes"), a("", false), a("no"), a("maybe")}).labels[0], "no");
  EXPECT_EQ(majority_vote({a("maybe"), a("yes"), a("yes")}).labels[0], "yes");
  EXPECT_EQ(majority_vote({a("", false), a("maybe"), a("no")}).labels[0], "maybe");
  EXPECT_FALSE(majority_vote({a("", false), a("", false)}).ok);
}
