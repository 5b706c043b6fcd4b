// Element types of stored tensors and the 16-bit float conversions the CPU path needs.
#pragma once
#include <cstdint>
#include <cstring>
#include <string_view>

namespace bq {

enum class DType : uint8_t { F32, F16, BF16, I8, U8, I32, I64, F64, BOOL };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);               // safetensors spelling: "F32", "BF16", ...
bool dtype_from_name(std::string_view s, DType& out);  // false when unknown

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, NaN kept quiet (as torch does).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements of type t at src to float.
void to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace bq
