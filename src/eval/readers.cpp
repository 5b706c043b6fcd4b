#include "eval/readers.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "eval/named_table.h"
#include "tokenizer/text.h"

namespace bq::eval {

std::string normalize_text_file(std::string text) {
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    out += text[i];
  }
  return out;
}

TsvTable parse_tsv(std::string_view text, const std::string& name, bool lenient) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  TsvTable table;
  size_t pos = 0, line = 1;
  bool have_header = false;
  while (pos < text.size()) {
    size_t row_line = line, row_start = pos;
    // A row is bounded: a quote never closed must not turn the rest of a large file into one cell.
    auto check_row = [&] {
      if (pos - row_start > limits::kDataRowBytes)
        fail("{}:{}: row longer than {} (a quote never closed?)", name, row_line, size_str(limits::kDataRowBytes));
    };
    std::vector<std::string> cells;
    std::string cell;
    bool open_quote = false;
    // One row: fields separated by tabs, ended by LF / CRLF outside quotes or by the end of the text.
    while (true) {
      if (pos >= text.size()) break;
      char c = text[pos];
      if (c == '"' && cell.empty()) {
        // Quoted field (or a quoted section): runs to the next lone quote.
        pos++;
        open_quote = true;
        while (pos < text.size()) {
          char q = text[pos];
          if (q == '"') {
            if (pos + 1 < text.size() && text[pos + 1] == '"') {
              cell += '"';
              pos += 2;
              continue;
            }
            pos++;
            open_quote = false;
            break;
          }
          if (q == '\n') {
            line++;
            check_row();
          }
          if (q == '\r' && pos + 1 < text.size() && text[pos + 1] == '\n') {
            pos++;
            continue;
          }
          cell += q;
          pos++;
        }
        if (open_quote) break;
        continue;
      }
      if (c == '\t') {
        check_row();
        cells.push_back(std::move(cell));
        cell.clear();
        pos++;
        continue;
      }
      if (c == '\n' || c == '\r') {
        pos += (c == '\r' && pos + 1 < text.size() && text[pos + 1] == '\n') ? 2 : 1;
        line++;
        break;
      }
      cell += c;
      pos++;
    }
    check_row();
    cells.push_back(std::move(cell));
    std::string problem;
    if (open_quote) problem = fmt::format("{}:{}: quoted field never closed", name, row_line);
    if (cells.size() == 1 && cells[0].empty() && problem.empty()) continue;  // blank line
    if (!have_header && problem.empty()) {
      table.header = std::move(cells);
      have_header = true;
      continue;
    }
    if (problem.empty() && cells.size() != table.header.size())
      problem = fmt::format("{}:{}: {} fields, the header has {}", name, row_line, cells.size(), table.header.size());
    if (!problem.empty()) {
      if (!lenient) throw Error(problem);
      table.skipped++;
      table.problems.push_back(problem);
      continue;
    }
    table.rows.push_back({row_line, std::move(cells)});
  }
  if (!have_header) fail("{}: empty table (no header row)", name);
  return table;
}

static bool valid_tag(std::string_view tag) {
  if (tag == "O" || tag == "B" || tag == "I") return true;
  return (tag.starts_with("B-") || tag.starts_with("I-")) && tag.size() > 2;
}

std::vector<ConllSentence> parse_conll(std::string_view text, const std::string& name, bool lenient,
                                       size_t* skipped) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  std::vector<ConllSentence> out;
  ConllSentence cur;
  bool cur_bad = false;
  size_t n_skipped = 0;
  auto finish = [&] {
    if (!cur.tokens.empty() || cur_bad) {
      if (cur_bad) n_skipped++;
      else out.push_back(std::move(cur));
    }
    cur = {};
    cur_bad = false;
  };
  size_t pos = 0, line = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view l = text.substr(pos, eol - pos);
    pos = eol + 1;
    line++;
    if (l.ends_with('\r')) l.remove_suffix(1);
    if (l.size() > limits::kDataRowBytes)
      fail("{}:{}: line longer than {}", name, line, size_str(limits::kDataRowBytes));
    if (l.find_first_not_of(" \t") == std::string_view::npos) {
      finish();
      continue;
    }
    size_t tab = l.rfind('\t');
    std::string problem;
    if (tab == std::string_view::npos || tab == 0) problem = "expected `token<TAB>tag`";
    else if (!valid_tag(l.substr(tab + 1))) problem = fmt::format("unknown tag '{}'", l.substr(tab + 1));
    else if (l.substr(0, tab).find('\t') != std::string_view::npos) problem = "more than two tab-separated fields";
    if (!problem.empty()) {
      if (!lenient) fail("{}:{}: {}", name, line, problem);
      cur_bad = true;
      continue;
    }
    if (cur.tokens.empty()) cur.line = line;
    cur.tokens.emplace_back(l.substr(0, tab));
    cur.tags.emplace_back(l.substr(tab + 1));
  }
  finish();
  if (skipped) *skipped = n_skipped;
  return out;
}

