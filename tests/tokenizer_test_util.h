// Helpers for the tokenizer tests: downloaded assets (scripts/fetch-test-assets.sh), the JS reference tokenizer
// (@huggingface/tokenizers run by tests/tokenizer_reference.mjs) and a seeded generator of awkward test strings.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "tokenizer/text.h"

namespace bq::test {

inline std::filesystem::path test_assets_dir() {
  if (const char* e = std::getenv("BIOMEDQ_TEST_ASSETS"); e && *e) return e;
  return source_dir() / "build/test-assets";
}

inline std::filesystem::path tokenizer_asset(const std::string& name) {
  return test_assets_dir() / "tokenizers" / name;
}

#define BQ_REQUIRE_TOKENIZER(name)                                                                          \
  do {                                                                                                      \
    if (!std::filesystem::exists(bq::test::tokenizer_asset(name) / "tokenizer.json"))                       \
      GTEST_SKIP() << bq::test::tokenizer_asset(name) << " missing: run scripts/fetch-test-assets.sh";     \
  } while (0)

#define BQ_REQUIRE_JS_REFERENCE()                                                                           \
  do {                                                                                                      \
    if (bq::test::run_command("node --version") != 0)                                                       \
      GTEST_SKIP() << "node not found: skipping the comparison with @huggingface/tokenizers";               \
    if (!std::filesystem::exists(bq::test::test_assets_dir() / "node_modules/@huggingface/tokenizers"))     \
      GTEST_SKIP() << "@huggingface/tokenizers not installed: run scripts/fetch-test-assets.sh";            \
  } while (0)

struct ReferenceResults {
  std::vector<std::vector<int32_t>> ids, ids_special;
  std::vector<std::string> decoded;
};

// Runs the JS reference once over all texts (and id lists to decode). Fails the test on any problem.
inline ReferenceResults run_js_reference(const std::filesystem::path& model_dir, const std::vector<std::string>& texts,
                                         const std::vector<std::vector<int32_t>>& to_decode = {}) {
  auto dir = temp_dir("tokref");
  nlohmann::json in = {{"texts", texts}, {"decode", to_decode}};
  std::ofstream(dir / "in.json") << in.dump();
  std::string cmd = "node '" + (source_dir() / "tests/tokenizer_reference.mjs").string() + "' '" +
                    test_assets_dir().string() + "' '" + model_dir.string() + "' '" + (dir / "in.json").string() +
                    "' '" + (dir / "out.json").string() + "'";
  std::string output;
  int rc = run_command(cmd, &output);
  ReferenceResults r;
  EXPECT_EQ(rc, 0) << cmd << "\n" << output;
  if (rc != 0) return r;
  std::ifstream f(dir / "out.json");
  nlohmann::json out = nlohmann::json::parse(f);
  r.ids = out["ids"].get<std::vector<std::vector<int32_t>>>();
  r.ids_special = out["ids_special"].get<std::vector<std::vector<int32_t>>>();
  r.decoded = out["decoded"].get<std::vector<std::string>>();
  std::filesystem::remove_all(dir);
  return r;
}

// Escapes a string for failure messages.
inline std::string show(const std::string& s) { return nlohmann::json(s).dump(); }

// Seeded random strings mixing what trips tokenizers up: words, digit runs, whitespace runs, contractions,
// punctuation, CJK, emoji (with ZWJ and modifiers), combining marks, Arabic/Hebrew/Devanagari/Thai/Cyrillic,
// NFC-vs-NFD forms, unusual whitespace, control characters and embedded special-token strings.
inline std::vector<std::string> random_texts(uint32_t seed, int count, const std::vector<std::string>& specials) {
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return int(rng() % uint32_t(n)); };
  auto cp = [](std::string& s, uint32_t c) { tok::append_utf8(s, c); };
  auto range = [&](std::string& s, uint32_t lo, uint32_t hi) { cp(s, lo + uint32_t(pick(int(hi - lo + 1)))); };
  const std::vector<std::string> words = {"the", "The", "patient", "HELLO", "aspirin", "TP53", "non-small-cell",
                                          "x", "I", "hypothyroidism", "Mg2+", "IL-6", "pH", "mRNA", "don", "we"};
  const std::vector<std::string> contractions = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'RE", "'Ll",
                                                 "n't", "'", "''", "`"};
  const std::vector<std::string> punctuation = {".", ",", "!", "?", "...", "--", "(", ")", "[1]", "{\"a\": 1}", "#",
                                                "$%^&*", "->", "=>", "@CHEMICAL$", "//", "\\", "|", "~", "<", ">",
                                                "<|", "|>", "<s", "/s>"};
  const std::vector<std::string> spaces = {" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t\n",
                                           "\xC2\xA0", "\xE3\x80\x80", "\xE2\x80\x89", "\xC2\x85", "\xE2\x80\xA8",
                                           "\x0B", "\x0C", "\r"};
  const std::vector<std::string> nfc_nfd = {"\xC3\xA9", "e\xCC\x81", "\xC3\x85", "A\xCC\x8A", "\xED\x95\x9C",
                                            "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB", "\xE1\xBA\xA0\xCC\x82", "\xEF\xAC\x81",
                                            "\xE2\x84\xAB", "o\xCC\x88\xCC\x81"};
  std::vector<std::string> texts;
  for (int t = 0; t < count; ++t) {
    std::string s;
    int parts = 1 + pick(t % 10 == 0 ? 60 : 12);
    for (int p = 0; p < parts; ++p) {
      switch (pick(16)) {
        case 0: case 1: s += words[size_t(pick(int(words.size())))]; break;
        case 2:
          for (int k = 1 + pick(8); k > 0; --k) cp(s, uint32_t(pick(2) ? 'a' + pick(26) : 'A' + pick(26)));
          break;
        case 3: for (int k = 1 + pick(12); k > 0; --k) s += char('0' + pick(10)); break;
        case 4: case 5: s += spaces[size_t(pick(int(spaces.size())))]; break;
        case 6: s += contractions[size_t(pick(int(contractions.size())))]; break;
        case 7: s += punctuation[size_t(pick(int(punctuation.size())))]; break;
        case 8: for (int k = 1 + pick(6); k > 0; --k) range(s, 0x4E00, 0x9FFF); break;
        case 9: {  // emoji, sometimes with a skin tone, a ZWJ sequence or a flag
          range(s, 0x1F600, 0x1F64F);
          if (pick(3) == 0) range(s, 0x1F3FB, 0x1F3FF);
          if (pick(3) == 0) { cp(s, 0x200D); range(s, 0x1F466, 0x1F469); }
          if (pick(4) == 0) { range(s, 0x1F1E6, 0x1F1FF); range(s, 0x1F1E6, 0x1F1FF); }
          break;
        }
        case 10:  // letters with combining marks
          cp(s, uint32_t('a' + pick(26)));
          for (int k = 1 + pick(3); k > 0; --k) range(s, 0x0300, 0x036F);
          break;
        case 11: {  // other scripts
          static const uint32_t blocks[][2] = {{0x0621, 0x064A}, {0x05D0, 0x05EA}, {0x0905, 0x0939},
                                               {0x0E01, 0x0E30}, {0x0410, 0x044F}, {0x03B1, 0x03C9},
                                               {0xAC00, 0xD7A3}, {0x3041, 0x3096}, {0x00C0, 0x00FF}};
          auto& b = blocks[pick(int(std::size(blocks)))];
          for (int k = 1 + pick(6); k > 0; --k) range(s, b[0], b[1]);
          if (pick(3) == 0) range(s, 0x064B, 0x0652);  // Arabic harakat
          break;
        }
        case 12: s += nfc_nfd[size_t(pick(int(nfc_nfd.size())))]; break;
        case 13:
          if (!specials.empty()) s += specials[size_t(pick(int(specials.size())))];
          break;
        case 14: range(s, pick(4) == 0 ? 0x00 : 0x20, 0x7F); break;  // any ASCII, controls included
        case 15: range(s, 0x00A0, 0x2FFF); break;                   // assorted BMP symbols and letters
      }
    }
    texts.push_back(s);
  }
  return texts;
}

}  // namespace bq::test
