// libFuzzer target: arbitrary bytes as config.json. Parsing and validation may only throw bq::Error; an accepted
// config must give finite RoPE frequencies (rope_theta and the scaling factors were checked).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "core/json.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    bq::ModelConfig c = bq::parse_model_config(bq::parse_json(text, "config.json"), "config.json");
    if (c.head_dim <= 4096)
      for (double f : bq::rope_inv_freq(c))
        if (!std::isfinite(f)) std::abort();
  } catch (const bq::Error&) {
  }
  return 0;
}
