// Quantized matmul against plain references: dequantize + double-precision matmul (4-bit, int8 weight-only), and
// the spec's LLM.int8 formula written out directly. Both the AVX2 and the portable kernels are checked.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/qmatmul.h"
#include "quant/precision.h"
#include "quant/quant.h"

using namespace bq;
using namespace bq::quant;

namespace {

std::vector<uint16_t> random_bf16(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<uint16_t> v(static_cast<size_t>(n));
  for (auto& h : v) h = f32_to_bf16(nd(rng));
  return v;
}

std::vector<float> random_x(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& f : v) f = nd(rng);
  return v;
}

// Checks |y - ref| <= tol * sum_k |w_k x_k| for every output (a relative error immune to cancellation).
void expect_close(const std::vector<float>& y, const std::vector<double>& ref, const std::vector<double>& scale,
                  double tol) {
  ASSERT_EQ(y.size(), ref.size());
  for (size_t i = 0; i < y.size(); ++i)
    ASSERT_LE(std::fabs(double(y[i]) - ref[i]), tol * scale[i] + 1e-30) << "output " << i << ": " << y[i] << " vs " << ref[i];
}

// Both kernel families where the CPU has AVX2; only the portable one otherwise.
std::vector<bool> kernel_modes() {
  set_force_portable(false);
  return using_avx2() ? std::vector<bool>{false, true} : std::vector<bool>{true};
}

struct PortableGuard {
  explicit PortableGuard(bool on) { set_force_portable(on); }
  ~PortableGuard() { set_force_portable(false); }
};

}  // namespace

TEST(QuantMatmul, WeightOnlyMatchesDequantizedReference) {
  struct Shape {
    int64_t rows, cols;
    int blocksize;
  };
  // Ragged on purpose: odd numel (rows start mid-byte), cols not a multiple of 8 or 32, blocks across rows; and
  // aligned shapes (cols and blocksize multiples of 32) that take the shuffled decode path.
  const Shape shapes[] = {{37, 200, 64}, {16, 64, 64}, {24, 96, 32}, {9, 77, 64}, {40, 257, 32}, {21, 130, 128}};
  std::mt19937 rng(2024);
  for (bool portable : kernel_modes()) {
    PortableGuard guard(portable);
    for (Scheme s : {Scheme::NF4, Scheme::FP4, Scheme::Int8})
      for (const auto& sh : shapes)
        for (bool dq : {true, false}) {
          if (s == Scheme::Int8 && !dq) continue;  // no double quant for int8
          auto w = random_bf16(sh.rows * sh.cols, rng);
          auto q = quantize(w.data(), DType::BF16, sh.rows, sh.cols, {s, sh.blocksize, dq});
          std::vector<float> deq(static_cast<size_t>(sh.rows * sh.cols));
          dequantize(q, deq.data());
          for (int64_t n : {1, 3, 17, 64}) {
            SCOPED_TRACE(testing::Message() << (portable ? "portable " : "avx2 ") << precision_name(s) << " " << sh.rows
                                            << "x" << sh.cols << " bs" << sh.blocksize << " dq" << dq << " n" << n);
            auto x = random_x(n * sh.cols, rng);
            std::vector<float> y(static_cast<size_t>(n * sh.rows), NAN);
            matmul(q, x.data(), n, y.data());
            std::vector<double> ref(y.size()), scale(y.size());
            for (int64_t t = 0; t < n; ++t)
              for (int64_t r = 0; r < sh.rows; ++r) {
                double acc = 0, mag = 0;
                for (int64_t c = 0; c < sh.cols; ++c) {
                  double p = double(deq[size_t(r * sh.cols + c)]) * double(x[size_t(t * sh.cols + c)]);
                  acc += p;
                  mag += std::fabs(p);
                }
                ref[size_t(t * sh.rows + r)] = acc;
                scale[size_t(t * sh.rows + r)] = mag;
              }
            expect_close(y, ref, scale, 1e-5);
          }
        }
  }
}

