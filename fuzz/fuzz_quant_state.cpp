// libFuzzer target: arbitrary bytes as the JSON quant_state tensor of a bitsandbytes 4-bit linear (the other
// tensors are small, fixed buffers). Only bq::Error may escape.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "quant/quant.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<uint8_t> zeros(4096, 0);
  const std::string w = "model.layers.0.mlp.down_proj.weight";
  bq::quant::TensorRef state{bq::DType::U8, {int64_t(size)}, data, size};
  bq::quant::TensorRef weight{bq::DType::U8, {2048}, zeros.data(), 2048};
  bq::quant::TensorRef absmax{bq::DType::F32, {64}, zeros.data(), 256};
  bq::quant::TensorRef map{bq::DType::F32, {16}, zeros.data(), 64};
  auto get = [&](const std::string& name) -> const bq::quant::TensorRef* {
    if (name == w + ".quant_state.bitsandbytes__nf4") return &state;
    if (name == w) return &weight;
    if (name == w + ".absmax" || name == w + ".nested_absmax") return &absmax;
    if (name == w + ".quant_map") return &map;
    return nullptr;
  };
  try {
    (void)bq::quant::from_bnb_tensors("model.layers.0.mlp.down_proj", get, "fuzz.safetensors");
  } catch (const bq::Error&) {
  }
  return 0;
}
