// Inside the tokenizer, shared by its two source files: the pipeline's steps as loaded from tokenizer.json, and
// Tokenizer::Impl, which holds them.
//   tokenizer_load.cpp  tokenizer.json and tokenizer_config.json into an Impl, with their errors
//   tokenizer.cpp       encoding, decoding and the rest of the interface
#pragma once
#include <algorithm>
#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/text.h"
#include "tokenizer/tokenizer.h"

namespace bq {

namespace tok {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";
using Ranges = std::vector<std::pair<size_t, size_t>>;

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// Finds added tokens leftmost-longest, as tokenizers' Aho-Corasick matcher does: at each position, try the
// token lengths that occur for that first byte, longest first (few distinct lengths even with many tokens).
class AddedTokenMatcher {
 public:
  void add(const std::string& content, int token_index) {
    if (content.empty() || !tokens_.emplace(content, token_index).second) return;
    auto& lengths = lengths_by_first_byte_[uint8_t(content[0])];
    auto at = std::lower_bound(lengths.begin(), lengths.end(), content.size(), std::greater<>());
    if (at == lengths.end() || *at != content.size()) lengths.insert(at, content.size());
  }
  bool empty() const { return tokens_.empty(); }
  // First match at or after `from`: {start, token_index}; token_index -1 when none.
  std::pair<size_t, int> find(std::string_view s, size_t from) const {
    for (size_t i = from; i < s.size(); ++i) {
      for (size_t length : lengths_by_first_byte_[uint8_t(s[i])]) {
        if (length > s.size() - i) continue;
        if (auto it = tokens_.find(s.substr(i, length)); it != tokens_.end()) return {i, it->second};
      }
    }
    return {s.size(), -1};
  }

 private:
  tok::TokenMap tokens_;  // content -> index into Impl::added
  std::array<std::vector<size_t>, 256> lengths_by_first_byte_;
};

// A "pattern" object of tokenizer.json: {"String": literal} or {"Regex": pattern}.
struct Pattern {
  std::string literal;
  std::optional<Regex> regex;

  void find_all(std::string_view s, Ranges& out) const {
    if (regex) return regex->find_all(s, out);
    if (literal.empty()) return;
    for (size_t p = s.find(literal); p != std::string_view::npos; p = s.find(literal, p + literal.size()))
      out.emplace_back(p, p + literal.size());
  }
  std::string replace_all(std::string_view s, std::string_view content) const {
    Ranges matches;
    find_all(s, matches);
    std::string out;
    size_t prev = 0;
    for (auto [start, end] : matches) {
      out.append(s.substr(prev, start - prev));
      out.append(content);
      prev = end;
    }
    out.append(s.substr(prev));
    return out;
  }
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
enum class PrependScheme { Always, First, Never };

struct NormalizerStep {
  enum class Kind { Unicode, Prepend, Replace } kind;
  NormalForm form = NormalForm::NFC;
  std::string text;  // Prepend: what to prepend; Replace: the replacement
  Pattern pattern;
};

struct PreTokenizerStep {
  enum class Kind { Split, ByteLevel, Metaspace } kind;
  explicit PreTokenizerStep(Kind k) : kind(k) {}
  Pattern pattern;  // Split, and ByteLevel with use_regex (the GPT-2 pattern)
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false, use_regex = false;  // ByteLevel
  std::string replacement;                           // Metaspace
  PrependScheme prepend = PrependScheme::Always;
  bool split = true;
};

struct DecoderStep {
  enum class Kind { ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip } kind;
  explicit DecoderStep(Kind k) : kind(k) {}
  Pattern pattern;      // Replace
  std::string content;  // Replace: replacement; Metaspace: the replacement character; Strip: the character
  bool prepend = true;  // Metaspace: drop the replacement character from the first token
  size_t start = 0, stop = 0;
};

// A stretch of text on its way through the pipeline. at_start: it begins at offset 0 of the input (Metaspace's
// prepend_scheme "first" needs that).
struct Piece {
  std::string text;
  bool at_start;
};

struct Segment {
  std::string_view text;
  size_t offset;
  int token = -1;  // index into Impl::added, or -1 for plain text
};

}  // namespace tok

struct Tokenizer::Impl {
  std::string origin;
  std::unique_ptr<tok::BpeModel> model;
  std::vector<tok::AddedToken> added;
  tok::AddedTokenMatcher raw_matcher, normalized_matcher;
  std::vector<tok::NormalizerStep> normalizers;
  std::vector<tok::PreTokenizerStep> pre_tokenizers;
  bool has_decoder = false;
  std::vector<tok::DecoderStep> decoders;
  std::vector<int32_t> template_prefix, template_suffix;  // what the post-processor adds around a single sequence

  std::vector<std::string> id_to_token;  // "" where an id names no token
  std::vector<uint8_t> special;
  tok::TokenMap added_ids;

  std::string chat_template, bos_token, eos_token;
  std::string chat_template_origin;  // the file the template came from, for its errors
  std::optional<int32_t> bos_id;
  std::vector<int32_t> eos_ids;
  std::vector<int32_t> add_prefix, add_suffix;  // what encode(add_special=true) adds

  std::string normalize(std::string_view s) const;
  void split_added(std::string_view s, size_t base, const tok::AddedTokenMatcher& m,
                   std::vector<tok::Segment>& out) const;
  void encode_plain(std::string_view text, bool at_start, std::vector<int32_t>& ids) const;
  std::vector<std::string> run_decoders(std::vector<std::string> tokens) const;
};

// The Impl of a tokenizer.json and its tokenizer_config.json (empty: none); errors name the origins.
std::shared_ptr<Tokenizer::Impl> build_tokenizer(std::string_view tokenizer_json, std::string_view config_json,
                                                 const std::string& origin, const std::string& config_origin);

}  // namespace bq