namespace {

// The spec's LLM.int8 forward, written plainly in double: outlier columns (any |x| >= threshold) in floating point
// against CB * SCB / 127; the rest as int8 activations (per-token SCA over |x| < threshold, outliers zeroed).
void llm_int8_reference(const QuantizedMatrix& q, const std::vector<float>& x, int64_t n, std::vector<double>& ref,
                        std::vector<double>& scale) {
  const int64_t rows = q.rows, cols = q.cols;
  std::vector<bool> outlier(static_cast<size_t>(cols), false);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < cols; ++c)
      if (q.threshold > 0 && std::fabs(x[size_t(t * cols + c)]) >= q.threshold) outlier[size_t(c)] = true;
  ref.assign(size_t(n * rows), 0);
  scale.assign(size_t(n * rows), 0);
  for (int64_t t = 0; t < n; ++t) {
    double sca = 0;
    for (int64_t c = 0; c < cols; ++c) {
      double v = std::fabs(x[size_t(t * cols + c)]);
      if (q.threshold <= 0 || v < q.threshold) sca = std::max(sca, v);
    }
    std::vector<double> ca(static_cast<size_t>(cols));
    for (int64_t c = 0; c < cols; ++c)
      ca[size_t(c)] = outlier[size_t(c)] || sca == 0 ? 0 : std::nearbyint(double(x[size_t(t * cols + c)]) * 127 / sca);
    for (int64_t r = 0; r < rows; ++r) {
      double scb = q.scb[size_t(r)], acc = 0, extra = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        double cb = q.cb[size_t(r * cols + c)];
        if (outlier[size_t(c)]) {
          double p = double(x[size_t(t * cols + c)]) * cb * scb / 127;
          extra += p;
          mag += std::fabs(p);
        } else {
          acc += ca[size_t(c)] * cb;
          mag += std::fabs(ca[size_t(c)] * cb) * sca * scb / (127.0 * 127.0);
        }
      }
      ref[size_t(t * rows + r)] = acc * sca * scb / (127.0 * 127.0) + extra;
      scale[size_t(t * rows + r)] = mag;
    }
  }
}

}  // namespace

TEST(QuantMatmul, LLMInt8MatchesSpecFormula) {
  std::mt19937 rng(77);
  for (bool portable : kernel_modes()) {
    PortableGuard guard(portable);
    for (float threshold : {6.0f, 0.0f})
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{29, 100}, {64, 256}, {7, 33}})
        for (int64_t n : {1, 3, 17, 64}) {
          SCOPED_TRACE(testing::Message() << (portable ? "portable " : "avx2 ") << "thr " << threshold << " " << rows
                                          << "x" << cols << " n" << n);
          auto w = random_bf16(rows * cols, rng);
          auto q = quantize(w.data(), DType::BF16, rows, cols, {Scheme::LLMInt8, 64, false, threshold});
          EXPECT_EQ(q.threshold, threshold);
          auto x = random_x(n * cols, rng);
          // Outliers: a few features get large values in some tokens (column 0 always, in the last token).
          x[size_t((n - 1) * cols)] = 9.5f;
          for (int k = 0; k < 3; ++k) x[size_t(rng() % (n * cols))] = (rng() % 2 ? 1 : -1) * (6.0f + float(rng() % 40));
          std::vector<float> y(static_cast<size_t>(n * rows), NAN);
          matmul(q, x.data(), n, y.data());
          std::vector<double> ref, scale;
          llm_int8_reference(q, x, n, ref, scale);
          expect_close(y, ref, scale, 1e-5);
        }
  }
}

TEST(QuantMatmul, LLMInt8OutliersKeepPrecision) {
  // One huge feature: with the decomposition it is computed in floating point, so the result stays close to the
  // dequantized-weight product; plain W8A8 (threshold 0) squashes every other feature to a few codes.
  std::mt19937 rng(5);
  const int64_t rows = 32, cols = 128;
  auto w = random_bf16(rows * cols, rng);
  auto x = random_x(cols, rng);
  x[17] = 60.0f;
  std::vector<float> deq(static_cast<size_t>(rows * cols));
  auto q6 = quantize(w.data(), DType::BF16, rows, cols, {Scheme::LLMInt8, 64, false, 6.0f});
  auto q0 = quantize(w.data(), DType::BF16, rows, cols, {Scheme::LLMInt8, 64, false, 0.0f});
  dequantize(q6, deq.data());
  std::vector<float> y6(static_cast<size_t>(rows)), y0(static_cast<size_t>(rows));
  matmul(q6, x.data(), 1, y6.data());
  matmul(q0, x.data(), 1, y0.data());
  double err6 = 0, err0 = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double exact = 0;
    for (int64_t c = 0; c < cols; ++c) exact += double(deq[size_t(r * cols + c)]) * x[size_t(c)];
    err6 += std::fabs(y6[size_t(r)] - exact);
    err0 += std::fabs(y0[size_t(r)] - exact);
  }
  EXPECT_LT(err6 * 4, err0);
}

