// The Jinja lexer: see lexer.h.
#include "tokenizer/jinja/lexer.h"

#include <utf8proc.h>

#include <cctype>
#include <cstring>

#include "core/error.h"
#include "core/limits.h"

namespace bq::jinja {

namespace {

Location locate(std::string_view src, size_t pos) {
  Location loc{1, 1};
  for (size_t k = 0; k < pos && k < src.size(); ++k) {
    if (src[k] == '\n') ++loc.line, loc.col = 1;
    else ++loc.col;
  }
  return loc;
}

class Lexer {
 public:
  Lexer(std::string_view src, const std::string& origin) : src_(src), origin_(origin) {}

  std::vector<Token> run() {
    size_t p = 0;
    bool strip_next = false;  // the previous tag ended with '-': drop leading whitespace of the next text
    while (p < src_.size()) {
      size_t q = find_tag(p);
      size_t text_end = q == std::string_view::npos ? src_.size() : q;
      size_t text_begin = p;
      if (strip_next) while (text_begin < text_end && is_space(src_[text_begin])) ++text_begin;
      strip_next = false;
      if (q == std::string_view::npos) {
        // Like Jinja (keep_trailing_newline off), a single trailing newline of the template is dropped.
        if (text_end > text_begin && src_[text_end - 1] == '\n') --text_end;
        emit_text(text_begin, text_end);
        break;
      }
      char kind = src_[q + 1];
      size_t inner = q + 2;
      char modifier = inner < src_.size() ? src_[inner] : 0;
      if (modifier == '-') {
        while (text_end > text_begin && is_space(src_[text_end - 1])) --text_end;
      } else if (kind != '{' && modifier != '+') {
        // lstrip_blocks: spaces and tabs between a line start and a block or comment tag go.
        size_t ws = text_end;
        while (ws > text_begin && (src_[ws - 1] == ' ' || src_[ws - 1] == '\t')) --ws;
        if (ws == 0 || src_[ws - 1] == '\n') text_end = ws;
      }
      emit_text(text_begin, text_end);
      if (modifier == '-' || modifier == '+') ++inner;
      if (kind == '#') {
        size_t e = src_.find("#}", inner);
        if (e == std::string_view::npos) fail_at(q, "unclosed comment");
        strip_next = e > inner && src_[e - 1] == '-';
        p = after_block(e + 2, strip_next);
        continue;
      }
      tokens_.push_back({kind == '{' ? Tok::VarBegin : Tok::BlockBegin, "", {}, q});
      bool dash = false;
      p = lex_expression(inner, kind == '{' ? '}' : '%', &dash);
      strip_next = dash;
      if (kind == '%') {
        p = after_block(p, dash);
        if (is_raw_open()) p = lex_raw(p, &strip_next);
      }
    }
    tokens_.push_back({Tok::Eof, "", {}, src_.size()});
    return std::move(tokens_);
  }

 private:
  static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

  [[noreturn]] void fail_at(size_t pos, std::string_view what) {
    Location loc = locate(src_, pos);
    fail("{}:{}:{}: template syntax error: {}", origin_, loc.line, loc.col, what);
  }

  size_t find_tag(size_t p) const {
    for (size_t q = src_.find('{', p); q != std::string_view::npos; q = src_.find('{', q + 1))
      if (q + 1 < src_.size() && (src_[q + 1] == '{' || src_[q + 1] == '%' || src_[q + 1] == '#')) return q;
    return std::string_view::npos;
  }

  void emit_text(size_t b, size_t e) {
    if (e > b) tokens_.push_back({Tok::Text, std::string(src_.substr(b, e - b)), {}, b});
  }

  // trim_blocks: the first newline after a block or comment tag goes.
  size_t after_block(size_t p, bool dash) const {
    if (dash) return p;
    if (p < src_.size() && src_[p] == '\n') return p + 1;
    if (p + 1 < src_.size() && src_[p] == '\r' && src_[p + 1] == '\n') return p + 2;
    return p;
  }

  bool is_raw_open() const {
    size_t n = tokens_.size();
    return n >= 3 && tokens_[n - 3].kind == Tok::BlockBegin && tokens_[n - 2].kind == Tok::Name &&
           tokens_[n - 2].text == "raw" && tokens_[n - 1].kind == Tok::BlockEnd;
  }

