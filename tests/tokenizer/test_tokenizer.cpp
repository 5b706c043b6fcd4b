// Unit tests of the tokenizer: error reporting, a hand-made SentencePiece-style tokenizer with hand-derived
// expectations, added-token rules, streaming decoding, the synthetic tokenizer and the CLI.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "core/error.h"
#include "core/files.h"
#include "tokenizer/text.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace {

using nlohmann::json;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const bq::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A SentencePiece-style tokenizer small enough to work out by hand: byte fallback for everything but
// "▁", "h", "i", "▁h", "▁hi", with Llama 2's normalizer, decoder and template.
json tiny_spm() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) vocab[fmt::format("<0x{:02X}>", b)] = 3 + b;
  vocab["\xE2\x96\x81"] = 259;
  vocab["h"] = 260;
  vocab["i"] = 261;
  vocab["\xE2\x96\x81h"] = 262;
  vocab["\xE2\x96\x81hi"] = 263;
  json added = json::array();
  for (auto [name, id] : {std::pair{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}})
    added.push_back({{"id", id}, {"content", name}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", true}});
  return {
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"vocab", vocab},
        {"merges", {"\xE2\x96\x81 h", "\xE2\x96\x81h i"}}}}};
}

bq::Tokenizer tiny(const json& j = tiny_spm(), const std::string& config = "") {
  return bq::Tokenizer::from_json(j.dump(), config, "tiny/tokenizer.json");
}

TEST(Tokenizer, MalformedFilesNameTheFileAndTheProblem) {
  EXPECT_NE(error_of([] { tiny(json::object(), ""); }).find("tiny/tokenizer.json"), std::string::npos);
  EXPECT_NE(error_of([] { bq::Tokenizer::from_json("{\"model\": ", "", "x.json"); }).find("x.json: invalid JSON"),
            std::string::npos);
  EXPECT_NE(error_of([] { tiny(json::object()); }).find("missing \"model\""), std::string::npos);
  json unigram = tiny_spm();
  unigram["model"]["type"] = "Unigram";
  EXPECT_NE(error_of([&] { tiny(unigram); }).find("model type \"Unigram\" is not supported"), std::string::npos);
  json bad_merge = tiny_spm();
  bad_merge["model"]["merges"].push_back("x y");
  EXPECT_NE(error_of([&] { tiny(bad_merge); }).find("merges[2]"), std::string::npos);
  json bad_normalizer = tiny_spm();
  bad_normalizer["normalizer"] = {{"type", "Precompiled"}};
  EXPECT_NE(error_of([&] { tiny(bad_normalizer); }).find("unsupported type \"Precompiled\""), std::string::npos);
  json bad_regex = tiny_spm();
  bad_regex["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(("}}}, {"behavior", "Isolated"}};
  EXPECT_NE(error_of([&] { tiny(bad_regex); }).find("bad regex"), std::string::npos);
  json wrong_type = tiny_spm();
  wrong_type["model"]["vocab"]["h"] = "seven";
  EXPECT_NE(error_of([&] { tiny(wrong_type); }).find("model.vocab[\"h\"]"), std::string::npos);
  EXPECT_NE(error_of([] { tiny(tiny_spm(), "[1, 2"); }).find("tokenizer_config.json"), std::string::npos);

  auto dir = bq::test::temp_dir("tok-malformed");
  EXPECT_NE(error_of([&] { bq::Tokenizer::load(dir); }).find((dir / "tokenizer.json").string()), std::string::npos);
  bq::write_file_atomic(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": []}}");
  std::string e = error_of([&] { bq::Tokenizer::load(dir); });
  EXPECT_NE(e.find((dir / "tokenizer.json").string()), std::string::npos) << e;
  EXPECT_NE(e.find("vocab"), std::string::npos) << e;
  std::filesystem::remove_all(dir);
}

TEST(Tokenizer, InvalidUtf8IsAnError) {
  auto t = tiny();
  for (std::string bad : {"\xFF", "ab\xC3", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "x\x80y"})
    EXPECT_NE(error_of([&] { t.encode(bad); }).find("not valid UTF-8"), std::string::npos) << bq::test::show(bad);
}