// ---- Python literals ----------------------------------------------------------------------------------------

namespace {

struct PyParser {
  std::string_view s;
  const std::string& name;
  size_t i = 0;
  int depth = 0;  // open brackets: each is a level of recursion

  [[noreturn]] void error(const char* what) { fail("{}: Python literal: {} at offset {}", name, what, i); }

  void skip_ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  }


  uint32_t hex(int digits) {
    if (i + digits > s.size()) error("truncated escape");
    uint32_t v = 0;
    for (int k = 0; k < digits; k++) {
      char c = s[i++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else error("bad hex digit in escape");
    }
    return v;
  }

  // A backslash-u or -U escape: surrogates and values past U+10FFFF have no UTF-8 form (JSON output fails on them).
  void code_point(std::string& out, uint32_t cp) {
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) error("escape is not a Unicode character");
    tok::append_utf8(out, cp);
  }

  std::string string_literal() {
    std::string out;
    // Adjacent literals concatenate, as in Python: 'a' "b" == 'ab'.
    while (i < s.size() && (s[i] == '\'' || s[i] == '"')) {
      char quote = s[i++];
      while (true) {
        if (i >= s.size()) error("unterminated string");
        char c = s[i++];
        if (c == quote) break;
        if (c != '\\') {
          out += c;
          continue;
        }
        if (i >= s.size()) error("unterminated string");
        char e = s[i++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case '0': out += '\0'; break;
          case '\\': out += '\\'; break;
          case '\'': out += '\''; break;
          case '"': out += '"'; break;
          case '\n': break;  // line continuation
          case 'x': tok::append_utf8(out, hex(2)); break;
          case 'u': code_point(out, hex(4)); break;
          case 'U': code_point(out, hex(8)); break;
          default: out += '\\'; out += e;  // Python keeps unknown escapes verbatim
        }
      }
      skip_ws();
    }
    return out;
  }

  nlohmann::json value() {
    skip_ws();
    if (i >= s.size()) error("unexpected end");
    char c = s[i];
    if (c == '\'' || c == '"') return string_literal();
    if (c == '[' || c == '(' || c == '{') {
      if (++depth > limits::kMaxNesting) error("nested too deep");
    }
    if (c == '[' || c == '(') {
      char close = c == '[' ? ']' : ')';
      i++;
      auto arr = nlohmann::json::array();
      skip_ws();
      while (true) {
        skip_ws();
        if (i < s.size() && s[i] == close) {
          i++;
          depth--;
          return arr;
        }
        arr.push_back(value());
        skip_ws();
        if (i < s.size() && s[i] == ',') i++;
        else if (i < s.size() && s[i] == close) continue;
        else error("expected ',' or closing bracket");
      }
    }
    if (c == '{') {
      i++;
      auto obj = nlohmann::json::object();
      while (true) {
        skip_ws();
        if (i < s.size() && s[i] == '}') {
          i++;
          depth--;
          return obj;
        }
        nlohmann::json key = value();
        // A non-string key (a tuple, a number) becomes its JSON text; bytes that are not UTF-8 are replaced.
        std::string k = key.is_string() ? key.get<std::string>()
                                        : key.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        skip_ws();
        if (i >= s.size() || s[i] != ':') error("expected ':' in dict");
        i++;
        obj[k] = value();
        skip_ws();
        if (i < s.size() && s[i] == ',') i++;
        else if (i < s.size() && s[i] == '}') continue;
        else error("expected ',' or '}'");
      }
    }
    for (auto [word, v] : {std::pair<std::string_view, nlohmann::json>{"True", true}, {"False", false}, {"None", nullptr}}) {
      if (s.substr(i, word.size()) == word) {
        i += word.size();
        return v;
      }
    }
    if (c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9')) {
      size_t start = i;
      if (c == '-' || c == '+') i++;
      bool is_float = false;
      while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == 'e' || s[i] == 'E' ||
                              ((s[i] == '-' || s[i] == '+') && (s[i - 1] == 'e' || s[i - 1] == 'E')))) {
        if (s[i] == '.' || s[i] == 'e' || s[i] == 'E') is_float = true;
        i++;
      }
      std::string num(s.substr(start, i - start));
      try {
        if (is_float) return std::stod(num);
        return std::stoll(num);
      } catch (const std::exception&) {
        error("bad number");
      }
    }
    error("unexpected character");
  }
};

}  // namespace

nlohmann::json parse_python_literal(std::string_view text, const std::string& name) {
  PyParser p{text, name};
  nlohmann::json v = p.value();
  p.skip_ws();
  if (p.i != text.size()) p.error("trailing characters");
  return v;
}

