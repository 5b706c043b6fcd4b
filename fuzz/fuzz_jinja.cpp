// libFuzzer target: arbitrary bytes as a chat template, parsed and rendered with a typical conversation. Only
// bq::Error may escape; the limits of limits.h must keep every input within the fuzzer's time and memory.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "tokenizer/jinja.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::ordered_json context = nlohmann::ordered_json::parse(R"({
    "messages": [{"role": "system", "content": "You are a clinician."},
                 {"role": "user", "content": "Does aspirin inhibit COX-1? Answer yes or no."},
                 {"role": "assistant", "content": "yes"},
                 {"role": "user", "content": "And \u00e9\u4e16 <s>?"}],
    "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    "documents": null, "bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": true})");
  std::string_view source(reinterpret_cast<const char*>(data), size);
  try {
    bq::JinjaRenderOptions opt;
    opt.now = std::tm{};
    (void)bq::JinjaTemplate(source, "fuzz.jinja").render(context, opt);
  } catch (const bq::Error&) {
  }
  return 0;
}
