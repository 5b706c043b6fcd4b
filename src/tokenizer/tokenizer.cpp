#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>

#include "core/error.h"
#include "core/files.h"
#include "core/json.h"
#include "tokenizer/bpe.h"
#include "tokenizer/text.h"

namespace bq {

using nlohmann::json;
using tok::NormalForm;
using tok::Regex;

namespace {

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
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

}  // namespace

struct Tokenizer::Impl {
  std::string origin;
  std::unique_ptr<tok::BpeModel> model;
  std::vector<AddedToken> added;
  AddedTokenMatcher raw_matcher, normalized_matcher;
  std::vector<NormalizerStep> normalizers;
  std::vector<PreTokenizerStep> pre_tokenizers;
  bool has_decoder = false;
  std::vector<DecoderStep> decoders;
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
  void split_added(std::string_view s, size_t base, const AddedTokenMatcher& m, std::vector<Segment>& out) const;
  void encode_plain(std::string_view text, bool at_start, std::vector<int32_t>& ids) const;
  std::vector<std::string> run_decoders(std::vector<std::string> tokens) const;
};

namespace {

// ---- loading --------------------------------------------------------------------------------------------------

struct Loader {
  const std::string& origin;

  [[noreturn]] void bad(std::string_view where, std::string_view problem) const {
    fail("{}: {}: {}", origin, where, problem);
  }
  const json& field(const json& obj, const char* key, std::string_view where) const {
    if (!obj.is_object() || !obj.contains(key)) bad(where, fmt::format("missing \"{}\"", key));
    return obj[key];
  }
  std::string str(const json& obj, const char* key, std::string_view where) const {
    const json& v = field(obj, key, where);
    if (!v.is_string()) bad(where, fmt::format("\"{}\" is not a string", key));
    return v.get<std::string>();
  }
  bool flag(const json& obj, const char* key, bool fallback) const {
    if (!obj.is_object() || !obj.contains(key) || obj[key].is_null()) return fallback;
    if (!obj[key].is_boolean()) bad(key, "not a boolean");
    return obj[key].get<bool>();
  }
  size_t count(const json& obj, const char* key, size_t fallback, std::string_view where) const {
    if (!obj.contains(key) || obj[key].is_null()) return fallback;
    if (!obj[key].is_number_unsigned()) bad(where, fmt::format("\"{}\" is not a count", key));
    return obj[key].get<size_t>();
  }
  std::string type_of(const json& obj, std::string_view where) const { return str(obj, "type", where); }

  Pattern pattern(const json& obj, std::string_view where) const {
    const json& p = field(obj, "pattern", where);
    Pattern out;
    if (p.is_object() && p.contains("String") && p["String"].is_string()) {
      out.literal = p["String"].get<std::string>();
    } else if (p.is_object() && p.contains("Regex") && p["Regex"].is_string()) {
      try {
        out.regex.emplace(p["Regex"].get<std::string>(), origin);
      } catch (const Error& e) {
        bad(where, e.what());
      }
    } else {
      bad(where, "pattern is neither {\"String\": ...} nor {\"Regex\": ...}");
    }
    return out;
  }

  // Sequences are flattened: applying a sequence is applying its members in order.
  void normalizer(const json& n, std::vector<NormalizerStep>& out) const {
    if (n.is_null()) return;
    std::string type = type_of(n, "normalizer");
    using K = NormalizerStep::Kind;
    if (type == "Sequence") {
      const json& list = field(n, "normalizers", "normalizer Sequence");
      if (!list.is_array()) bad("normalizer Sequence", "\"normalizers\" is not an array");
      for (const json& member : list) normalizer(member, out);
    } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
      NormalForm form = type == "NFC" ? NormalForm::NFC : type == "NFD" ? NormalForm::NFD
                        : type == "NFKC" ? NormalForm::NFKC : NormalForm::NFKD;
      out.push_back({K::Unicode, form, "", {}});
    } else if (type == "Prepend") {
      out.push_back({K::Prepend, NormalForm::NFC, str(n, "prepend", "normalizer Prepend"), {}});
    } else if (type == "Replace") {
      out.push_back({K::Replace, NormalForm::NFC, str(n, "content", "normalizer Replace"),
                     pattern(n, "normalizer Replace")});
    } else {
      bad("normalizer", fmt::format("unsupported type \"{}\"", type));
    }
  }

