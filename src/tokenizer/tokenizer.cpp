// A tokenizer at work: normalizers, added tokens, pre-tokenizers and BPE on the way in; the decoders on the way out.
// Loading is tokenizer_load.cpp's.
#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/tokenizer_impl.h"

namespace bq {

using namespace tok;

namespace {

// Splits pieces on a pattern, keeping delimiters as `behavior` says (tokenizers' NormalizedString::split).
void split_pieces(std::vector<Piece>& pieces, const Pattern& pattern, SplitBehavior behavior, bool invert) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  Ranges matches;
  struct Part {
    size_t start, end;
    bool is_match;
  };
  std::vector<Part> parts, kept;
  for (Piece& piece : pieces) {
    std::string_view s = piece.text;
    matches.clear();
    pattern.find_all(s, matches);
    parts.clear();
    size_t prev = 0;
    for (auto [start, end] : matches) {
      if (prev != start) parts.push_back({prev, start, invert});
      parts.push_back({start, end, !invert});
      prev = end;
    }
    if (prev != s.size()) parts.push_back({prev, s.size(), invert});

    kept.clear();
    bool previous_match = false;
    switch (behavior) {
      case SplitBehavior::Isolated:
        kept = parts;
        break;
      case SplitBehavior::Removed:
        for (const Part& p : parts)
          if (!p.is_match) kept.push_back(p);
        break;
      case SplitBehavior::Contiguous:
        for (const Part& p : parts) {
          if (p.is_match == previous_match && !kept.empty()) kept.back().end = p.end;
          else kept.push_back(p);
          previous_match = p.is_match;
        }
        break;
      case SplitBehavior::MergedWithPrevious:
        for (const Part& p : parts) {
          if (p.is_match && !previous_match && !kept.empty()) kept.back().end = p.end;
          else kept.push_back(p);
          previous_match = p.is_match;
        }
        break;
      case SplitBehavior::MergedWithNext:
        for (size_t k = parts.size(); k-- > 0;) {
          const Part& p = parts[k];
          if (p.is_match && !previous_match && !kept.empty()) kept.back().start = p.start;
          else kept.push_back(p);
          previous_match = p.is_match;
        }
        std::reverse(kept.begin(), kept.end());
        break;
    }
    for (const Part& p : kept)
      if (p.end > p.start) out.push_back({std::string(s.substr(p.start, p.end - p.start)), piece.at_start && p.start == 0});
  }
  pieces = std::move(out);
}

std::string replace_char(std::string_view s, char from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == from) out += to;
    else out += c;
  }
  return out;
}

}  // namespace

// ---- encoding ---------------------------------------------------------------------------------------------------

std::string Tokenizer::Impl::normalize(std::string_view s) const {
  std::string text(s);
  for (const NormalizerStep& n : normalizers) {
    switch (n.kind) {
      case NormalizerStep::Kind::Unicode: text = tok::unicode_normalize(text, n.form); break;
      case NormalizerStep::Kind::Prepend:
        if (!text.empty()) text.insert(0, n.text);
        break;
      case NormalizerStep::Kind::Replace: text = n.pattern.replace_all(text, n.text); break;
    }
  }
  return text;
}

// Splits s into plain text and added tokens, with the lstrip / rstrip / single_word rules of tokenizers'
// AddedVocabulary::find_matches. `base` is the offset of s in the input.
void Tokenizer::Impl::split_added(std::string_view s, size_t base, const AddedTokenMatcher& m,
                                  std::vector<Segment>& out) const {
  auto char_before = [&](size_t pos) {  // code point ending at pos (pos > 0)
    size_t k = pos - 1;
    while (k > 0 && (uint8_t(s[k]) & 0xC0) == 0x80) --k;
    return tok::next_code_point(s, k);
  };
  auto char_at = [&](size_t pos) { return tok::next_code_point(s, pos); };

  size_t done = 0;  // end of what has been emitted
  for (size_t from = 0; from < s.size();) {
    auto [start, index] = m.find(s, from);
    if (index < 0) break;
    const AddedToken& a = added[size_t(index)];
    size_t stop = start + a.content.size();
    from = stop;
    if (a.single_word) {
      bool space_before = start == 0 || !tok::is_alphanumeric(char_before(start));
      bool space_after = stop == s.size() || !tok::is_alphanumeric(char_at(stop));
      if (!space_before || !space_after) continue;
    }
    if (a.lstrip) {
      size_t k = start;
      while (k > done && tok::is_white_space(char_before(k))) {
        do --k; while ((uint8_t(s[k]) & 0xC0) == 0x80);
      }
      start = k;
    }
    if (a.rstrip) {
      while (stop < s.size()) {
        size_t k = stop;
        if (!tok::is_white_space(tok::next_code_point(s, k))) break;
        stop = k;
      }
      from = std::max(from, stop);
    }
    if (done < start) out.push_back({s.substr(done, start - done), base + done});
    out.push_back({s.substr(start, stop - start), base + start, index});
    done = stop;
  }
  if (done < s.size()) out.push_back({s.substr(done), base + done});
}