TEST(Tokenizer, SentencePieceStyleByHand) {
  auto t = tiny();
  // "hi hi" -> "▁hi▁hi" -> merges "▁ h" then "▁h i" on both words.
  EXPECT_EQ(t.encode("hi hi"), (std::vector<int32_t>{263, 263}));
  // "ih" -> "▁ih": "▁" and "i" do not merge, "h" stays alone.
  EXPECT_EQ(t.encode("ih"), (std::vector<int32_t>{259, 261, 260}));
  // é is not in the vocabulary: its bytes C3 A9 fall back to <0xC3> <0xA9>.
  EXPECT_EQ(t.encode("é"), (std::vector<int32_t>{259, 3 + 0xC3, 3 + 0xA9}));
  // Special tokens are split out first; each remaining piece gets its own "▁".
  EXPECT_EQ(t.encode("hi<s>hi"), (std::vector<int32_t>{263, 1, 263}));
  EXPECT_EQ(t.encode("hi", true), (std::vector<int32_t>{1, 263}));
  EXPECT_TRUE(t.encode("").empty());
  // Decoding: ▁ -> space, bytes fused back into UTF-8, the one leading space stripped.
  EXPECT_EQ(t.decode(std::vector<int32_t>{263, 259, 3 + 0xC3, 3 + 0xA9, 263}), "hi é hi");
  EXPECT_EQ(t.decode(std::vector<int32_t>{3 + 0xC3}), "\xEF\xBF\xBD");  // an incomplete byte run
  EXPECT_EQ(t.decode(std::vector<int32_t>{1, 263, 2}, true), "hi");
  EXPECT_EQ(t.decode(std::vector<int32_t>{1, 263, 2}), "<s> hi</s>");
  EXPECT_EQ(t.decode(std::vector<int32_t>{263, 99999, -1}), "hi");  // unknown ids are skipped
  EXPECT_EQ(t.vocab_size(), 264);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_TRUE(t.add_bos());
  EXPECT_TRUE(t.is_special(2));
  EXPECT_FALSE(t.is_special(263));
  EXPECT_EQ(t.id_to_token(263), "\xE2\x96\x81hi");
  EXPECT_EQ(t.token_to_id("</s>"), 2);
  EXPECT_FALSE(t.token_to_id("nope").has_value());
}

TEST(Tokenizer, ConfigOverridesTemplateAndNamesTokens) {
  json config = {{"bos_token", {{"content", "<s>"}, {"__type", "AddedToken"}}},
                 {"eos_token", "</s>"},
                 {"add_bos_token", false},
                 {"add_eos_token", true},
                 {"chat_template", json::array({{{"name", "tool_use"}, {"template", "T"}},
                                                {{"name", "default"}, {"template", "D"}}})}};
  auto t = tiny(tiny_spm(), config.dump());
  EXPECT_EQ(t.encode("hi", true), (std::vector<int32_t>{263, 2}));
  EXPECT_FALSE(t.add_bos());
  EXPECT_EQ(t.bos_token(), "<s>");
  EXPECT_EQ(t.eos_token(), "</s>");
  EXPECT_EQ(t.eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(t.chat_template(), "D");
}

TEST(Tokenizer, AddedTokenStripAndSingleWordRules) {
  json j = tiny_spm();
  j["normalizer"] = nullptr;
  auto add = [&](const char* content, int id, bool lstrip, bool rstrip, bool single_word) {
    j["model"]["vocab"][content] = id;
    j["added_tokens"].push_back({{"id", id}, {"content", content}, {"single_word", single_word}, {"lstrip", lstrip},
                                 {"rstrip", rstrip}, {"normalized", false}, {"special", false}});
  };
  add("<L>", 300, true, false, false);
  add("<R>", 301, false, true, false);
  add("hih", 302, false, false, true);
  auto t = tiny(j);
  // lstrip swallows the whitespace before the token, rstrip the whitespace after it.
  EXPECT_EQ(t.encode("h  <L>i"), (std::vector<int32_t>{260, 300, 261}));
  EXPECT_EQ(t.encode("h<R> \t i"), (std::vector<int32_t>{260, 301, 261}));
  // single_word: only where not inside a word.
  EXPECT_EQ(t.encode("hih"), std::vector<int32_t>{302});
  EXPECT_EQ(t.encode("ihih"), (std::vector<int32_t>{261, 260, 261, 260}));
  // Longest match wins at a position.
  add("<L>i", 303, false, false, false);
  EXPECT_EQ(tiny(j).encode("<L>ih"), (std::vector<int32_t>{303, 260}));
}

TEST(Tokenizer, StreamDecoderHoldsIncompleteCharacters) {
  auto files = bq::make_synthetic_tokenizer(300);
  auto t = bq::Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json, "synthetic");
  std::string text = "A h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x8E\x89!";
  bq::StreamDecoder stream(t);
  std::string all;
  for (size_t i = 0; i < text.size(); ++i) {  // ids 0..255 are the byte tokens
    std::string piece = stream.push(int32_t(uint8_t(text[i])));
    all += piece;
    bool completes_character = i + 1 == text.size() || (uint8_t(text[i + 1]) & 0xC0) != 0x80;
    // Inside a multi-byte character nothing comes out; its last byte releases everything so far.
    if (completes_character) EXPECT_EQ(all, text.substr(0, i + 1));
    else EXPECT_EQ(piece, "") << i;
  }
  all += stream.flush();
  EXPECT_EQ(all, text);

  // The first three bytes of the emoji give nothing; the fourth gives the whole character.
  bq::StreamDecoder emoji(t);
  EXPECT_EQ(emoji.push(0xF0), "");
  EXPECT_EQ(emoji.push(0x9F), "");
  EXPECT_EQ(emoji.push(0x8E), "");
  EXPECT_EQ(emoji.push(0x89), "\xF0\x9F\x8E\x89");
  // A dangling lead byte comes out as U+FFFD on flush.
  EXPECT_EQ(emoji.push(0xE4), "");
  EXPECT_EQ(emoji.flush(), "\xEF\xBF\xBD");
}

