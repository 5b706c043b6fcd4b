// libFuzzer target: arbitrary bytes as a safetensors file. Only bq::Error may escape the parser; every tensor it
// accepts must lie inside the buffer.
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    for (auto& t : bq::parse_safetensors(data, size, "fuzz")) {
      if (t.data < data || t.data + t.nbytes > data + size) std::abort();
    }
  } catch (const bq::Error&) {
  }
  return 0;
}