void Tokenizer::Impl::encode_plain(std::string_view text, bool at_start, std::vector<int32_t>& ids) const {
  if (text.empty()) return;  // as in tokenizers, empty pieces vanish before pre-tokenization
  std::vector<Piece> pieces{{std::string(text), at_start}};
  for (const PreTokenizerStep& p : pre_tokenizers) {
    switch (p.kind) {
      case PreTokenizerStep::Kind::Split: split_pieces(pieces, p.pattern, p.behavior, p.invert); break;
      case PreTokenizerStep::Kind::ByteLevel:
        if (p.add_prefix_space)
          for (Piece& piece : pieces)
            if (piece.text[0] != ' ') piece.text = ' ' + piece.text;
        if (p.use_regex) split_pieces(pieces, p.pattern, SplitBehavior::Isolated, false);
        for (Piece& piece : pieces) piece.text = tok::byte_level_encode(piece.text);
        break;
      case PreTokenizerStep::Kind::Metaspace:
        for (Piece& piece : pieces) {
          piece.text = replace_char(piece.text, ' ', p.replacement);
          bool starts = piece.text.starts_with(p.replacement);
          if (!starts && (p.prepend == PrependScheme::Always || (p.prepend == PrependScheme::First && piece.at_start)))
            piece.text.insert(0, p.replacement);
        }
        if (p.split) {
          Pattern on_replacement{p.replacement, std::nullopt};
          split_pieces(pieces, on_replacement, SplitBehavior::MergedWithNext, false);
        }
        break;
    }
  }
  for (const Piece& piece : pieces) model->encode_word(piece.text, ids);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  const Impl& t = *impl_;
  if (size_t bad = tok::find_invalid_utf8(text); bad != std::string_view::npos)
    fail("{}: cannot encode: the text is not valid UTF-8 (byte {})", t.origin, bad);
  std::vector<int32_t> ids;
  if (add_special) ids = t.add_prefix;
  std::vector<Segment> segments, normalized_segments;
  t.split_added(text, 0, t.raw_matcher, segments);
  for (const Segment& seg : segments) {
    if (seg.token >= 0) {
      ids.push_back(t.added[size_t(seg.token)].id);
      continue;
    }
    std::string normalized = t.normalize(seg.text);
    if (t.normalized_matcher.empty()) {
      t.encode_plain(normalized, seg.offset == 0, ids);
      continue;
    }
    normalized_segments.clear();
    t.split_added(normalized, 0, t.normalized_matcher, normalized_segments);
    for (const Segment& sub : normalized_segments) {
      if (sub.token >= 0) ids.push_back(t.added[size_t(sub.token)].id);
      else t.encode_plain(sub.text, seg.offset == 0 && sub.offset == 0, ids);
    }
  }
  if (add_special) ids.insert(ids.end(), t.add_suffix.begin(), t.add_suffix.end());
  return ids;
}

// ---- decoding ---------------------------------------------------------------------------------------------------

