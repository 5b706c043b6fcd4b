// Text helpers for the tokenizer: UTF-8, Unicode properties and normalization, GPT-2's byte-to-code-point table and
// a PCRE2 regex wrapper whose semantics match the Oniguruma patterns found in tokenizer.json files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bq::tok {

// Offset of the first byte that is not part of a well-formed UTF-8 sequence, or npos when all is well-formed.
size_t find_invalid_utf8(std::string_view s);
// Decodes the code point at s[i] (s well-formed) and advances i past it.
uint32_t next_code_point(std::string_view s, size_t& i);
void append_utf8(std::string& out, uint32_t cp);
// Replaces each maximal ill-formed subsequence by U+FFFD (the rule Rust's from_utf8_lossy and TextDecoder follow).
std::string utf8_lossy(std::string_view bytes);

bool is_white_space(uint32_t cp);   // the Unicode White_Space property (Rust's char::is_whitespace)
bool is_alphanumeric(uint32_t cp);  // letters and numbers

enum class NormalForm { NFC, NFD, NFKC, NFKD };
std::string unicode_normalize(std::string_view s, NormalForm form);

// GPT-2's reversible map from bytes to printable code points (space -> U+0120 'Ġ', newline -> U+010A 'Ċ').
const std::string& byte_to_unicode(uint8_t b);  // as UTF-8
int unicode_to_byte(uint32_t cp);               // -1 when cp is not in the table
std::string byte_level_encode(std::string_view bytes);

// A compiled PCRE2 pattern (UTF, UCP, JIT). Copies share the compiled code; matching is thread-safe.
class Regex {
 public:
  // Throws bq::Error on a bad pattern; `origin` (the file it came from) is named when matching fails.
  explicit Regex(const std::string& pattern, std::string origin = "regex");
  // Appends the [start, end) byte ranges of all non-overlapping matches in s (s must be valid UTF-8). After an empty
  // match the search resumes one character later, and an empty match right where the previous match ended is
  // skipped (the find_iter rules of the Rust regex engines).
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  std::shared_ptr<void> code_;
  std::string origin_;
};

}  // namespace bq::tok
