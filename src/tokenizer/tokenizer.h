// Tokenizer for Hugging Face tokenizer.json files (BPE models: byte-level as in Llama 3 / Qwen2 / cl100k, and
// SentencePiece-style as in Llama 2 / Mistral), with the ids Hugging Face `tokenizers` produces.
//
// Pipeline (as in `tokenizers`): added tokens are split out of the text first, then each remaining piece is
// normalized, pre-tokenized and merged by the BPE model; the post-processor adds BOS/EOS on request.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bq {

class Tokenizer {
 public:
  // Loads model_dir/tokenizer.json and, if present, model_dir/tokenizer_config.json (and chat_template.jinja when
  // the config has no template). Malformed input -> bq::Error naming the file and the problem.
  static Tokenizer load(const std::filesystem::path& model_dir);
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json /*may be empty*/,
                             const std::string& origin_for_errors);

  std::vector<int32_t> encode(std::string_view text, bool add_special = false) const;  // invalid UTF-8 -> bq::Error
  // A prompt's ids: BOS added unless the text already starts with it (chat templates write it themselves).
  std::vector<int32_t> encode_prompt(std::string_view prompt) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;   // unknown ids are skipped

  int32_t vocab_size() const;             // max id + 1 over vocab and added tokens
  std::optional<int32_t> bos_id() const;  // tokenizer_config bos_token, else the post-processor's leading token
  std::vector<int32_t> eos_ids() const;   // tokenizer_config eos_token (empty if none)
  std::optional<int32_t> token_to_id(std::string_view tok) const;
  std::string id_to_token(int32_t id) const;  // "" for an id that names no token
  bool is_special(int32_t id) const;
  const std::string& chat_template() const;  // raw Jinja source ("" if none; the "default" one of a named list)
  const std::string& chat_template_origin() const;  // the file it came from, for errors in it
  const std::string& bos_token() const;
  const std::string& eos_token() const;
  bool add_bos() const;  // whether encode(add_special=true) prepends BOS

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Streaming decoder for generation: push ids one by one and get back only complete UTF-8 text. A character split
// across byte tokens is held until complete, and each step decodes with one token of left context so that
// SentencePiece's "strip the leading space" applies to the first token only (the scheme of tokenizers'
// DecodeStream).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  std::string push(int32_t id);
  std::string flush();  // whatever is still held (incomplete bytes come out as U+FFFD); then starts afresh

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::vector<int32_t> ids_;  // ids_[0, prefix_count_) is context already emitted as prefix_
  size_t prefix_count_ = 0;
  std::string prefix_;
};

// A small but real byte-level BPE tokenizer (Llama 3 scheme) for synthetic models: 256 byte tokens, merges learned
// by plain BPE training on an embedded English/biomedical text, then the specials <|begin_of_text|>,
// <|end_of_text|>, <|start_header_id|>, <|end_header_id|>, <|eot_id|> and <|reserved_N|> padding up to exactly
// vocab_size (>= 300). The config carries a Llama-3-style chat template; BOS is added by the post-processor.
struct SyntheticTokenizerFiles {
  std::string tokenizer_json, tokenizer_config_json;
};
SyntheticTokenizerFiles make_synthetic_tokenizer(int32_t vocab_size);

}  // namespace bq
