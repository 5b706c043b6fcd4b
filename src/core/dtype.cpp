#include "core/dtype.h"

#include <cmath>

namespace bq {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::I8: case DType::U8: case DType::BOOL: return 1;
  }
  return 0;
}

static constexpr std::string_view kNames[] = {"F32", "F16", "BF16", "I8", "U8", "I32", "I64", "F64", "BOOL"};

std::string_view dtype_name(DType t) { return kNames[static_cast<int>(t)]; }

bool dtype_from_name(std::string_view s, DType& out) {
  for (int i = 0; i < int(std::size(kNames)); ++i)
    if (kNames[i] == s) {
      out = static_cast<DType>(i);
      return true;
    }
  return false;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do { ++e; mant <<= 1; } while (!(mant & 0x400));
      u = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | mant << 13;
  } else {
    u = sign | (exp + 112) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00);  // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // overflow (incl. rounding up to inf)
  if (a < 0x38800000u) {  // subnormal or zero in half: scale into integer mantissa with RNE
    float af;
    std::memcpy(&af, &a, 4);
    float scaled = af * 16777216.0f;  // 2^24: half subnormal unit is 2^-24
    uint32_t m = uint32_t(std::nearbyint(scaled));
    return uint16_t(sign | m);
  }
  uint32_t mant = a & 0x7fffff, exp = (a >> 23) - 112;
  uint32_t h = exp << 10 | mant >> 13;
  uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;
  return uint16_t(sign | h);
}

void to_f32(DType t, const void* src, float* dst, size_t n) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::BF16: {
      auto p = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(p[i]);
      return;
    }
    case DType::F16: {
      auto p = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(p[i]);
      return;
    }
    case DType::F64: {
      auto p = static_cast<const double*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = float(p[i]);
      return;
    }
    case DType::I8: {
      auto p = static_cast<const int8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = p[i];
      return;
    }
    case DType::U8: case DType::BOOL: {
      auto p = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = p[i];
      return;
    }
    case DType::I32: {
      auto p = static_cast<const int32_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = float(p[i]);
      return;
    }
    case DType::I64: {
      auto p = static_cast<const int64_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = float(p[i]);
      return;
    }
  }
}

}  // namespace bq
