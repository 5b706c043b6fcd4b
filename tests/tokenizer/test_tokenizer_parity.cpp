// Parity with Hugging Face tokenizers: llama.cpp's reference vocab tests (ids produced by the Python tokenizers)
// and differential tests against @huggingface/tokenizers on real tokenizer.json files.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "core/files.h"
#include "tokenizer/text.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace {

using bq::test::show;

// ggml-vocab-NAME.inp holds strings each followed by "\n__ggml_vocab_test__\n"; .out one line of ids per string.
void check_ggml_vocab(const std::string& name, const std::string& tokenizer_name) {
  auto dir = bq::test::shared_dir() / "data/tokenizer-tests";
  std::string inp = bq::read_file(dir / ("ggml-vocab-" + name + ".inp"));
  std::string out = bq::read_file(dir / ("ggml-vocab-" + name + ".out"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < inp.size();) {
    size_t end = inp.find(sep, pos);
    ASSERT_NE(end, std::string::npos) << "unterminated test string in " << name;
    texts.push_back(inp.substr(pos, end - pos));
    pos = end + sep.size();
  }
  std::vector<std::vector<int32_t>> expected;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream ids(line);
    expected.emplace_back();
    for (int32_t id; ids >> id;) expected.back().push_back(id);
  }
  ASSERT_EQ(texts.size(), expected.size());
  ASSERT_GT(texts.size(), 40u);
  auto tokenizer = bq::Tokenizer::load(bq::test::tokenizer_asset(tokenizer_name));
  for (size_t k = 0; k < texts.size(); ++k) EXPECT_EQ(tokenizer.encode(texts[k]), expected[k]) << show(texts[k]);
}

TEST(TokenizerParity, GgmlVocabLlama3Bpe) {
  BQ_REQUIRE_SHARED("data/tokenizer-tests/ggml-vocab-llama-bpe.inp");
  BQ_REQUIRE_TOKENIZER("llama3");
  check_ggml_vocab("llama-bpe", "llama3");
}

TEST(TokenizerParity, GgmlVocabLlama2Spm) {
  BQ_REQUIRE_SHARED("data/tokenizer-tests/ggml-vocab-llama-spm.inp");
  BQ_REQUIRE_TOKENIZER("llama2");
  check_ggml_vocab("llama-spm", "llama2");
}

// Encodes a few hundred awkward strings with ours and with the JS reference: ids (with and without special
// tokens) and decoded text must be identical, and decoding must give the input back where the tokenizer is
// lossless.
void differential(const std::string& name, uint32_t seed, bool lossless, bool nfc) {
  auto dir = bq::test::tokenizer_asset(name);
  auto tokenizer = bq::Tokenizer::load(dir);
  std::vector<std::string> specials = {"<|begin_of_text|>", "<|eot_id|>", "<|im_end|>", "<|endoftext|>", "<s>",
                                       "</s>", "<unk>", "<think>", "<|fim_prefix|>", "<|start_header_id|>",
                                       "<bos>", "<start_of_turn>", "<end_of_turn>"};
  auto texts = bq::test::random_texts(seed, 400, specials);
  // Strings made of decoded vocabulary entries reach the merges that random text rarely does (and the
  // ignore_merges rule of Llama 3).
  std::mt19937 rng(seed);
  for (int k = 0; k < 200; ++k) {
    std::string s;
    for (int n = 1 + int(rng() % 4); n > 0; --n) {
      int32_t id = int32_t(rng() % uint32_t(tokenizer.vocab_size()));
      if (!tokenizer.is_special(id)) s += tokenizer.decode(std::vector<int32_t>{id});
      if (rng() % 3 == 0) s += ' ';
    }
    if (bq::tok::find_invalid_utf8(s) == std::string::npos) texts.push_back(s);
  }
  texts.insert(texts.end(), {"", " ", "Hello world", " Hello", "\n\n\n", "I'm", "3.14159265358979", "  \t leading",
                             "trailing   ", "ÅÅ Å", "e\xCC\x81t\xC3\xA9", "<s>Hi</s>", "<|begin_of_text|>Hi"});
  std::vector<std::vector<int32_t>> ours;
  for (const auto& t : texts) ours.push_back(tokenizer.encode(t));
  auto ref = bq::test::run_js_reference(dir, texts, ours);
  ASSERT_EQ(ref.ids.size(), texts.size());
  int mismatches = 0;
  for (size_t k = 0; k < texts.size() && mismatches < 10; ++k) {
    bool ok = ours[k] == ref.ids[k] && tokenizer.encode(texts[k], true) == ref.ids_special[k] &&
              tokenizer.decode(ours[k]) == ref.decoded[k];
    EXPECT_EQ(ours[k], ref.ids[k]) << name << " " << show(texts[k]);
    EXPECT_EQ(tokenizer.encode(texts[k], true), ref.ids_special[k]) << name << " " << show(texts[k]);
    EXPECT_EQ(tokenizer.decode(ours[k]), ref.decoded[k]) << name << " " << show(texts[k]);
    if (lossless) {
      bool has_special = false;
      for (const auto& s : specials) has_special |= texts[k].find(s) != std::string::npos;
      std::string want = nfc ? bq::tok::unicode_normalize(texts[k], bq::tok::NormalForm::NFC) : texts[k];
      if (!has_special) {
        EXPECT_EQ(tokenizer.decode(ours[k]), want) << name << " " << show(texts[k]);
      }
    }
    mismatches += !ok;
  }
}