std::vector<std::string> Tokenizer::Impl::run_decoders(std::vector<std::string> tokens) const {
  for (const DecoderStep& d : decoders) {
    switch (d.kind) {
      case DecoderStep::Kind::ByteLevel: {
        // All tokens' bytes as one string; a token with a character outside the byte table contributes its own
        // UTF-8 bytes. Ill-formed UTF-8 becomes U+FFFD.
        std::string bytes;
        for (const std::string& token : tokens) {
          size_t mark = bytes.size();
          bool mapped = true;
          for (size_t i = 0; i < token.size() && mapped;) {
            int b = tok::unicode_to_byte(tok::next_code_point(token, i));
            if (b < 0) mapped = false;
            else bytes += char(b);
          }
          if (!mapped) bytes.replace(mark, std::string::npos, token);
        }
        tokens = {tok::utf8_lossy(bytes)};
        break;
      }
      case DecoderStep::Kind::Metaspace:
        for (size_t k = 0; k < tokens.size(); ++k) {
          std::string out;
          std::string_view token = tokens[k];
          for (size_t i = 0; i < token.size();) {
            if (token.substr(i).starts_with(d.content)) {
              if (!(k == 0 && d.prepend)) out += ' ';
              i += d.content.size();
            } else {
              out += token[i++];
            }
          }
          tokens[k] = std::move(out);
        }
        break;
      case DecoderStep::Kind::Replace:
        for (std::string& token : tokens) token = d.pattern.replace_all(token, d.content);
        break;
      case DecoderStep::Kind::ByteFallback: {
        // Runs of <0xNN> tokens become their bytes; a run that is not valid UTF-8 becomes one U+FFFD per byte.
        std::vector<std::string> out;
        std::string run;
        auto flush_run = [&] {
          if (run.empty()) return;
          if (tok::find_invalid_utf8(run) == std::string::npos) {
            out.push_back(run);
          } else {
            for (size_t k = 0; k < run.size(); ++k) out.emplace_back(kReplacementChar);
          }
          run.clear();
        };
        auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
        for (std::string& token : tokens) {
          if (token.size() == 6 && token.starts_with("<0x") && token[5] == '>' && hex(token[3]) >= 0 &&
              hex(token[4]) >= 0) {
            run += char(hex(token[3]) * 16 + hex(token[4]));
          } else {
            flush_run();
            out.push_back(std::move(token));
          }
        }
        flush_run();
        tokens = std::move(out);
        break;
      }
      case DecoderStep::Kind::Fuse: {
        std::string all;
        for (const std::string& token : tokens) all += token;
        tokens = {std::move(all)};
        break;
      }
      case DecoderStep::Kind::Strip:
        for (std::string& token : tokens) {
          size_t begin = 0, end = token.size();
          for (size_t k = 0; k < d.start && token.substr(begin).starts_with(d.content); ++k) begin += d.content.size();
          for (size_t k = 0; k < d.stop && end >= begin + d.content.size() &&
                             std::string_view(token).substr(0, end).ends_with(d.content);
               ++k)
            end -= d.content.size();
          token = token.substr(begin, end - begin);
        }
        break;
    }
  }
  return tokens;
}

std::vector<int32_t> Tokenizer::encode_prompt(std::string_view prompt) const {
  const bool has_bos = !bos_token().empty() && prompt.starts_with(bos_token());
  return encode(prompt, /*add_special=*/!has_bos);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& t = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= t.id_to_token.size() || t.id_to_token[size_t(id)].empty()) continue;
    if (skip_special && t.special[size_t(id)]) continue;
    tokens.push_back(t.id_to_token[size_t(id)]);
  }
  std::string text;
  if (!t.has_decoder) {
    for (size_t k = 0; k < tokens.size(); ++k) {
      if (k) text += ' ';
      text += tokens[k];
    }
    return text;
  }
  for (const std::string& piece : t.run_decoders(std::move(tokens))) text += piece;
  return text;
}

// ---- the rest of the interface ------------------------------------------------------------------------------------

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->id_to_token.size()); }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::vector<int32_t> Tokenizer::eos_ids() const { return impl_->eos_ids; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
const std::string& Tokenizer::chat_template_origin() const { return impl_->chat_template_origin; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_token; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_token; }
bool Tokenizer::add_bos() const {
  return impl_->bos_id && !impl_->add_prefix.empty() && impl_->add_prefix.front() == *impl_->bos_id;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view tok) const {
  if (auto it = impl_->added_ids.find(tok); it != impl_->added_ids.end()) return it->second;
  if (auto it = impl_->model->vocab().find(tok); it != impl_->model->vocab().end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->id_to_token.size()) return "";
  return impl_->id_to_token[size_t(id)];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->special.size() && impl_->special[size_t(id)];
}

// ---- streaming ------------------------------------------------------------------------------------------------------

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(&tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  std::string text = tokenizer_->decode(ids_, skip_special_);
  // Hold back while the text ends in an incomplete character (decoded as U+FFFD) or nothing new appeared.
  if (text.size() <= prefix_.size() || text.ends_with(kReplacementChar)) return "";
  size_t common = 0;
  while (common < prefix_.size() && text[common] == prefix_[common]) ++common;
  std::string fresh = text.substr(common);
  // Keep only the last emitted token(s) as left context for the next step.
  size_t context = ids_.size() - prefix_count_;
  ids_.erase(ids_.begin(), ids_.begin() + std::ptrdiff_t(prefix_count_));
  prefix_ = tokenizer_->decode(ids_, skip_special_);
  prefix_count_ = context;
  return fresh;
}

std::string StreamDecoder::flush() {
  std::string text = tokenizer_->decode(ids_, skip_special_);
  std::string rest = text.size() > prefix_.size() ? text.substr(prefix_.size()) : std::string();
  ids_.clear();
  prefix_.clear();
  prefix_count_ = 0;
  return rest;
}

}  // namespace bq