  // After {% raw %}: everything up to {% endraw %} is text.
  size_t lex_raw(size_t p, bool* strip_next) {
    size_t open = tokens_[tokens_.size() - 3].pos;
    tokens_.resize(tokens_.size() - 3);
    size_t text_begin = p;
    if (*strip_next) while (text_begin < src_.size() && is_space(src_[text_begin])) ++text_begin;
    for (size_t q = src_.find("{%", p); q != std::string_view::npos; q = src_.find("{%", q + 1)) {
      size_t k = q + 2;
      bool lead_dash = k < src_.size() && src_[k] == '-';
      if (lead_dash || (k < src_.size() && src_[k] == '+')) ++k;
      while (k < src_.size() && is_space(src_[k])) ++k;
      if (src_.substr(k, 6) != "endraw") continue;
      k += 6;
      while (k < src_.size() && is_space(src_[k])) ++k;
      bool trail_dash = k < src_.size() && src_[k] == '-';
      if (trail_dash) ++k;
      if (src_.substr(k, 2) != "%}") continue;
      size_t text_end = q;
      if (lead_dash) {
        while (text_end > text_begin && is_space(src_[text_end - 1])) --text_end;
      } else {
        size_t ws = text_end;
        while (ws > text_begin && (src_[ws - 1] == ' ' || src_[ws - 1] == '\t')) --ws;
        if (src_[ws - 1] == '\n') text_end = ws;
      }
      emit_text(text_begin, text_end);
      *strip_next = trail_dash;
      return after_block(k + 2, trail_dash);
    }
    fail_at(open, "missing {% endraw %}");
  }

  // Tokens of one {{ }} or {% %} tag, up to its closing delimiter; returns the offset after it.
  size_t lex_expression(size_t p, char closer, bool* dash) {
    int depth = 0;
    const size_t first_token = tokens_.size();
    while (true) {
      // A long chain (a ~ a ~ ...) nests as deep as it is long when parsed and evaluated.
      if (tokens_.size() - first_token > size_t(limits::kJinjaMaxTagTokens))
        fail_at(p, fmt::format("more than {} tokens in one tag", limits::kJinjaMaxTagTokens));
      while (p < src_.size() && is_space(src_[p])) ++p;
      if (p >= src_.size()) fail_at(p, "unexpected end of template inside a tag");
      char c = src_[p];
      if (depth == 0) {
        if (c == '-' && p + 2 < src_.size() && src_[p + 1] == closer && src_[p + 2] == '}') {
          *dash = true;
          tokens_.push_back({closer == '}' ? Tok::VarEnd : Tok::BlockEnd, "", {}, p});
          return p + 3;
        }
        if (c == closer && p + 1 < src_.size() && src_[p + 1] == '}') {
          tokens_.push_back({closer == '}' ? Tok::VarEnd : Tok::BlockEnd, "", {}, p});
          return p + 2;
        }
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = p;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        tokens_.push_back({Tok::Name, std::string(src_.substr(p, e - p)), {}, p});
        p = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        p = lex_number(p);
      } else if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else {
        static constexpr std::string_view two[] = {"**", "//", "==", "!=", "<=", ">="};
        size_t len = 1;
        for (std::string_view t : two)
          if (src_.substr(p, 2) == t) len = 2;
        std::string op(src_.substr(p, len));
        if (len == 1 && !std::strchr("+-*/%~<>=()[]{}.,:|", c)) fail_at(p, fmt::format("unexpected character '{}'", c));
        if (c == '(' || c == '[' || c == '{') ++depth;
        if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
        tokens_.push_back({Tok::Op, op, {}, p});
        p += op.size();
      }
    }
  }

  size_t lex_number(size_t p) {
    size_t e = p;
    while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
    bool is_float = false;
    if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
      is_float = true;
      for (++e; e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_');) ++e;
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t k = e + 1;
      if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
      if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
        is_float = true;
        for (e = k; e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]));) ++e;
      }
    }
    std::string text;
    for (size_t k = p; k < e; ++k)
      if (src_[k] != '_') text += src_[k];
    Token t{is_float ? Tok::Float : Tok::Int, text, {}, p};
    t.number = is_float ? Value::number(std::strtod(text.c_str(), nullptr))
                        : Value::integer(std::strtoll(text.c_str(), nullptr, 10));
    tokens_.push_back(std::move(t));
    return e;
  }

  // String literals take Python's escapes (\n, \t, \xhh, \uhhhh, ...); an unknown escape keeps its backslash.
  size_t lex_string(size_t p) {
    char quote = src_[p];
    std::string out;
    size_t k = p + 1;
    auto put_cp = [&](uint32_t cp) {
      utf8proc_uint8_t buf[4];
      out.append(reinterpret_cast<char*>(buf), size_t(utf8proc_encode_char(utf8proc_int32_t(cp), buf)));
    };
    while (true) {
      if (k >= src_.size()) fail_at(p, "unterminated string");
      char c = src_[k];
      if (c == quote) break;
      if (c != '\\' || k + 1 >= src_.size()) { out += c; ++k; continue; }
      char e = src_[k + 1];
      k += 2;
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case 'a': out += '\a'; break;
        case '0': out += '\0'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': break;
        case 'x':
        case 'u':
        case 'U': {
          size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          std::string hex(src_.substr(k, n));
          if (hex.size() != n || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
            fail_at(k, "bad \\x/\\u escape in string");
          put_cp(uint32_t(std::stoul(hex, nullptr, 16)));
          k += n;
          break;
        }
        default: out += '\\'; out += e;
      }
    }
    tokens_.push_back({Tok::String, out, {}, p});
    return k + 1;
  }

  std::string_view src_;
  const std::string& origin_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(std::string_view src, const std::string& origin) { return Lexer(src, origin).run(); }

}  // namespace bq::jinja
