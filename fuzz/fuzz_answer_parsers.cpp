// libFuzzer target: arbitrary model output against a sentence, for every answer parser. The first byte picks the
// parser and CoT; then the sentence's tokens (space-separated) up to a NUL, then the output. No exception may
// escape, every credited entity must be a token range of the sentence, and every metric lies in [0, 1].
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "eval/parse.h"

using namespace bq::eval;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const TaskConfig tasks[] = {
      [] {
        TaskConfig t;
        t.type = "ner";
        apply_task_preset(t);
        return t;
      }(),
      [] {
        TaskConfig t;
        t.type = "re";
        t.extractor = "label";
        apply_task_preset(t);
        t.labels = {"CPR:3", "CPR:4", "false"};
        t.label_aliases = {{"inhibitor", "CPR:4"}};
        return t;
      }(),
      [] {
        TaskConfig t;
        t.type = "mlc";
        t.extractor = "multilabel";
        apply_task_preset(t);
        t.labels = {"Treatment", "Case Report", "cellular energetics"};
        return t;
      }(),
      [] {
        TaskConfig t;
        t.type = "qa";
        t.extractor = "option_letter";
        apply_task_preset(t);
        t.labels = {"A", "B", "C", "D", "E"};
        return t;
      }(),
  };
  const TaskConfig& task = tasks[data[0] % 4];
  bool cot = data[0] & 4;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  size_t nul = rest.find('\0');
  std::string_view sentence = rest.substr(0, nul), output = nul == rest.npos ? "" : rest.substr(nul + 1);
  Example ex;
  ex.id = "fuzz";
  for (size_t p = 0; p < sentence.size();) {
    size_t q = sentence.find(' ', p);
    if (q == sentence.npos) q = sentence.size();
    if (q > p) ex.tokens.emplace_back(sentence.substr(p, q - p));
    p = q + 1;
  }
  if (!ex.tokens.empty()) ex.entities = {{0, 1}};
  ex.gold = {task.labels.empty() ? "" : task.labels[0]};
  ex.options = {{"A", "aspirin"}, {"B", "x"}};
  ParsedAnswer p = parse_answer(task, ex, output, cot);
  for (auto& e : p.entities)
    if (e.start < 0 || e.start >= e.end || e.end > int(ex.tokens.size())) std::abort();
  Scored s = score_answer(task, ex, p);
  if (s.tp + s.fn != int(ex.entities.size()) && task.type == "ner") std::abort();
  (void)is_correct(task, s);
  MetricSpec spec{task.metrics, int(task.labels.size()), task.type == "re" ? 2 : -1};
  for (auto& [name, value] : compute_metrics(spec, {s, s, Scored{}}))
    if (!(value >= 0.0 && value <= 1.0)) std::abort();
  (void)majority_vote({p, p});
  return 0;
}