TEST(Tokenizer, StreamDecoderKeepsSentencePieceSpaces) {
  auto t = tiny();
  bq::StreamDecoder stream(t, /*skip_special=*/true);
  std::vector<std::string> pieces;
  for (int32_t id : {1, 263, 263, 259, 3 + 0xC3, 3 + 0xA9, 263, 2}) pieces.push_back(stream.push(id));
  pieces.push_back(stream.flush());
  // The first word loses its "▁" (leading-space strip); later ones keep it; é appears only when complete.
  EXPECT_EQ(pieces, (std::vector<std::string>{"", "hi", " hi", " ", "", "é", " hi", "", ""}));
}

TEST(Tokenizer, SyntheticTokenizerIsExactAndRoundTrips) {
  EXPECT_NE(error_of([] { bq::make_synthetic_tokenizer(299); }).find("300"), std::string::npos);
  for (int32_t vocab_size : {300, 512, 4096}) {
    auto files = bq::make_synthetic_tokenizer(vocab_size);
    auto t = bq::Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json, "synthetic");
    ASSERT_EQ(t.vocab_size(), vocab_size);
    json j = json::parse(files.tokenizer_json);
    int32_t first_special = vocab_size - int32_t(j["added_tokens"].size());
    EXPECT_EQ(t.id_to_token(first_special), "<|begin_of_text|>");
    EXPECT_EQ(t.id_to_token(first_special + 4), "<|eot_id|>");
    if (vocab_size > first_special + 5) {
      EXPECT_EQ(t.id_to_token(vocab_size - 1).rfind("<|reserved_", 0), 0u);
    }
    for (int32_t id = first_special; id < vocab_size; ++id) EXPECT_TRUE(t.is_special(id));
    EXPECT_EQ(t.id_to_token(65), "A");  // byte tokens in byte order, GPT-2's byte-level alphabet
    EXPECT_EQ(t.id_to_token(32), "\xC4\xA0");
    EXPECT_EQ(t.bos_id(), first_special);
    EXPECT_EQ(t.eos_ids(), std::vector<int32_t>{first_special + 4});
    EXPECT_TRUE(t.add_bos());
    EXPECT_FALSE(t.chat_template().empty());
    EXPECT_GT(j["model"]["merges"].size(), 30u);
    std::string sentence = "The patients with chronic kidney disease received treatment.";
    if (vocab_size >= 512) {
      EXPECT_LT(t.encode(sentence).size(), sentence.size() / 2);  // the merges compress trained text
    }
    for (const std::string& s : bq::test::random_texts(7, 100, {"<|eot_id|>"})) {
      auto ids = t.encode(s);
      for (int32_t id : ids) ASSERT_LT(id, vocab_size);
      EXPECT_EQ(t.decode(ids), s) << bq::test::show(s);
    }
    EXPECT_EQ(t.encode("<|eot_id|>hi", true).at(1), first_special + 4);
  }
}

