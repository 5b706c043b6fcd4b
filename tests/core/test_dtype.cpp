#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/dtype.h"

TEST(DType, Bf16RoundTripAndRounding) {
  EXPECT_EQ(bq::f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bq::bf16_to_f32(0x3f80), 1.0f);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to even (1.0).
  EXPECT_EQ(bq::f32_to_bf16(1.00390625f), 0x3f80);
  EXPECT_TRUE(std::isnan(bq::bf16_to_f32(bq::f32_to_bf16(NAN))));
}

TEST(DType, F16MatchesExhaustiveRoundTrip) {
  // Every finite half converts to float and back unchanged.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    float f = bq::f16_to_f32(uint16_t(h));
    ASSERT_EQ(bq::f32_to_f16(f), h) << std::hex << h;
  }
  EXPECT_EQ(bq::f32_to_f16(65520.0f), 0x7c00);  // rounds to infinity
  EXPECT_EQ(bq::f16_to_f32(0x0001), std::ldexp(1.0f, -24));
}

TEST(DType, F16RoundsToNearestEven) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-70000.f, 70000.f);
  for (int i = 0; i < 100000; ++i) {
    float x = d(rng) * std::pow(2.0f, float(int(rng() % 30) - 25));
    uint16_t h = bq::f32_to_f16(x);
    float y = bq::f16_to_f32(h);
    if (std::isinf(y)) continue;
    // No neighbouring half is closer.
    float up = bq::f16_to_f32(uint16_t(h + 1)), dn = bq::f16_to_f32(uint16_t(h - 1));
    if (!std::isinf(up) && (h & 0x7fff) != 0x7bff) {
      ASSERT_LE(std::fabs(y - x), std::fabs(up - x)) << x;
    }
    if ((h & 0x7fff) != 0) {
      ASSERT_LE(std::fabs(y - x), std::fabs(dn - x)) << x;
    }
  }
}