namespace {

std::string join_options(const std::vector<std::pair<std::string, std::string>>& options) {
  std::string s;
  for (auto& [k, v] : options) {
    if (!s.empty()) s += '\n';
    s += k + ". " + v;
  }
  return s;
}

void read_conll(const TaskConfig&, std::string_view bytes, bool lenient, Dataset& ds) {
  std::string name = ds.file.string();
  auto sentences = parse_conll(bytes, name, lenient, &ds.skipped);
  for (size_t i = 0; i < sentences.size(); i++) {
    Example ex;
    ex.id = fmt::format("{}-{}", ds.split, i);
    ex.line = sentences[i].line;
    ex.tokens = std::move(sentences[i].tokens);
    ex.entities = entities_from_tags(sentences[i].tags);
    std::string sentence;
    for (auto& tok : ex.tokens) {
      if (!sentence.empty()) sentence += ' ';
      sentence += tok;
    }
    ex.fields["sentence"] = sentence;
    ds.examples.push_back(std::move(ex));
  }
  if (ds.skipped) ds.problems.push_back(fmt::format("{}: {} malformed sentences skipped", name, ds.skipped));
}

void read_tsv(const TaskConfig& task, std::string_view bytes, bool lenient, Dataset& ds) {
  std::string name = ds.file.string();
  TsvTable table = parse_tsv(bytes, name, lenient);
  auto column = [&](const std::string& col) -> size_t {
    auto it = std::find(table.header.begin(), table.header.end(), col);
    if (it == table.header.end()) fail("{}: no column '{}' (task file {})", name, col, task.source.string());
    return size_t(it - table.header.begin());
  };
  size_t label_col = column(task.label_field);
  size_t id_col = task.id_field.empty() ? SIZE_MAX : column(task.id_field);
  size_t options_col = task.options_field.empty() ? SIZE_MAX : column(task.options_field);
  std::set<std::string> label_set(task.labels.begin(), task.labels.end());
  ds.skipped = table.skipped;
  ds.problems = table.problems;
  std::set<std::string> ids;
  for (auto& row : table.rows) {
    Example ex;
    ex.line = row.line;
    for (size_t c = 0; c < table.header.size(); c++) ex.fields[table.header[c]] = row.cells[c];
    ex.id = id_col == SIZE_MAX ? fmt::format("{}-{}", ds.split, ds.examples.size()) : row.cells[id_col];
    std::string problem;
    const std::string& gold = row.cells[label_col];
    if (!task.label_separator.empty()) {
      size_t p = 0;
      while (p <= gold.size() && !gold.empty()) {
        size_t q = gold.find(task.label_separator, p);
        if (q == std::string::npos) q = gold.size();
        std::string l = gold.substr(p, q - p);
        if (!l.empty()) ex.gold.push_back(l);
        p = q + task.label_separator.size();
      }
    } else {
      ex.gold.push_back(gold);
    }
    for (auto& l : ex.gold)
      if (!label_set.contains(l)) problem = fmt::format("label '{}' is not in the task's label set", l);
    if (options_col != SIZE_MAX && problem.empty()) {
      try {
        auto opts = parse_python_literal(row.cells[options_col], fmt::format("{}:{}", name, row.line));
        for (auto& o : opts) ex.options.emplace_back(o.at("key").get<std::string>(), o.at("value").get<std::string>());
        ex.fields["options"] = join_options(ex.options);
      } catch (const std::exception& e) {
        problem = fmt::format("bad options literal: {}", e.what());
      }
    }
    // ChemProt repeats an index when one pair carries two relations: the k-th repeat becomes "<id>#k".
    if (problem.empty() && !ids.insert(ex.id).second) {
      int k = 2;
      while (!ids.insert(fmt::format("{}#{}", ex.id, k)).second) k++;
      ex.id = fmt::format("{}#{}", ex.id, k);
    }
    if (!problem.empty()) {
      std::string msg = fmt::format("{}:{}: {}", name, row.line, problem);
      if (!lenient) throw Error(msg);
      ds.skipped++;
      ds.problems.push_back(msg);
      continue;
    }
    ds.examples.push_back(std::move(ex));
  }
}

}  // namespace

const std::vector<DataReader>& data_readers() {
  static const std::vector<DataReader> table = {
      {"conll", GoldKind::spans, {}, read_conll},
      {"tsv", GoldKind::labels, {"label_field", "labels"}, read_tsv},
  };
  return table;
}

const DataReader& data_reader(std::string_view name) {
  if (const DataReader* r = find_named(data_readers(), name)) return *r;
  fail("unknown reader '{}' (known: {})", name, known_names(data_readers()));
}

}  // namespace bq::eval
