// libFuzzer target: arbitrary bytes as tokenizer.json (and, after a NUL byte, tokenizer_config.json). Loading must
// either succeed or throw bq::Error / a JSON exception; a loaded tokenizer must encode and decode without crashing.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  std::string_view tokenizer_json = input.substr(0, nul);
  std::string_view config_json = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);
  try {
    bq::Tokenizer t = bq::Tokenizer::from_json(tokenizer_json, config_json, "fuzz");
    auto ids = t.encode("Hello, world! 123 \xC3\xA9\xE4\xB8\x96 <s>\n\n", true);
    (void)t.decode(ids);
    bq::StreamDecoder stream(t);
    for (int32_t id : ids) (void)stream.push(id);
    (void)stream.flush();
  } catch (const bq::Error&) {
  } catch (const nlohmann::json::exception&) {
  }
  return 0;
}
