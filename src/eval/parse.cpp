#include "eval/parse.h"

#include <algorithm>
#include <map>
#include <regex>
#include <set>

#include "core/error.h"
#include "eval/named_table.h"
#include "eval/prompts.h"
#include "eval/readers.h"

namespace bq::eval {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_word(char c) { return std::isalnum((unsigned char)c) || c == '_'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower((unsigned char)c));
  return out;
}

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && is_space(s[a])) a++;
  while (b > a && is_space(s[b - 1])) b--;
  return std::string(s.substr(a, b - a));
}

// Lower case, '_' and '-' as spaces, runs of spaces collapsed: "Case_Report" == "case report".
std::string norm_label(std::string_view s) {
  std::string out;
  for (char c : s) {
    char d = (c == '_' || c == '-') ? ' ' : char(std::tolower((unsigned char)c));
    if (is_space(d)) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += d;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Strips list decorations from one piece of text: bullets, "1.", quotes, markdown emphasis, trailing punctuation.
std::string strip_item(std::string_view s) {
  std::string t = trim(s);
  size_t i = 0;
  while (i < t.size() && (t[i] == '-' || t[i] == '*' || t[i] == '#' || t[i] == '>' || is_space(t[i]))) i++;
  size_t j = i;
  while (j < t.size() && std::isdigit((unsigned char)t[j])) j++;
  if (j > i && j < t.size() && (t[j] == '.' || t[j] == ')')) i = j + 1;
  t = trim(std::string_view(t).substr(i));
  if (t.starts_with("\xE2\x80\xA2")) t = trim(std::string_view(t).substr(3));  // bullet •
  while (!t.empty() && (t.back() == '.' || t.back() == ',' || t.back() == ';' || t.back() == '*')) t.pop_back();
  while (!t.empty() && (t.front() == '*')) t.erase(0, 1);
  t = trim(t);
  if (t.size() >= 2 && (t.front() == '"' || t.front() == '\'') && t.back() == t.front()) t = t.substr(1, t.size() - 2);
  return trim(t);
}

std::vector<std::string> split_any(std::string_view s, std::string_view seps) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p <= s.size()) {
    size_t q = s.find_first_of(seps, p);
    if (q == std::string_view::npos) q = s.size();
    out.emplace_back(s.substr(p, q - p));
    p = q + 1;
  }
  return out;
}

// Parses text as a JSON value, else as a Python literal.
std::optional<nlohmann::json> parse_literal(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_discarded()) return j;
  try {
    return parse_python_literal(text);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// The first balanced {...} or [...] (quotes respected), or npos. Only the first few opening brackets are tried,
// so that a long run of unclosed ones costs linear time, not quadratic.
std::pair<size_t, size_t> find_bracketed(std::string_view s, char open, char close) {
  constexpr int max_starts = 16;
  int starts = 0;
  for (size_t a = s.find(open); a != std::string_view::npos && starts++ < max_starts; a = s.find(open, a + 1)) {
    int depth = 0;
    char quote = 0;
    for (size_t i = a; i < s.size(); i++) {
      char c = s[i];
      if (quote) {
        if (c == '\\') i++;
        else if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        // An apostrophe inside a word (don't) is not a quote.
        if (!(c == '\'' && i > 0 && is_word(s[i - 1]) && i + 1 < s.size() && is_word(s[i + 1]))) quote = c;
      } else if (c == open) {
        depth++;
      } else if (c == close && --depth == 0) {
        return {a, i + 1};
      }
    }
  }
  return {std::string_view::npos, 0};
}

}  // namespace

std::string ParsedAnswer::key() const {
  std::string k;
  for (auto& l : labels) k += l + '\x1f';
  for (auto& e : entities) k += std::to_string(e.start) + ':' + std::to_string(e.end) + ',';
  k += '#' + std::to_string(unaligned);
  return k;
}

nlohmann::json ParsedAnswer::to_json() const {
  nlohmann::json j = {{"ok", ok}};
  if (!labels.empty()) j["labels"] = labels;
  if (!entities.empty() || unaligned) {
    auto arr = nlohmann::json::array();
    for (auto& e : entities) arr.push_back({e.start, e.end});
    j["entities"] = arr;
    j["unaligned"] = unaligned;
  }
  return j;
}