TEST(Tokenizer, SyntheticTokenizerMatchesReference) {
  BQ_REQUIRE_JS_REFERENCE();
  auto files = bq::make_synthetic_tokenizer(400);
  auto dir = bq::test::temp_dir("tok-synthetic");
  bq::write_file_atomic(dir / "tokenizer.json", files.tokenizer_json);
  bq::write_file_atomic(dir / "tokenizer_config.json", files.tokenizer_config_json);
  auto t = bq::Tokenizer::load(dir);
  auto texts = bq::test::random_texts(11, 200, {"<|begin_of_text|>", "<|eot_id|>", "<|reserved_3|>"});
  std::vector<std::vector<int32_t>> ours;
  for (const auto& s : texts) ours.push_back(t.encode(s));
  auto ref = bq::test::run_js_reference(dir, texts, ours);
  ASSERT_EQ(ref.ids.size(), texts.size());
  for (size_t k = 0; k < texts.size(); ++k) {
    EXPECT_EQ(ours[k], ref.ids[k]) << bq::test::show(texts[k]);
    EXPECT_EQ(t.encode(texts[k], true), ref.ids_special[k]) << bq::test::show(texts[k]);
    EXPECT_EQ(t.decode(ours[k]), ref.decoded[k]) << bq::test::show(texts[k]);
  }
  std::filesystem::remove_all(dir);
}

TEST(Tokenizer, CliTokenizeAndDetokenize) {
  auto files = bq::make_synthetic_tokenizer(300);
  auto dir = bq::test::temp_dir("tok-cli");
  bq::write_file_atomic(dir / "tokenizer.json", files.tokenizer_json);
  bq::write_file_atomic(dir / "chat_template.jinja", "{{ bos_token }}");
  auto t = bq::Tokenizer::load(dir);
  EXPECT_EQ(t.chat_template(), "{{ bos_token }}");  // no tokenizer_config.json: the template comes from its own file
  std::string text = "Hello, world: 42 ünïcode";
  bq::write_file_atomic(dir / "in.txt", text);
  std::string bin = bq::test::biomedq_binary().string(), out;
  ASSERT_EQ(bq::test::run_command(bin + " tokenize --model '" + dir.string() + "' --file '" +
                                      (dir / "in.txt").string() + "' --add-special", &out), 0) << out;
  auto ids = json::parse(out).get<std::vector<int32_t>>();
  EXPECT_EQ(ids, t.encode(text, true));
  std::string list;
  for (size_t k = 1; k < ids.size(); ++k) {
    if (k > 1) list += ',';
    list += std::to_string(ids[k]);
  }
  ASSERT_EQ(bq::test::run_command(bin + " detokenize --model '" + dir.string() + "' --ids " + list, &out), 0) << out;
  EXPECT_EQ(out, text + "\n");
  EXPECT_NE(bq::test::run_command(bin + " detokenize --model '" + dir.string() + "' --ids 1,x", &out), 0);
  EXPECT_NE(out.find("not a token id"), std::string::npos) << out;
  EXPECT_NE(bq::test::run_command(bin + " tokenize --model '" + (dir / "nope").string() + "' --text hi", &out), 0);
  EXPECT_NE(out.find("nope/tokenizer.json"), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}

}  // namespace

namespace {

TEST(TokenizerText, RegexSyntaxAndMatchIteration) {
  auto matches = [](const std::string& pattern, std::string_view s) {
    std::vector<std::pair<size_t, size_t>> out;
    bq::tok::Regex(pattern).find_all(s, out);
    return out;
  };
  using M = std::vector<std::pair<size_t, size_t>>;
  EXPECT_EQ(matches("\\u0041+", "xAAx"), (M{{1, 3}}));  // Oniguruma's \uHHHH
  EXPECT_EQ(matches("\\x{41}+", "xAAx"), (M{{1, 3}}));
  EXPECT_EQ(matches("\\\\u0041", "\\u0041"), (M{{0, 6}}));  // an escaped backslash stays literal
  EXPECT_EQ(matches("\\p{N}{1,3}", "12345"), (M{{0, 3}, {3, 5}}));
  EXPECT_EQ(matches("\\s+(?!\\S)|\\s+", "a   b"), (M{{1, 3}, {3, 4}}));
  EXPECT_EQ(matches("(?i:'s)", "it'S"), (M{{2, 4}}));
  // Empty matches: one per position, none right after a non-empty match, stepping over whole characters.
  EXPECT_EQ(matches("x*", "\xC3\xA9x"), (M{{0, 0}, {2, 3}}));
}

TEST(TokenizerText, LossyUtf8ReplacesMaximalSubparts) {
  EXPECT_EQ(bq::tok::utf8_lossy("a\xF0\x9F\x8E"), "a\xEF\xBF\xBD");                     // truncated 4-byte form
  EXPECT_EQ(bq::tok::utf8_lossy("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");               // overlong: each byte
  EXPECT_EQ(bq::tok::utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(bq::tok::utf8_lossy("\xE4\xB8\x96!"), "\xE4\xB8\x96!");
}

}  // namespace