TEST(TokenizerParity, DifferentialLlama3) {
  BQ_REQUIRE_TOKENIZER("llama3");
  BQ_REQUIRE_JS_REFERENCE();
  differential("llama3", 1, true, false);
}

TEST(TokenizerParity, DifferentialLlama31) {
  BQ_REQUIRE_TOKENIZER("llama3_1");
  BQ_REQUIRE_JS_REFERENCE();
  differential("llama3_1", 5, true, false);
}

TEST(TokenizerParity, DifferentialLlama2) {
  BQ_REQUIRE_TOKENIZER("llama2");
  BQ_REQUIRE_JS_REFERENCE();
  differential("llama2", 2, true, false);
}

TEST(TokenizerParity, DifferentialMistral) {
  BQ_REQUIRE_TOKENIZER("mistral");
  BQ_REQUIRE_JS_REFERENCE();
  differential("mistral", 6, true, false);
}

TEST(TokenizerParity, DifferentialQwen3) {
  BQ_REQUIRE_TOKENIZER("qwen3");
  BQ_REQUIRE_JS_REFERENCE();
  differential("qwen3", 3, true, true);
}

// Gemma 3 (MedGemma): 262k SentencePiece-style BPE, spaces replaced by ▁ and split after each, byte fallback.
TEST(TokenizerParity, DifferentialGemma3) {
  BQ_REQUIRE_TOKENIZER("gemma3");
  BQ_REQUIRE_JS_REFERENCE();
  differential("gemma3", 7, true, false);
}

TEST(TokenizerParity, DifferentialCl100k) {
  BQ_REQUIRE_TOKENIZER("gpt35turbo");
  BQ_REQUIRE_JS_REFERENCE();
  differential("gpt35turbo", 4, true, false);
}

// Facts about the real files that the rest of biomedq relies on, checked against the files' own JSON.
TEST(TokenizerParity, SpecialTokensOfRealFiles) {
  BQ_REQUIRE_TOKENIZER("llama3_1");
  BQ_REQUIRE_TOKENIZER("llama2");
  BQ_REQUIRE_TOKENIZER("qwen3");
  auto llama31 = bq::Tokenizer::load(bq::test::tokenizer_asset("llama3_1"));
  EXPECT_EQ(llama31.vocab_size(), 128256);
  EXPECT_EQ(llama31.bos_id(), 128000);
  EXPECT_EQ(llama31.eos_ids(), std::vector<int32_t>{128009});  // <|eot_id|>, the config's eos_token
  EXPECT_TRUE(llama31.add_bos());
  EXPECT_TRUE(llama31.is_special(128009));
  EXPECT_FALSE(llama31.is_special(9906));
  EXPECT_EQ(llama31.id_to_token(128009), "<|eot_id|>");
  EXPECT_EQ(llama31.token_to_id("<|eot_id|>"), 128009);
  EXPECT_NE(llama31.chat_template().find("<|start_header_id|>"), std::string::npos);
  EXPECT_EQ(llama31.decode(llama31.encode("Hi there", true), true), "Hi there");

  auto llama2 = bq::Tokenizer::load(bq::test::tokenizer_asset("llama2"));
  EXPECT_EQ(llama2.bos_token(), "<s>");
  EXPECT_EQ(llama2.eos_token(), "</s>");
  EXPECT_EQ(llama2.bos_id(), 1);
  EXPECT_TRUE(llama2.add_bos());
  EXPECT_EQ(llama2.encode("Hi", true).front(), 1);

  auto qwen3 = bq::Tokenizer::load(bq::test::tokenizer_asset("qwen3"));
  EXPECT_FALSE(qwen3.add_bos());
  EXPECT_EQ(qwen3.eos_ids(), std::vector<int32_t>{*qwen3.token_to_id("<|im_end|>")});
  EXPECT_FALSE(qwen3.is_special(*qwen3.token_to_id("<think>")));  // an added token that is not special
  EXPECT_EQ(qwen3.encode("<think>").size(), 1u);
}

// Gemma 3: <bos> added, <end_of_turn> ends a chat answer, the 262,144 entries of the vocabulary plus its added
// tokens, and the turn markers of its chat template are single special tokens.
TEST(TokenizerParity, Gemma3SpecialTokens) {
  BQ_REQUIRE_TOKENIZER("gemma3");
  auto gemma3 = bq::Tokenizer::load(bq::test::tokenizer_asset("gemma3"));
  EXPECT_TRUE(gemma3.add_bos());
  EXPECT_EQ(gemma3.bos_token(), "<bos>");
  EXPECT_EQ(gemma3.encode("Hi", true).front(), *gemma3.token_to_id("<bos>"));
  EXPECT_EQ(gemma3.eos_ids(), std::vector<int32_t>{*gemma3.token_to_id("<end_of_turn>")});
  EXPECT_GE(gemma3.vocab_size(), 262144);
  for (const char* t : {"<start_of_turn>", "<end_of_turn>"}) {
    EXPECT_EQ(gemma3.encode(t, true).size(), 2u) << t;  // <bos> and the marker
    EXPECT_TRUE(gemma3.is_special(*gemma3.token_to_id(t))) << t;
  }
  EXPECT_NE(gemma3.chat_template().find("<start_of_turn>"), std::string::npos);
}

}  // namespace