std::optional<std::string> answer_region(std::string_view output, bool require_marker) {
  std::string text(output);
  // Reasoning blocks of "thinking" models; an unmatched </think> means everything before it was reasoning.
  for (size_t a; (a = lower(text).find("<think>")) != std::string::npos;) {
    size_t b = lower(text).find("</think>", a);
    text.erase(a, b == std::string::npos ? std::string::npos : b + 8 - a);
  }
  if (size_t b = lower(text).rfind("</think>"); b != std::string::npos) text.erase(0, b + 8);

  // The last line that starts with "Answer:" or "Final answer:" (optionally in markdown emphasis or a heading).
  static const std::regex marker(R"((^|\n)[ \t#>*_]*(?:final[ \t]+)?answer[ \t]*[*_]*[ \t]*[:：][ \t]*[*_]*)",
                                 std::regex::icase);
  std::optional<std::string> found;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), marker); it != std::sregex_iterator(); ++it)
    found = text.substr(size_t(it->position() + it->length()));
  if (found) return trim(*found);
  if (require_marker) return std::nullopt;
  return trim(text);
}

// ---- NER -----------------------------------------------------------------------------------------------------

namespace {

struct SpanText {
  size_t start, end;  // offsets into the output with whitespace and tags removed
};

// Strips tags and whitespace from HTML output, recording <span>…</span> ranges. A <span> opened again before it
// is closed restarts the entity (the benchmark's own examples have stray unclosed <span>s); a close without an
// open is ignored; other tags are dropped. Returns whether any span tag was seen.
bool scan_html(std::string_view s, std::string& nows, std::vector<SpanText>& spans) {
  static const std::pair<std::string_view, char> entities[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''}, {"&apos;", '\''}};
  bool any_tag = false;
  size_t open = SIZE_MAX;  // where the current <span> started
  for (size_t i = 0; i < s.size();) {
    char c = s[i];
    // A tag is "<name ...>" or "</name>"; any other '<' is text ("p < 0.05").
    size_t name_at = i + 1 + (i + 1 < s.size() && s[i + 1] == '/');
    size_t close = c == '<' ? s.find_first_of("<>", i + 1) : std::string_view::npos;
    if (c == '<' && name_at < s.size() && std::isalpha((unsigned char)s[name_at]) && close != std::string_view::npos &&
        s[close] == '>') {
      std::string tag = lower(s.substr(i + 1, close - i - 1));
      bool end_tag = !tag.empty() && tag[0] == '/';
      std::string name = trim(end_tag ? std::string_view(tag).substr(1) : std::string_view(tag));
      name = name.substr(0, name.find_first_of(" \t\n/"));
      if (name == "span") {
        any_tag = true;
        if (!end_tag) {
          open = nows.size();
        } else if (open != SIZE_MAX) {
          if (nows.size() > open) spans.push_back({open, nows.size()});
          open = SIZE_MAX;
        }
      }
      i = close + 1;
      continue;
    }
    if (c == '&') {
      bool matched = false;
      for (auto& [ent, ch] : entities) {
        if (s.substr(i, ent.size()) == ent) {
          nows += ch;
          i += ent.size();
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    if (!is_space(c)) nows += c;
    i++;
  }
  return any_tag;
}

struct SentenceIndex {
  std::string nows;                // the sentence without whitespace
  std::vector<int> token_of_char;  // token index of each char of nows
  std::vector<size_t> token_start, token_end;
};

SentenceIndex index_sentence(const Example& ex) {
  SentenceIndex si;
  for (size_t t = 0; t < ex.tokens.size(); t++) {
    si.token_start.push_back(si.nows.size());
    for (char c : ex.tokens[t])
      if (!is_space(c)) {
        si.nows += c;
        si.token_of_char.push_back(int(t));
      }
    si.token_end.push_back(si.nows.size());
  }
  return si;
}

// The tokens [i, j) whose text (without whitespace) is exactly chars [a, b) of the sentence, if both ends of the
// range fall on token boundaries.
std::optional<EntitySpan> entity_at(const SentenceIndex& si, size_t a, size_t b) {
  if (a >= b || b > si.nows.size()) return std::nullopt;
  int first = si.token_of_char[a], last = si.token_of_char[b - 1];
  if (si.token_start[size_t(first)] != a || si.token_end[size_t(last)] != b) return std::nullopt;
  return EntitySpan{first, last + 1};
}

void finish_entities(ParsedAnswer& p) {
  std::sort(p.entities.begin(), p.entities.end());
  p.entities.erase(std::unique(p.entities.begin(), p.entities.end()), p.entities.end());
  p.ok = true;
}

// A plain list of entity strings: every occurrence in the sentence that starts and ends on token boundaries.
void add_listed_entity(const SentenceIndex& si, const std::string& name, ParsedAnswer& p) {
  std::string t;
  for (char c : name)
    if (!is_space(c)) t += c;
  if (t.empty()) return;
  bool found = false;
  for (size_t a = si.nows.find(t); a != std::string::npos; a = si.nows.find(t, a + 1)) {
    if (auto e = entity_at(si, a, a + t.size())) {
      p.entities.push_back(*e);
      found = true;
    }
  }
  if (!found) p.unaligned++;
}

}  // namespace

ParsedAnswer parse_spans(const Example& ex, std::string_view text) {
  ParsedAnswer p;
  SentenceIndex si = index_sentence(ex);
  std::string out;
  std::vector<SpanText> spans;
  bool tagged = scan_html(text, out, spans);
  if (tagged) {
    // The benchmark maps spans back to the gold tokens by character offsets over the text without whitespace: they
    // carry over from the answer to the sentence. A span is an entity only where its text is the sentence's text at
    // those offsets and both ends fall on token boundaries; anything else (a shifted, altered or partial span) is a
    // false positive.
    for (auto& s : spans) {
      size_t n = s.end - s.start;
      if (auto e = entity_at(si, s.start, s.end);
          e && si.nows.compare(s.start, n, out, s.start, n) == 0) {
        p.entities.push_back(*e);
      } else {
        p.unaligned++;
      }
    }
    finish_entities(p);
    return p;
  }
  std::string body = trim(text);
  if (body.empty()) return p;
  // The sentence echoed without highlights: an answer with no entities.
  if (!si.nows.empty() && out.size() * 2 >= si.nows.size()) {
    size_t common = 0;
    while (common < out.size() && common < si.nows.size() && out[common] == si.nows[common]) common++;
    if (common * 2 >= si.nows.size()) {
      finish_entities(p);
      return p;
    }
  }
  std::string lowered = lower(strip_item(body));
  if (lowered == "none" || lowered == "no entities" || lowered == "n/a") {
    finish_entities(p);
    return p;
  }
  // A list literal of strings.
  if (body.front() == '[') {
    if (auto j = parse_literal(body); j && j->is_array()) {
      for (auto& x : *j)
        if (x.is_string()) add_listed_entity(si, x.get<std::string>(), p);
      finish_entities(p);
      return p;
    }
  }
  // Bullet or numbered lines, or one short line of comma-separated names; prose is not an answer.
  auto lines = split_any(body, "\n");
  std::vector<std::string> items;
  bool all_items = true;
  for (auto& l : lines) {
    std::string t = trim(l);
    if (t.empty()) continue;
    bool bullet = t[0] == '-' || t[0] == '*' || t.starts_with("\xE2\x80\xA2") ||
                  (std::isdigit((unsigned char)t[0]) && t.find_first_of(".)") != std::string::npos &&
                   t.find_first_not_of("0123456789") == t.find_first_of(".)"));
    if (!bullet) all_items = false;
    items.push_back(strip_item(t));
  }
  if (!all_items) {
    items.clear();
    if (lines.size() == 1 && body.size() <= 300 && !body.ends_with('.'))
      for (auto& piece : split_any(body, ",;")) items.push_back(strip_item(piece));
  }
  items.erase(std::remove(items.begin(), items.end(), ""), items.end());
  if (items.empty()) return p;
  ParsedAnswer trial;
  for (auto& it : items) add_listed_entity(si, it, trial);
  if (!all_items && trial.unaligned * 2 > int(items.size())) return p;  // mostly not names from the sentence
  finish_entities(trial);
  return trial;
}

// ---- classification ------------------------------------------------------------------------------------------

namespace {

std::optional<std::string> match_label(const TaskConfig& task, std::string_view name) {
  std::string n = norm_label(name);
  for (auto& l : task.labels)
    if (norm_label(l) == n) return l;
  if (auto it = task.label_aliases.find(lower(trim(name))); it != task.label_aliases.end()) return it->second;
  return std::nullopt;
}

bool truthy(const nlohmann::json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  if (v.is_string()) {
    std::string s = lower(trim(v.get<std::string>()));
    return s == "1" || s == "yes" || s == "true";
  }
  return false;
}

ParsedAnswer ordered(const TaskConfig& task, const std::set<std::string>& chosen) {
  ParsedAnswer p;
  p.ok = true;
  for (auto& l : task.labels)
    if (chosen.contains(l)) p.labels.push_back(l);
  return p;
}

}  // namespace

ParsedAnswer parse_multilabel(const TaskConfig& task, std::string_view text) {
  // 1. A JSON object or Python dict: label -> 0/1. Keys that are not labels are ignored; missing labels are 0.
  if (auto [a, b] = find_bracketed(text, '{', '}'); a != std::string_view::npos) {
    if (auto j = parse_literal(text.substr(a, b - a)); j && j->is_object()) {
      std::set<std::string> chosen;
      bool any = false;
      for (auto& [k, v] : j->items())
        if (auto l = match_label(task, k)) {
          any = true;
          if (truthy(v)) chosen.insert(*l);
        }
      if (any) return ordered(task, chosen);
    }
  }
  // 2. A list literal of label names (an empty list: no label applies).
  if (auto [a, b] = find_bracketed(text, '[', ']'); a != std::string_view::npos) {
    if (auto j = parse_literal(text.substr(a, b - a)); j && j->is_array()) {
      std::set<std::string> chosen;
      bool all_labels = true;
      for (auto& x : *j) {
        auto l = x.is_string() ? match_label(task, x.get<std::string>()) : std::nullopt;
        if (l) chosen.insert(*l);
        else all_labels = false;
      }
      if (all_labels) return ordered(task, chosen);
    }
  }
  // 3. Label names one per line or separated by commas/semicolons, or "label: 1" lines.
  std::set<std::string> chosen;
  bool any = false;
  for (auto& piece : split_any(text, "\n,;")) {
    std::string item = strip_item(piece);
    std::string value = "1";
    if (size_t colon = item.rfind(':'); colon != std::string::npos && !match_label(task, item)) {
      value = trim(std::string_view(item).substr(colon + 1));
      item = strip_item(std::string_view(item).substr(0, colon));
    }
    if (auto l = match_label(task, item)) {
      any = true;
      if (truthy(value)) chosen.insert(*l);
    }
  }
  if (any) return ordered(task, chosen);
  return {};
}

ParsedAnswer parse_label(const TaskConfig& task, std::string_view text) {
  // The earliest occurrence, as a whole word, of a label or an alias; at one position the longest wins.
  std::string t = lower(text);
  std::vector<std::pair<std::string, std::string>> candidates;  // lower-case spelling -> label
  for (auto& l : task.labels) candidates.emplace_back(lower(l), l);
  for (auto& [alias, l] : task.label_aliases) candidates.emplace_back(alias, l);
  size_t best = std::string::npos, best_len = 0;
  std::string best_label;
  for (auto& [spelling, label] : candidates) {
    for (size_t a = t.find(spelling); a != std::string::npos; a = t.find(spelling, a + 1)) {
      size_t b = a + spelling.size();
      if ((a > 0 && is_word(t[a - 1]) && is_word(spelling.front())) ||
          (b < t.size() && is_word(t[b]) && is_word(spelling.back())))
        continue;
      if (a < best || (a == best && spelling.size() > best_len)) {
        best = a;
        best_len = spelling.size();
        best_label = label;
      }
      break;
    }
  }
  ParsedAnswer p;
  if (best != std::string::npos) {
    p.ok = true;
    p.labels = {best_label};
  }
  return p;
}

ParsedAnswer parse_option_letter(const TaskConfig& task, const Example& ex, std::string_view text) {
  std::string s = trim(text);
  std::string letters;
  for (auto& l : task.labels) letters += l;
  const std::string L = "[" + letters + "]";
  auto accept = [&](const std::string& letter) {
    ParsedAnswer p;
    p.ok = true;
    p.labels = {letter};
    return p;
  };
  std::smatch m;
  // "The answer is (C)", "Answer: C", "correct option is C." — keyword then a capital letter standing alone.
  static const std::string kw = R"((?:[Aa]nswer|ANSWER|[Oo]ption|OPTION|[Cc]hoice|CHOICE)\s*(?:is|:|-)?\s*(?:is\s*)?[:\-]?\s*[*_]*)";
  if (std::regex_search(s, m, std::regex(kw + R"([(\[]?()" + L + R"()[)\]]?(?![A-Za-z0-9'\-]))"))) return accept(m[1]);
  // The output opens with the letter: "C", "C.", "(C)", "C) Nitrofurantoin", "**C**".
  if (std::regex_search(s, m, std::regex(R"(^[*_]*[(\[]?()" + L + R"()[)\]]?[*_]*(?:[.:)]|\s*$|\s+[-–:]))"))) return accept(m[1]);
  // A lone lower-case letter.
  if (std::regex_match(s, m, std::regex(R"(^\(?([a-e])\)?\.?$)")))
    for (auto& l : task.labels)
      if (lower(l) == m.str(1)) return accept(l);
  // Exactly one option's text appears in the output.
  std::string ls = lower(s);
  std::string hit;
  int hits = 0;
  for (auto& [k, v] : ex.options)
    if (!v.empty() && ls.find(lower(v)) != std::string::npos) {
      hit = k;
      hits++;
    }
  if (hits == 1) return accept(hit);
  // "(C)" anywhere.
  if (std::regex_search(s, m, std::regex(R"(\(()" + L + R"()\))"))) return accept(m[1]);
  return {};
}

const std::vector<AnswerExtractor>& answer_extractors() {
  static const std::vector<AnswerExtractor> table = {
      {"spans", GoldKind::spans, false, {},
       [](const TaskConfig&, const Example& ex, std::string_view a) { return parse_spans(ex, a); }, write_spans_answer},
      {"multilabel", GoldKind::labels, false, {"label_separator"},
       [](const TaskConfig& t, const Example&, std::string_view a) { return parse_multilabel(t, a); },
       write_multilabel_answer},
      {"label", GoldKind::labels, true, {},
       [](const TaskConfig& t, const Example&, std::string_view a) { return parse_label(t, a); }, write_label_answer},
      {"option_letter", GoldKind::labels, true, {"options_field"}, parse_option_letter, write_label_answer},
  };
  return table;
}

const AnswerExtractor& answer_extractor(std::string_view name) {
  if (const AnswerExtractor* e = find_named(answer_extractors(), name)) return *e;
  fail("unknown answer extractor '{}' (known: {})", name, known_names(answer_extractors()));
}

ParsedAnswer parse_answer(const TaskConfig& task, const Example& ex, std::string_view output, bool cot) {
  auto region = answer_region(output, cot);
  if (!region || region->empty()) return {};
  return answer_extractor(task.extractor).parse(task, ex, *region);
}

ParsedAnswer majority_vote(const std::vector<ParsedAnswer>& answers) {
  std::map<std::string, int> count;
  for (auto& a : answers)
    if (a.ok) count[a.key()]++;
  const ParsedAnswer* best = nullptr;
  int best_count = 0;
  for (auto& a : answers)  // sample order: the first answer to reach the top count wins a tie
    if (a.ok && count[a.key()] > best_count) {
      best = &a;
      best_count = count[a.key()];
    }
  return best ? *best : ParsedAnswer{};
}

Scored score_answer(const TaskConfig& task, const Example& ex, const ParsedAnswer& answer) {
  Scored s;
  s.id = ex.id;
  s.parsed = answer.ok;
  if (data_reader(task.reader).gold == GoldKind::spans) {
    std::set<EntitySpan> gold(ex.entities.begin(), ex.entities.end());
    if (answer.ok) {
      for (auto& e : answer.entities) (gold.contains(e) ? s.tp : s.fp)++;
      s.fp += answer.unaligned;
    }
    s.fn = int(gold.size()) - s.tp;
    return s;
  }
  auto index = [&](const std::string& l) {
    return int(std::find(task.labels.begin(), task.labels.end(), l) - task.labels.begin());
  };
  for (auto& l : ex.gold) s.gold.push_back(index(l));
  if (answer.ok)
    for (auto& l : answer.labels) s.pred.push_back(index(l));
  std::sort(s.gold.begin(), s.gold.end());
  std::sort(s.pred.begin(), s.pred.end());
  return s;
}

bool is_correct(const TaskConfig& task, const Scored& s) {
  if (!s.parsed) return false;
  if (data_reader(task.reader).gold == GoldKind::spans) return s.fp == 0 && s.fn == 0;
  return s.gold == s.pred;
}

}  // namespace bq::eval
