// String helpers with Python's semantics: see strings.h.
#include "tokenizer/jinja/strings.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstring>

namespace bq::jinja {

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t k = 0; k < s.size();) {
    unsigned char c = s[k];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    n = std::min(n, s.size() - k);
    out.push_back(s.substr(k, n));
    k += n;
  }
  return out;
}

namespace {

constexpr const char* kWhitespace = " \t\n\r\f\v";

// Maps each code point through `fn(codepoint, index_in_string, previous_codepoint_was_cased)`.
template <typename Fn>
std::string map_codepoints(const std::string& s, Fn fn) {
  std::string out;
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = utf8proc_ssize_t(s.size());
  bool prev_cased = false;
  for (size_t index = 0; left > 0; ++index) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) { out += char(*p); ++p; --left; prev_cased = false; continue; }
    utf8proc_int32_t mapped = fn(cp, index, prev_cased);
    utf8proc_uint8_t buf[4];
    out.append(reinterpret_cast<char*>(buf), size_t(utf8proc_encode_char(mapped, buf)));
    prev_cased = utf8proc_tolower(cp) != cp || utf8proc_toupper(cp) != cp;
    p += n;
    left -= n;
  }
  return out;
}

}  // namespace

std::string lower(const std::string& s) { return map_codepoints(s, [](int32_t c, size_t, bool) { return utf8proc_tolower(c); }); }
std::string upper(const std::string& s) { return map_codepoints(s, [](int32_t c, size_t, bool) { return utf8proc_toupper(c); }); }
std::string title(const std::string& s) {
  return map_codepoints(s, [](int32_t c, size_t, bool prev) { return prev ? utf8proc_tolower(c) : utf8proc_toupper(c); });
}
std::string capitalize(const std::string& s) {
  return map_codepoints(s, [](int32_t c, size_t k, bool) { return k == 0 ? utf8proc_toupper(c) : utf8proc_tolower(c); });
}

std::string strip(const std::string& s, const Value* chars, bool left, bool right) {
  std::string set = (chars && chars->kind == Value::Str) ? chars->s : kWhitespace;
  size_t b = 0, e = s.size();
  if (left) while (b < e && set.find(s[b]) != std::string::npos) ++b;
  if (right) while (e > b && set.find(s[e - 1]) != std::string::npos) --e;
  return s.substr(b, e - b);
}

List split(const std::string& s, const Value* sep, int64_t maxsplit) {
  List out;
  if (!sep || sep->kind == Value::None) {
    size_t k = 0;
    while (true) {
      while (k < s.size() && std::strchr(kWhitespace, s[k]) && s[k]) ++k;
      if (k >= s.size()) break;
      if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) {
        out.push_back(Value::str(strip(s.substr(k), nullptr, false, true)));
        break;
      }
      size_t e = k;
      while (e < s.size() && !std::strchr(kWhitespace, s[e])) ++e;
      out.push_back(Value::str(s.substr(k, e - k)));
      k = e;
    }
    return out;
  }
  if (sep->kind != Value::Str || sep->s.empty()) runtime_fail("split: empty separator");
  size_t k = 0;
  while (true) {
    size_t e = s.find(sep->s, k);
    if (e == std::string::npos || (maxsplit >= 0 && int64_t(out.size()) == maxsplit)) {
      out.push_back(Value::str(s.substr(k)));
      break;
    }
    out.push_back(Value::str(s.substr(k, e - k)));
    k = e + sep->s.size();
  }
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  size_t k = 0;
  for (int64_t done = 0; count < 0 || done < count; ++done) {
    size_t e = from.empty() ? (k <= s.size() ? k : std::string::npos) : s.find(from, k);
    if (e == std::string::npos) break;
    out += s.substr(k, e - k) + to;
    check_string(out.size());
    if (from.empty()) {
      if (e == s.size()) { k = e + 1; break; }
      out += s[e];
      k = e + 1;
    } else {
      k = e + from.size();
    }
  }
  if (k <= s.size()) out += s.substr(k);
  return out;
}

std::vector<size_t> slice_indices(int64_t n, const Value& start, const Value& stop, const Value& step) {
  int64_t st = step.kind == Value::Int ? step.i : 1;
  if (st == 0) runtime_fail("slice step cannot be zero");
  auto clamp = [&](const Value& v, int64_t dflt) {
    if (v.kind != Value::Int) return dflt;
    int64_t x = v.i < 0 ? v.i + n : v.i;
    return st > 0 ? std::clamp<int64_t>(x, 0, n) : std::clamp<int64_t>(x, -1, n - 1);
  };
  int64_t b = clamp(start, st > 0 ? 0 : n - 1), e = clamp(stop, st > 0 ? n : -1);
  std::vector<size_t> out;
  for (__int128 k = b; st > 0 ? k < e : k > e; k += st) out.push_back(size_t(k));  // 128-bit: k + st may overflow
  return out;
}

}  // namespace bq::jinja