TEST(QuantMatmul, AvxAndPortableAgree) {
  set_force_portable(false);
  if (!using_avx2()) GTEST_SKIP() << "CPU without AVX2/FMA: only the portable kernels exist here";
  std::mt19937 rng(9);
  const int64_t rows = 48, cols = 320, n = 5;
  auto w = random_bf16(rows * cols, rng);
  auto x = random_x(n * cols, rng);
  for (Scheme s : {Scheme::NF4, Scheme::FP4, Scheme::Int8, Scheme::LLMInt8}) {
    auto q = quantize(w.data(), DType::BF16, rows, cols, {s});
    for (int64_t nn : {int64_t(1), n}) {
      std::vector<float> a(static_cast<size_t>(nn * rows)), b(a.size());
      matmul(q, x.data(), nn, a.data());
      {
        PortableGuard guard(true);
        EXPECT_FALSE(using_avx2());
        matmul(q, x.data(), nn, b.data());
      }
      for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-4 * (1 + std::fabs(b[i]))) << precision_name(s);
    }
  }
}

// bitsandbytes' compute dtype: the product sees the activations rounded to it and returns a result rounded to it.
// Checked against a double-precision product of the rounded activations: each output is a value of the dtype
// within half an ulp (plus fp32 accumulation error) of that product.
TEST(QuantMatmul, ComputeDtypeRoundsActivationsAndResult) {
  std::mt19937 rng(77);
  const int64_t rows = 24, cols = 96, n = 3;
  auto w = random_bf16(rows * cols, rng);
  for (Scheme s : {Scheme::NF4, Scheme::Int8, Scheme::LLMInt8})
    for (DType t : {DType::F16, DType::BF16}) {
      SCOPED_TRACE(testing::Message() << precision_name(s) << (t == DType::F16 ? " f16" : " bf16"));
      QuantOptions o{s, 64, true};
      o.llm_int8_threshold = 0;  // plain W8A8: the int8 path has its own (exact) reference test
      o.compute = t;
      auto q = quantize(w.data(), DType::BF16, rows, cols, o);
      EXPECT_EQ(q.compute, t);
      auto x = random_x(n * cols, rng);
      auto round = [t](float v) { return t == DType::F16 ? f16_to_f32(f32_to_f16(v)) : bf16_to_f32(f32_to_bf16(v)); };
      std::vector<float> xr(x.size());
      for (size_t i = 0; i < x.size(); ++i) xr[i] = round(x[i]);
      std::vector<float> exact(size_t(n * rows)), y(size_t(n * rows));
      QuantizedMatrix f32 = q;
      f32.compute = DType::F32;
      matmul(f32, xr.data(), n, exact.data());  // fp32 compute on the already rounded activations
      matmul(q, x.data(), n, y.data());
      const double half_ulp = t == DType::F16 ? 0x1p-11 : 0x1p-8;
      for (size_t i = 0; i < y.size(); ++i) {
        EXPECT_EQ(y[i], round(y[i])) << "output " << i << " is not a value of the compute dtype";
        EXPECT_LE(std::fabs(double(y[i]) - exact[i]), half_ulp * std::fabs(exact[i]) + 1e-6) << "output " << i;
      }
      // and it differs from fp32 compute on the unrounded activations, or the option would do nothing
      std::vector<float> y32(y.size());
      matmul(f32, x.data(), n, y32.data());
      EXPECT_NE(y, y32);
    }
}
