// tokenizer.json and tokenizer_config.json into a Tokenizer::Impl; every malformed field is an error naming the
// file and the field.
#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/error.h"
#include "core/files.h"
#include "core/json.h"
#include "tokenizer/tokenizer_impl.h"

namespace bq {

using nlohmann::json;
using namespace tok;

namespace {

// What ByteLevel's use_regex splits on: GPT-2's pattern.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

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

}  // namespace

std::shared_ptr<Tokenizer::Impl> build_tokenizer(std::string_view tokenizer_json, std::string_view config_json,
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

Tokenizer Tokenizer::load(const std::filesystem::path& model_dir) {
  fs::path tokenizer_path = model_dir / "tokenizer.json", config_path = model_dir / "tokenizer_config.json";
  std::string config = fs::exists(config_path) ? read_file(config_path, limits::kJsonFileBytes) : std::string();
  auto impl = build_tokenizer(read_file(tokenizer_path, limits::kTokenizerJsonBytes), config, tokenizer_path.string(),
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
  return Tokenizer(build_tokenizer(tokenizer_json, tokenizer_config_json, origin_for_errors,
                         origin_for_errors + " (tokenizer_config.json)"));
}

}  // namespace bq