  void pre_tokenizer(const json& p, std::vector<PreTokenizerStep>& out) const {
    if (p.is_null()) return;
    std::string type = type_of(p, "pre_tokenizer");
    using K = PreTokenizerStep::Kind;
    if (type == "Sequence") {
      const json& list = field(p, "pretokenizers", "pre_tokenizer Sequence");
      if (!list.is_array()) bad("pre_tokenizer Sequence", "\"pretokenizers\" is not an array");
      for (const json& member : list) pre_tokenizer(member, out);
    } else if (type == "Split") {
      PreTokenizerStep s{K::Split};
      s.pattern = pattern(p, "pre_tokenizer Split");
      std::string behavior = str(p, "behavior", "pre_tokenizer Split");
      if (behavior == "Removed") s.behavior = SplitBehavior::Removed;
      else if (behavior == "Isolated") s.behavior = SplitBehavior::Isolated;
      else if (behavior == "MergedWithPrevious") s.behavior = SplitBehavior::MergedWithPrevious;
      else if (behavior == "MergedWithNext") s.behavior = SplitBehavior::MergedWithNext;
      else if (behavior == "Contiguous") s.behavior = SplitBehavior::Contiguous;
      else bad("pre_tokenizer Split", fmt::format("unknown behavior \"{}\"", behavior));
      s.invert = flag(p, "invert", false);
      out.push_back(std::move(s));
    } else if (type == "ByteLevel") {
      PreTokenizerStep s{K::ByteLevel};
      s.add_prefix_space = flag(p, "add_prefix_space", true);
      s.use_regex = flag(p, "use_regex", true);
      if (s.use_regex) s.pattern.regex.emplace(std::string(kGpt2Pattern));
      out.push_back(std::move(s));
    } else if (type == "Metaspace") {
      out.push_back(metaspace(p, "pre_tokenizer Metaspace"));
    } else {
      bad("pre_tokenizer", fmt::format("unsupported type \"{}\"", type));
    }
  }

  PreTokenizerStep metaspace(const json& p, std::string_view where) const {
    PreTokenizerStep s{PreTokenizerStep::Kind::Metaspace};
    s.replacement = p.contains("replacement") ? str(p, "replacement", where) : "\xE2\x96\x81";
    size_t n = 0;
    if (tok::find_invalid_utf8(s.replacement) != std::string::npos || s.replacement.empty() ||
        (tok::next_code_point(s.replacement, n), n != s.replacement.size()))
      bad(where, "\"replacement\" must be one character");
    // Older files say add_prefix_space instead of prepend_scheme.
    s.prepend = flag(p, "add_prefix_space", true) ? PrependScheme::Always : PrependScheme::Never;
    if (p.contains("prepend_scheme") && !p["prepend_scheme"].is_null()) {
      std::string scheme = str(p, "prepend_scheme", where);
      if (scheme == "always") s.prepend = PrependScheme::Always;
      else if (scheme == "first") s.prepend = PrependScheme::First;
      else if (scheme == "never") s.prepend = PrependScheme::Never;
      else bad(where, fmt::format("unknown prepend_scheme \"{}\"", scheme));
    }
    s.split = flag(p, "split", true);
    return s;
  }

  void decoder(const json& d, std::vector<DecoderStep>& out) const {
    std::string type = type_of(d, "decoder");
    using K = DecoderStep::Kind;
    if (type == "Sequence") {
      const json& list = field(d, "decoders", "decoder Sequence");
      if (!list.is_array()) bad("decoder Sequence", "\"decoders\" is not an array");
      for (const json& member : list) decoder(member, out);
    } else if (type == "ByteLevel") {
      out.emplace_back(K::ByteLevel);
    } else if (type == "Metaspace") {
      PreTokenizerStep m = metaspace(d, "decoder Metaspace");
      DecoderStep s{K::Metaspace};
      s.content = m.replacement;
      s.prepend = m.prepend != PrependScheme::Never;
      out.push_back(std::move(s));
    } else if (type == "Replace") {
      DecoderStep s{K::Replace};
      s.pattern = pattern(d, "decoder Replace");
      s.content = str(d, "content", "decoder Replace");
      out.push_back(std::move(s));
    } else if (type == "ByteFallback") {
      out.emplace_back(K::ByteFallback);
    } else if (type == "Fuse") {
      out.emplace_back(K::Fuse);
    } else if (type == "Strip") {
      DecoderStep s{K::Strip};
      s.content = str(d, "content", "decoder Strip");
      size_t n = 0;
      if (s.content.empty() || tok::find_invalid_utf8(s.content) != std::string::npos ||
          (tok::next_code_point(s.content, n), n != s.content.size()))
        bad("decoder Strip", "\"content\" must be one character");
      s.start = count(d, "start", 0, "decoder Strip");
      s.stop = count(d, "stop", 0, "decoder Strip");
      out.push_back(std::move(s));
    } else {
      bad("decoder", fmt::format("unsupported type \"{}\"", type));
    }
  }

