#include "eval/prompts.h"

#include <nlohmann/json.hpp>

#include <random>

#include "core/error.h"
#include "core/files.h"
#include "eval/parse.h"
#include "eval/readers.h"

namespace bq::eval {

std::vector<size_t> seeded_sample(size_t n, size_t k, uint64_t seed) {
  std::vector<size_t> p(n);
  for (size_t i = 0; i < n; i++) p[i] = i;
  std::mt19937_64 rng(seed);
  k = std::min(k, n);
  for (size_t i = 0; i < k; i++) std::swap(p[i], p[i + rng() % (n - i)]);
  p.resize(k);
  return p;
}

static bool ident_char(char c) { return std::isalnum((unsigned char)c) || c == '_'; }

std::string render_input(const std::string& tpl, const Example& ex, const std::string& where) {
  std::string out;
  for (size_t i = 0; i < tpl.size(); i++) {
    size_t close = tpl[i] == '{' ? tpl.find('}', i) : std::string::npos;
    std::string inner = close == std::string::npos ? "" : tpl.substr(i + 1, close - i - 1);
    size_t bar = inner.find('|');
    std::string name = inner.substr(0, bar), filter = bar == std::string::npos ? "" : inner.substr(bar + 1);
    bool placeholder = !name.empty() && std::all_of(name.begin(), name.end(), ident_char) &&
                       std::all_of(filter.begin(), filter.end(), ident_char);
    if (!placeholder) {
      out += tpl[i];
      continue;
    }
    auto it = ex.fields.find(name);
    if (it == ex.fields.end()) fail("{}: template field '{{{}}}' does not exist in example '{}'", where, name, ex.id);
    if (filter.empty()) {
      out += it->second;
    } else if (filter == "join") {
      auto j = parse_python_literal(it->second, where + ": field " + name);
      std::string joined;
      for (auto& x : j) {
        if (!joined.empty()) joined += ' ';
        joined += x.is_string() ? x.get<std::string>() : x.dump();
      }
      out += joined;
    } else if (filter == "compact" && name == "options") {
      for (size_t k = 0; k < ex.options.size(); k++) {
        if (k) out += "\n ";
        out += ex.options[k].first;
        out += ':';
        out += ex.options[k].second;
      }
    } else {
      fail("{}: unknown template filter '|{}' on '{}'", where, filter, name);
    }
    i = close;
  }
  return out;
}

std::string gold_answer_text(const TaskConfig& task, const Example& ex) {
  return answer_extractor(task.extractor).write_gold(task, ex);
}

std::string write_spans_answer(const TaskConfig&, const Example& ex) {
  std::string s;
  size_t e = 0;
  for (int t = 0; t < int(ex.tokens.size()); t++) {
    if (!s.empty()) s += ' ';
    if (e < ex.entities.size() && ex.entities[e].start == t) s += "<span> ";
    s += ex.tokens[t];
    if (e < ex.entities.size() && ex.entities[e].end == t + 1) {
      s += " </span>";
      e++;
    }
  }
  return s;
}

std::string write_multilabel_answer(const TaskConfig& task, const Example& ex) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (auto& l : task.labels) j[l] = std::find(ex.gold.begin(), ex.gold.end(), l) != ex.gold.end() ? 1 : 0;
  return j.dump();
}

std::string write_label_answer(const TaskConfig&, const Example& ex) { return ex.gold.empty() ? "" : ex.gold[0]; }

static std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

std::string build_own_prompt(const TaskConfig& task, const Example& ex, const std::vector<Example>& shots, bool cot) {
  std::string where = task.source.string();
  std::string examples;
  for (auto& s : shots) {
    std::string one = replace_all(task.example_template, "{input}", render_input(task.input_template, s, where));
    examples += replace_all(one, "{answer}", gold_answer_text(task, s));
  }
  // {input} last, so that braces in the example's own text are never taken for placeholders.
  std::string prompt = replace_all(cot ? task.cot_prompt : task.instruction_prompt, "{examples}", examples);
  return replace_all(prompt, "{input}", render_input(task.input_template, ex, where));
}

static const char* shot_file_name(int shots) {
  switch (shots) {
    case 0: return "zeroshot";
    case 1: return "oneshot";
    case 5: return "fiveshot";
  }
  return nullptr;
}

fs::path benchmark_prompt_path(const TaskConfig& task, const fs::path& data_dir, int shots) {
  const char* name = shot_file_name(shots);
  if (!name) fail("--prompts benchmark has prompt files for 0, 1 and 5 shots only, not {}", shots);
  return data_dir / task.data_folder / (std::string("prompt_") + name + ".txt");
}

std::string load_benchmark_prompt(const TaskConfig& task, const fs::path& data_dir, int shots) {
  fs::path p = benchmark_prompt_path(task, data_dir, shots);
  std::string text = normalize_text_file(read_file(p, limits::kPromptFileBytes));
  std::string lowered = text;
  for (char& c : lowered) c = char(std::tolower((unsigned char)c));
  if (lowered.find("{input}") == std::string::npos) fail("{}: no {{Input}} placeholder", p.string());
  return text;
}

std::string build_benchmark_prompt(const TaskConfig& task, const std::string& prompt_file_text, int shots,
                                   const Example& ex) {
  std::string tpl = task.input_template;
  const char* file = shot_file_name(shots);
  for (const char* key : {file ? file : "default", "default"})
    if (auto it = task.benchmark_input.find(key); it != task.benchmark_input.end()) {
      tpl = it->second;
      break;
    }
  std::string input = render_input(tpl, ex, task.source.string());
  std::string out = prompt_file_text;
  for (const char* ph : {"{Input}", "{INPUT}", "{input}"}) out = replace_all(out, ph, input);
  return out;
}

}  // namespace bq::eval
