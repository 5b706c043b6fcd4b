// libFuzzer target: arbitrary bytes as a .npy file. Only bq::Error may escape; an accepted array's data must
// match its shape.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "core/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    bq::NpyArray a = bq::parse_npy(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.npy");
    size_t n = 1;
    for (int64_t d : a.shape) n *= size_t(d);
    if (n != a.data.size()) std::abort();
  } catch (const bq::Error&) {
  }
  return 0;
}