  // Collects the ids the post-processor puts before and after a single sequence.
  void post_processor(const json& p, std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) const {
    if (p.is_null()) return;
    std::string type = type_of(p, "post_processor");
    if (type == "ByteLevel") return;  // only adjusts offsets
    if (type == "Sequence") {
      const json& list = field(p, "processors", "post_processor Sequence");
      if (!list.is_array()) bad("post_processor Sequence", "\"processors\" is not an array");
      for (const json& member : list) post_processor(member, prefix, suffix);
    } else if (type == "TemplateProcessing") {
      const json& single = field(p, "single", "post_processor TemplateProcessing");
      const json& specials = field(p, "special_tokens", "post_processor TemplateProcessing");
      if (!single.is_array()) bad("post_processor TemplateProcessing", "\"single\" is not an array");
      bool seen_sequence = false;
      for (const json& piece : single) {
        if (piece.is_object() && piece.contains("Sequence")) {
          seen_sequence = true;
        } else if (piece.is_object() && piece.contains("SpecialToken")) {
          std::string name = str(piece["SpecialToken"], "id", "post_processor TemplateProcessing");
          if (!specials.is_object() || !specials.contains(name) || !specials[name].contains("ids") ||
              !specials[name]["ids"].is_array())
            bad("post_processor TemplateProcessing", fmt::format("special token \"{}\" has no ids", name));
          for (const json& id : specials[name]["ids"]) {
            if (!id.is_number_unsigned() || id.get<uint64_t>() > INT32_MAX)
              bad("post_processor TemplateProcessing", fmt::format("bad id for \"{}\"", name));
            (seen_sequence ? suffix : prefix).push_back(id.get<int32_t>());
          }
        } else {
          bad("post_processor TemplateProcessing", "\"single\" holds neither Sequence nor SpecialToken");
        }
      }
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
      auto token_id = [&](const char* key) {
        const json& pair = field(p, key, "post_processor");
        if (!pair.is_array() || pair.size() != 2 || !pair[1].is_number_unsigned() || pair[1].get<uint64_t>() > INT32_MAX)
          bad("post_processor", fmt::format("\"{}\" is not [token, id]", key));
        return pair[1].get<int32_t>();
      };
      prefix.push_back(token_id("cls"));
      suffix.push_back(token_id("sep"));
    } else {
      bad("post_processor", fmt::format("unsupported type \"{}\"", type));
    }
  }
};

// bos_token / eos_token in tokenizer_config.json: a string, or an AddedToken object with "content".
std::string config_token(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return "";
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

std::shared_ptr<Tokenizer::Impl> build(std::string_view tokenizer_json, std::string_view config_json,
                                             const std::string& origin, const std::string& config_origin) {
  auto t = std::make_shared<Tokenizer::Impl>();
  t->origin = origin;
  json root = parse_json(tokenizer_json, origin);
  json config = config_json.empty() ? json::object() : parse_json(config_json, config_origin);
  try {
    Loader in{origin};
    if (!root.is_object()) fail("{}: not a JSON object", origin);
    const json& model = in.field(root, "model", "tokenizer.json");
    std::string type = model.contains("type") ? in.type_of(model, "model") : "BPE";
    if (type != "BPE") fail("{}: model type \"{}\" is not supported (only BPE)", origin, type);
    t->model = std::make_unique<tok::BpeModel>(model, origin);

    if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
      if (!root["added_tokens"].is_array()) fail("{}: added_tokens is not an array", origin);
      for (const json& a : root["added_tokens"]) {
        AddedToken token;
        const json& id = in.field(a, "id", "added_tokens");
        if (!id.is_number_unsigned() || id.get<uint64_t>() > INT32_MAX) fail("{}: added_tokens: bad id", origin);
        token.id = id.get<int32_t>();
        token.content = in.str(a, "content", "added_tokens");
        token.special = in.flag(a, "special", false);
        token.lstrip = in.flag(a, "lstrip", false);
        token.rstrip = in.flag(a, "rstrip", false);
        token.single_word = in.flag(a, "single_word", false);
        token.normalized = in.flag(a, "normalized", !token.special);
        t->added.push_back(std::move(token));
      }
    }

    in.normalizer(root.value("normalizer", json()), t->normalizers);
    in.pre_tokenizer(root.value("pre_tokenizer", json()), t->pre_tokenizers);
    json decoder = root.value("decoder", json());
    t->has_decoder = !decoder.is_null();
    if (t->has_decoder) in.decoder(decoder, t->decoders);
    in.post_processor(root.value("post_processor", json()), t->template_prefix, t->template_suffix);

    // Added tokens marked "normalized" are matched in normalized text, so their own text is normalized too.
    for (size_t k = 0; k < t->added.size(); ++k) {
      AddedToken& a = t->added[k];
      if (a.normalized && !t->normalizers.empty())
        t->normalized_matcher.add(t->normalize(a.content), int(k));
      else
        t->raw_matcher.add(a.content, int(k));
    }

    // Id table over the model vocabulary and the added tokens (which win on a shared id, as in tokenizers).
    int64_t max_id = -1;
    for (const auto& [token, id] : t->model->vocab()) max_id = std::max<int64_t>(max_id, id);
    for (const AddedToken& a : t->added) max_id = std::max<int64_t>(max_id, a.id);
    size_t entries = t->model->vocab().size() + t->added.size();
    if (max_id >= int64_t(2 * entries + 65536)) fail("{}: token ids are implausibly sparse (max id {})", origin, max_id);
    t->id_to_token.assign(size_t(max_id + 1), "");
    t->special.assign(size_t(max_id + 1), 0);
    for (const auto& [token, id] : t->model->vocab()) t->id_to_token[size_t(id)] = token;
    for (const AddedToken& a : t->added) {
      t->id_to_token[size_t(a.id)] = a.content;
      t->special[size_t(a.id)] = a.special;
      t->added_ids[a.content] = a.id;
    }
  } catch (const json::exception& e) {
    fail("{}: {}", origin, e.what());
  }

  try {
    if (!config.is_object()) fail("{}: not a JSON object", config_origin);
    auto id_of = [&](const std::string& s) -> std::optional<int32_t> {
      if (auto it = t->added_ids.find(s); it != t->added_ids.end()) return it->second;
      if (auto it = t->model->vocab().find(s); it != t->model->vocab().end()) return it->second;
      return std::nullopt;
    };
    if (config.contains("chat_template")) {
      t->chat_template_origin = config_origin;
      const json& ct = config["chat_template"];
      if (ct.is_string()) {
        t->chat_template = ct.get<std::string>();
      } else if (ct.is_array()) {
        for (const json& named : ct)
          if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
              named["template"].is_string())
            t->chat_template = named["template"].get<std::string>();
      }
    }
    t->bos_token = config_token(config, "bos_token");
    t->eos_token = config_token(config, "eos_token");
    if (!t->bos_token.empty()) {
      t->bos_id = id_of(t->bos_token);
      if (!t->bos_id) fail("{}: bos_token \"{}\" is not a token", config_origin, t->bos_token);
    } else if (!t->template_prefix.empty()) {
      t->bos_id = t->template_prefix.front();
    }
    if (!t->eos_token.empty()) {
      auto eos = id_of(t->eos_token);
      if (!eos) fail("{}: eos_token \"{}\" is not a token", config_origin, t->eos_token);
      t->eos_ids.push_back(*eos);
    }
    // add_bos_token / add_eos_token, when given, replace the post-processor's template (as transformers' Llama
    // tokenizers rebuild it from them).
    bool has_bos_flag = config.contains("add_bos_token") && config["add_bos_token"].is_boolean();
    bool has_eos_flag = config.contains("add_eos_token") && config["add_eos_token"].is_boolean();
    if (has_bos_flag || has_eos_flag) {
      if (has_bos_flag && config["add_bos_token"].get<bool>()) {
        if (!t->bos_id) fail("{}: add_bos_token is set but there is no bos_token", config_origin);
        t->add_prefix.push_back(*t->bos_id);
      }
      if (has_eos_flag && config["add_eos_token"].get<bool>()) {
        if (t->eos_ids.empty()) fail("{}: add_eos_token is set but there is no eos_token", config_origin);
        t->add_suffix.push_back(t->eos_ids.front());
      }
    } else {
      t->add_prefix = t->template_prefix;
      t->add_suffix = t->template_suffix;
    }
  } catch (const json::exception& e) {
    fail("{}: {}", config_origin, e.what());
  }
  return t;
}

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

Tokenizer Tokenizer::load(const std::filesystem::path& model_dir) {
  fs::path tokenizer_path = model_dir / "tokenizer.json", config_path = model_dir / "tokenizer_config.json";
  std::string config = fs::exists(config_path) ? read_file(config_path, limits::kJsonFileBytes) : std::string();
  auto impl = build(read_file(tokenizer_path, limits::kTokenizerJsonBytes), config, tokenizer_path.string(),
                    config_path.string());
  // Newer checkpoints keep the chat template in its own file instead of tokenizer_config.json.
  if (fs::path jinja = model_dir / "chat_template.jinja"; impl->chat_template.empty() && fs::exists(jinja)) {
    impl->chat_template = read_file(jinja, limits::kChatTemplateBytes);
    impl->chat_template_origin = jinja.string();
  }
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                               const std::string& origin_for_errors) {
  return Tokenizer(build(tokenizer_json, tokenizer_config_json, origin_for_errors,
                         origin_for_errors + " (tokenizer_config.json)"));
}

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
