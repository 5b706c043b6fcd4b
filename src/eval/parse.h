// Reading answers out of model output: tolerant of prose, markdown and reasoning around the answer, and honest
// when nothing usable is there (ok = false, counted in the unparsed rate).
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eval/metrics.h"
#include "eval/task.h"

namespace bq::eval {

struct ParsedAnswer {
  bool ok = false;
  std::vector<std::string> labels;   // mlc: labels predicted positive (task order); re/qa: exactly one label
  std::vector<EntitySpan> entities;  // ner: sorted, unique token ranges
  int unaligned = 0;                 // ner: predicted entities not found in the sentence (false positives)

  std::string key() const;  // canonical form: equal keys = same answer (used for voting)
  nlohmann::json to_json() const;
};

// The part of the output that holds the answer: <think>…</think> blocks removed, then what follows the last line
// starting with "Answer:" / "Final answer:" (markdown emphasis allowed). With require_marker (CoT) and no such
// line: nullopt. Without it, the whole remaining text.
std::optional<std::string> answer_region(std::string_view output, bool require_marker);

// An answer extractor, named by `parser:` in a task file: reads a model's answer, and writes a gold answer the way
// it reads one (for few-shot examples and `data prompts`).
struct AnswerExtractor {
  std::string_view name;
  GoldKind gold;                        // the gold it is scored against
  bool one_label;                       // answers at most one label
  std::vector<std::string_view> needs;  // task file keys it reads that must be there
  ParsedAnswer (*parse)(const TaskConfig& task, const Example& ex, std::string_view answer);
  std::string (*write_gold)(const TaskConfig& task, const Example& ex);
};
const std::vector<AnswerExtractor>& answer_extractors();
// The extractor named `name`; Error naming the known ones when there is none.
const AnswerExtractor& answer_extractor(std::string_view name);

// The answer region of `output` read by task.extractor. cot: only the final answer line counts (see answer_region).
ParsedAnswer parse_answer(const TaskConfig& task, const Example& ex, std::string_view output, bool cot);

ParsedAnswer parse_spans(const Example& ex, std::string_view text);           // the sentence as HTML with <span>s
ParsedAnswer parse_multilabel(const TaskConfig& task, std::string_view text);  // a label -> 0/1 object, or a list
ParsedAnswer parse_label(const TaskConfig& task, std::string_view text);       // one label of the set
ParsedAnswer parse_option_letter(const TaskConfig& task, const Example& ex, std::string_view text);  // A-E

// Self-consistency: the answer parsed most often among the ok ones; ties go to the tied answer that appears first
// in sample order. Not ok when no sample parsed.
ParsedAnswer majority_vote(const std::vector<ParsedAnswer>& answers);

// Reduces a parsed answer against the gold to what the metrics need (unparsed = wrong: no labels, no entities).
Scored score_answer(const TaskConfig& task, const Example& ex, const ParsedAnswer& answer);
// The per-sample "correct": exact label (set) match, or for span gold no false positive and no false negative.
bool is_correct(const TaskConfig& task, const Scored& s);

}  // namespace bq::eval
