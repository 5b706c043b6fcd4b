// Quantization formats: codebooks, quantize/dequantize against the spec's rules (checked independently with brute
// force), and the serialized transformers + bitsandbytes tensors.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "core/error.h"
#include "quant/precision.h"
#include "quant/quant.h"
#include "test_util.h"

using namespace bq;
using namespace bq::quant;

namespace {

// Random weights of the given dtype (normal, with a few larger values) and their exact float values.
struct Weights {
  std::vector<uint8_t> raw;
  std::vector<float> f;
};

Weights random_weights(DType dtype, int64_t numel, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  Weights w;
  w.raw.resize(size_t(numel) * dtype_size(dtype));
  w.f.resize(size_t(numel));
  for (int64_t i = 0; i < numel; ++i) {
    float v = nd(rng);
    if (rng() % 97 == 0) v *= 8;  // some outliers so block maxima vary
    if (dtype == DType::BF16) {
      uint16_t h = f32_to_bf16(v);
      std::memcpy(&w.raw[size_t(i) * 2], &h, 2);
      v = bf16_to_f32(h);
    } else if (dtype == DType::F16) {
      uint16_t h = f32_to_f16(v);
      std::memcpy(&w.raw[size_t(i) * 2], &h, 2);
      v = f16_to_f32(h);
    } else {
      std::memcpy(&w.raw[size_t(i) * 4], &v, 4);
    }
    w.f[size_t(i)] = v;
  }
  return w;
}

uint8_t unpack(const std::vector<uint8_t>& packed, int64_t e) {
  return e % 2 == 0 ? packed[size_t(e / 2)] >> 4 : packed[size_t(e / 2)] & 15;
}

// True when code[idx] is (within rounding of the decision thresholds) the nearest entry to v.
template <size_t N>
bool is_nearest(const std::array<float, N>& code, int idx, double v, double tie_tol) {
  double best = 1e300;
  for (float c : code) best = std::min(best, std::fabs(double(c) - v));
  return std::fabs(double(code[size_t(idx)]) - v) <= best + tie_tol;
}

struct Case4 {
  Scheme scheme;
  DType dtype;
  int64_t rows, cols;
  int blocksize;
  bool dq;
};

}  // namespace

TEST(Quant, CodebooksMatchSpec) {
  const uint32_t nf4[16] = {0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f,
                            0xbdba7871, 0x00000000, 0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a,
                            0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000};
  auto c = code4(Scheme::NF4);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(std::bit_cast<uint32_t>(c[size_t(i)]), nf4[i]) << i;
  // FP4: bit 3 is the sign, magnitudes {0, 0.0625, 8, 12, 4, 6, 2, 3} / 12 (division done in double here).
  const double mag[8] = {0, 0.0625, 8, 12, 4, 6, 2, 3};
  auto f = code4(Scheme::FP4);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(f[size_t(i)], float(mag[i] / 12.0)) << i;
    EXPECT_EQ(f[size_t(i + 8)], float(-mag[i] / 12.0)) << i;
  }
  EXPECT_FALSE(std::signbit(f[8]));  // bitsandbytes' "-0" is the Python int 0
  EXPECT_THROW(code4(Scheme::Int8), Error);
}

TEST(Quant, DynamicMapShape) {
  const auto& m = dynamic_map_signed();
  EXPECT_EQ(m[127], 0.0f);
  EXPECT_EQ(m[255], 1.0f);
  for (int i = 1; i < 256; ++i) EXPECT_LT(m[size_t(i - 1)], m[size_t(i)]) << i;
  for (int i = 0; i < 127; ++i) EXPECT_EQ(m[size_t(i)], -m[size_t(254 - i)]) << i;  // symmetric around index 127
}

TEST(Quant, DynamicMapMatchesSpecFile) {
  BQ_REQUIRE_SHARED("specs/bnb-dynamic-map-signed.txt");
  std::ifstream in(test::shared_dir() / "specs/bnb-dynamic-map-signed.txt");
  std::string line;
  int count = 0;
  const auto& m = dynamic_map_signed();
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    int idx;
    std::string hex;
    ls >> idx >> hex;
    ASSERT_TRUE(idx >= 0 && idx < 256) << line;
    EXPECT_EQ(std::bit_cast<uint32_t>(m[size_t(idx)]), uint32_t(std::stoul(hex, nullptr, 16))) << line;
    ++count;
  }
  EXPECT_EQ(count, 256);
}

TEST(Quant, FourBitQuantizeFollowsSpec) {
  const Case4 cases[] = {
      {Scheme::NF4, DType::BF16, 7, 13, 64, false},    // odd numel, single ragged block
      {Scheme::NF4, DType::F16, 33, 100, 64, true},    // blocks straddle rows, ragged tail
      {Scheme::FP4, DType::BF16, 9, 77, 64, true},
      {Scheme::FP4, DType::F32, 5, 64, 32, false},
      {Scheme::NF4, DType::BF16, 300, 257, 64, true},  // > 256 blocks: several nested blocks, ragged last
      {Scheme::FP4, DType::F16, 130, 129, 128, true},
  };
  uint32_t seed = 100;
  for (const auto& tc : cases) {
    SCOPED_TRACE(testing::Message() << precision_name(tc.scheme) << " " << dtype_name(tc.dtype) << " " << tc.rows << "x"
                                    << tc.cols << " bs" << tc.blocksize << " dq" << tc.dq);
    const int64_t numel = tc.rows * tc.cols, bs = tc.blocksize, nblocks = (numel + bs - 1) / bs;
    auto w = random_weights(tc.dtype, numel, seed++);
    auto q = quantize(w.raw.data(), tc.dtype, tc.rows, tc.cols, {tc.scheme, tc.blocksize, tc.dq});
    ASSERT_EQ(q.packed.size(), size_t((numel + 1) / 2));
    if (numel % 2) {
      EXPECT_EQ(q.packed.back() & 15, 0);  // padding nibble
    }
    auto code = code4(tc.scheme);

    // Block maxima from the (16-bit) input values.
    std::vector<float> absmax(static_cast<size_t>(nblocks), 0.0f);
    for (int64_t e = 0; e < numel; ++e) absmax[size_t(e / bs)] = std::max(absmax[size_t(e / bs)], std::fabs(w.f[size_t(e)]));
    if (!tc.dq) {
      EXPECT_EQ(q.absmax, absmax);
    }

    for (int64_t e = 0; e < numel; ++e) {
      int idx = unpack(q.packed, e);
      float scaled = w.f[size_t(e)] * (1.0f / absmax[size_t(e / bs)]);
      ASSERT_TRUE(is_nearest(code, idx, scaled, 1e-7)) << "element " << e << " value " << scaled << " idx " << idx;
      if (tc.scheme == Scheme::FP4) {
        ASSERT_EQ((idx & 8) != 0, scaled < 0) << e;
      }
    }

    std::vector<float> deq_absmax(absmax);
    if (tc.dq) {
      double sum = 0;
      for (float a : absmax) sum += a;
      EXPECT_EQ(q.offset, float(sum / double(nblocks)));
      const int64_t nnested = (nblocks + 255) / 256;
      ASSERT_EQ(q.absmax2.size(), size_t(nnested));
      ASSERT_EQ(q.absmax_q.size(), size_t(nblocks));
      EXPECT_TRUE(q.absmax.empty());
      const auto& map = dynamic_map_signed();
      for (int64_t nb = 0; nb < nnested; ++nb) {
        float m2 = 0;
        for (int64_t i = nb * 256; i < std::min(nblocks, (nb + 1) * 256); ++i)
          m2 = std::max(m2, std::fabs(absmax[size_t(i)] - q.offset));
        EXPECT_EQ(q.absmax2[size_t(nb)], m2) << nb;
      }
      for (int64_t i = 0; i < nblocks; ++i) {
        float a2 = q.absmax2[size_t(i / 256)];
        float v = (absmax[size_t(i)] - q.offset) * (1.0f / a2);
        ASSERT_TRUE(is_nearest(map, q.absmax_q[size_t(i)], v, 1e-7)) << "block " << i << " value " << v;
        volatile float scaled = map[q.absmax_q[size_t(i)]] * a2;  // rounded before the add, never fused
        deq_absmax[size_t(i)] = scaled + q.offset;
        // Nested error bound: half the largest map gap (0.0140625) times the nested maximum.
        EXPECT_LE(std::fabs(deq_absmax[size_t(i)] - absmax[size_t(i)]), 0.5 * 0.0140625 * a2 * 1.0001 + 1e-9);
      }
    }

    // Dequantize is code[idx] * absmax[block]; NF4 error per element <= half the largest code gap * absmax.
    std::vector<float> out(static_cast<size_t>(numel));
    dequantize(q, out.data());
    auto sorted = code;
    std::sort(sorted.begin(), sorted.end());
    double half_gap = 0;
    for (size_t i = 0; i + 1 < 16; ++i) half_gap = std::max(half_gap, 0.5 * double(sorted[i + 1] - sorted[i]));
    for (int64_t e = 0; e < numel; ++e) {
      int64_t b = e / bs;
      ASSERT_EQ(out[size_t(e)], code[unpack(q.packed, e)] * deq_absmax[size_t(b)]) << e;
      double err = std::fabs(double(out[size_t(e)]) - double(w.f[size_t(e)]));
      double bound = half_gap * absmax[size_t(b)] * (1 + 1e-6) + std::fabs(deq_absmax[size_t(b)] - absmax[size_t(b)]);
      ASSERT_LE(err, bound) << e;
    }
    EXPECT_EQ(q.bytes(), q.packed.size() + (tc.dq ? size_t(nblocks) + q.absmax2.size() * 4 : size_t(nblocks) * 4));
  }
}

// The block pass (vectorized, packs pairs of codes) against the per-value rule, on values a hair either side of
// every midpoint between codes, where a slip in the comparisons would show. Every block holds 1, so it scales by 1.
TEST(Quant, BlockPassTakesTheLowerCodeOnEveryBoundary) {
  for (Scheme s : {Scheme::NF4, Scheme::FP4}) {
    auto code = code4(s);
    std::sort(code.begin(), code.end());
    std::vector<float> w;
    for (size_t i = 0; i + 1 < code.size(); ++i) {
      float mid = float((double(code[i]) + double(code[i + 1])) / 2);
      for (float v : {std::nextafter(mid, -2.0f), mid, std::nextafter(mid, 2.0f), code[i]}) w.push_back(v);
    }
    const int64_t cols = 63;  // odd: blocks straddle rows and the last nibble is padding
    w.resize(size_t((w.size() / cols + 1) * cols), -0.0f);
    for (size_t i = 0; i < w.size(); i += 32) w[i] = 1.0f;  // blocks of 32: a 1 in each
    const int64_t rows = int64_t(w.size()) / cols;
    auto q = quantize(w.data(), DType::F32, rows, cols, {s, 32, false});
    for (size_t e = 0; e < w.size(); ++e)
      ASSERT_EQ(unpack(q.packed, int64_t(e)), quantize4_index(s, w[e])) << precision_name(s) << " value " << w[e];
    if (w.size() % 2) EXPECT_EQ(q.packed.back() & 15, 0);
  }
}

TEST(Quant, DoubleQuantCostsAbout4Point127Bits) {
  auto w = random_weights(DType::BF16, 256 * 1024, 7);
  auto q = quantize(w.raw.data(), DType::BF16, 256, 1024, {Scheme::NF4, 64, true});
  double bits = 8.0 * double(q.bytes()) / double(q.numel());
  EXPECT_NEAR(bits, 4 + 8.0 / 64 + 32.0 / (64 * 256), 1e-9);
}

TEST(Quant, Int8RowwiseRoundsHalfToEven) {
  for (Scheme s : {Scheme::Int8, Scheme::LLMInt8}) {
    const int64_t rows = 23, cols = 37;
    auto w = random_weights(DType::F16, rows * cols, 11);
    auto q = quantize(w.raw.data(), DType::F16, rows, cols, {s});
    ASSERT_EQ(q.cb.size(), size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
      float scb = 0;
      for (int64_t c = 0; c < cols; ++c) scb = std::max(scb, std::fabs(w.f[size_t(r * cols + c)]));
      ASSERT_EQ(q.scb[size_t(r)], scb);
      for (int64_t c = 0; c < cols; ++c) {
        // Exact in double: |W*127 - CB*SCB| <= SCB/2, and exactly half only with an even CB.
        double diff = std::fabs(double(w.f[size_t(r * cols + c)]) * 127.0 - double(q.cb[size_t(r * cols + c)]) * scb);
        ASSERT_TRUE(2 * diff < scb || (2 * diff == scb && q.cb[size_t(r * cols + c)] % 2 == 0)) << r << "," << c;
      }
    }
  }
  // Exact halves, worked by hand: 0.5*127/127 = 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, and 1.5*127/3 = 63.5 -> 64
  // (a float reciprocal 127/3 would give 63).
  const float row[2][6] = {{127, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f}, {3, 1.5f, -1.5f, 0, 3, -3}};
  auto q = quantize(row, DType::F32, 2, 6, {Scheme::Int8});
  EXPECT_EQ(q.cb, (std::vector<int8_t>{127, 0, 2, 2, 0, -2, 127, 64, -64, 0, 127, -127}));
  EXPECT_EQ(q.scb, (std::vector<float>{127, 3}));
  // An all-zero row has SCB 0 and codes 0.
  const float zeros[4] = {0, 0, 0, 0};
  auto z = quantize(zeros, DType::F32, 1, 4, {Scheme::LLMInt8});
  EXPECT_EQ(z.cb, (std::vector<int8_t>{0, 0, 0, 0}));
}

namespace {

std::map<std::string, NamedTensor> by_name(const std::vector<NamedTensor>& ts) {
  std::map<std::string, NamedTensor> m;
  for (const auto& t : ts) m[t.name] = t;
  return m;
}

QuantizedMatrix reload(const std::map<std::string, NamedTensor>& m, const std::string& prefix,
                       std::map<std::string, TensorRef>* storage) {
  for (const auto& [name, t] : m) (*storage)[name] = TensorRef{t.dtype, t.shape, t.bytes.data(), t.bytes.size()};
  return from_bnb_tensors(
      prefix,
      [&](const std::string& name) -> const TensorRef* {
        auto it = storage->find(name);
        return it == storage->end() ? nullptr : &it->second;
      },
      "test.safetensors");
}

}  // namespace

TEST(Quant, FourBitTensorsRoundTrip) {
  const std::string p = "model.layers.0.mlp.down_proj";
  for (bool dq : {true, false})
    for (Scheme s : {Scheme::NF4, Scheme::FP4}) {
      SCOPED_TRACE(testing::Message() << precision_name(s) << " dq" << dq);
      const int64_t rows = 41, cols = 67;  // odd numel, ragged blocks
      auto w = random_weights(DType::BF16, rows * cols, 21);
      auto q = quantize(w.raw.data(), DType::BF16, rows, cols, {s, 64, dq});
      auto m = by_name(to_bnb_tensors(q, p, DType::BF16));
      const std::string wn = p + ".weight";
      const int64_t nblocks = (rows * cols + 63) / 64;
      ASSERT_EQ(m.size(), dq ? 6u : 4u);
      EXPECT_EQ(m.at(wn).dtype, DType::U8);
      EXPECT_EQ(m.at(wn).shape, (std::vector<int64_t>{(rows * cols + 1) / 2, 1}));
      EXPECT_EQ(m.at(wn).bytes, q.packed);
      EXPECT_EQ(m.at(wn + ".absmax").dtype, dq ? DType::U8 : DType::F32);
      EXPECT_EQ(m.at(wn + ".absmax").shape, (std::vector<int64_t>{nblocks}));
      EXPECT_EQ(m.at(wn + ".quant_map").dtype, DType::F32);
      EXPECT_EQ(m.at(wn + ".quant_map").shape, (std::vector<int64_t>{16}));
      if (dq) {
        EXPECT_EQ(m.at(wn + ".nested_absmax").dtype, DType::F32);
        EXPECT_EQ(m.at(wn + ".nested_absmax").shape, (std::vector<int64_t>{1}));
        EXPECT_EQ(m.at(wn + ".nested_quant_map").shape, (std::vector<int64_t>{256}));
      }
      const std::string sn = wn + ".quant_state.bitsandbytes__" + std::string(precision_name(s));
      const auto& st = m.at(sn);
      EXPECT_EQ(st.dtype, DType::U8);
      ASSERT_EQ(st.shape, (std::vector<int64_t>{int64_t(st.bytes.size())}));
      std::string js(st.bytes.begin(), st.bytes.end());
      std::string head = std::string(R"({"quant_type": ")") + std::string(precision_name(s)) +
                         R"(", "blocksize": 64, "dtype": "bfloat16", "shape": [41, 67])";
      EXPECT_EQ(js.substr(0, head.size()), head);
      auto parsed = nlohmann::json::parse(js);
      if (dq) {
        EXPECT_EQ(parsed.at("nested_blocksize"), 256);
        EXPECT_EQ(parsed.at("nested_dtype"), "float32");
        EXPECT_EQ(parsed.at("nested_offset").get<double>(), double(q.offset));  // shortest repr round-trips
      } else {
        EXPECT_EQ(js.size(), head.size() + 1);
      }

      std::map<std::string, TensorRef> storage;
      auto r = reload(m, p, &storage);
      EXPECT_EQ(r.scheme, s);
      EXPECT_EQ(r.rows, rows);
      EXPECT_EQ(r.cols, cols);
      EXPECT_EQ(r.blocksize, 64);
      EXPECT_EQ(r.double_quant, dq);
      EXPECT_EQ(r.packed, q.packed);
      EXPECT_EQ(r.absmax, q.absmax);
      EXPECT_EQ(r.absmax_q, q.absmax_q);
      EXPECT_EQ(r.absmax2, q.absmax2);
      EXPECT_EQ(r.offset, q.offset);
    }
}

TEST(Quant, QuantStateJsonMatchesSpecExample) {
  // The spec's example, byte for byte (Python json.dumps separators, key order, repr of the fp32 offset).
  QuantizedMatrix q;
  q.scheme = Scheme::NF4;
  q.rows = 64;
  q.cols = 160;
  q.blocksize = 64;
  q.double_quant = true;
  q.offset = float(0.20593872666358948);
  q.packed.resize(64 * 160 / 2);
  q.absmax_q.resize(160);
  q.absmax2.resize(1);
  auto m = by_name(to_bnb_tensors(q, "x", DType::BF16));
  const auto& b = m.at("x.weight.quant_state.bitsandbytes__nf4").bytes;
  EXPECT_EQ(std::string(b.begin(), b.end()),
            R"({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [64, 160], )"
            R"("nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.20593872666358948})");
}

TEST(Quant, Int8TensorsRoundTrip) {
  const std::string p = "model.layers.3.self_attn.q_proj";
  auto w = random_weights(DType::F16, 19 * 45, 31);
  auto q = quantize(w.raw.data(), DType::F16, 19, 45, {Scheme::LLMInt8});
  auto m = by_name(to_bnb_tensors(q, p, DType::F16));
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m.at(p + ".weight").dtype, DType::I8);
  EXPECT_EQ(m.at(p + ".weight").shape, (std::vector<int64_t>{19, 45}));
  EXPECT_EQ(m.at(p + ".SCB").dtype, DType::F32);
  EXPECT_EQ(m.at(p + ".SCB").shape, (std::vector<int64_t>{19}));
  EXPECT_EQ(m.at(p + ".weight_format").dtype, DType::U8);
  EXPECT_TRUE(m.at(p + ".weight_format").shape.empty());
  EXPECT_EQ(m.at(p + ".weight_format").bytes, (std::vector<uint8_t>{0}));
  std::map<std::string, TensorRef> storage;
  auto r = reload(m, p, &storage);
  EXPECT_EQ(r.scheme, Scheme::LLMInt8);
  EXPECT_EQ(r.threshold, 6.0f);
  EXPECT_EQ(r.rows, 19);
  EXPECT_EQ(r.cols, 45);
  EXPECT_EQ(r.cb, q.cb);
  EXPECT_EQ(r.scb, q.scb);

  m.at(p + ".weight_format").bytes[0] = 2;  // col_turing: a legacy layout we do not read
  std::map<std::string, TensorRef> storage2;
  EXPECT_THROW(reload(m, p, &storage2), Error);
}

TEST(Quant, FromBnbTensorsReportsProblems) {
  const std::string p = "layer";
  auto w = random_weights(DType::BF16, 8 * 64, 41);
  auto q = quantize(w.raw.data(), DType::BF16, 8, 64, {Scheme::NF4, 64, true});
  auto expect_error = [&](std::map<std::string, NamedTensor> m, const std::string& needle) {
    std::map<std::string, TensorRef> storage;
    try {
      reload(m, p, &storage);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("test.safetensors"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto m = by_name(to_bnb_tensors(q, p, DType::BF16));
  auto missing = m;
  missing.erase(p + ".weight.nested_absmax");
  expect_error(missing, "layer.weight.nested_absmax");
  auto wrong_dtype = m;
  wrong_dtype.at(p + ".weight.absmax").dtype = DType::F32;
  expect_error(wrong_dtype, "layer.weight.absmax");
  auto wrong_map = m;
  wrong_map.at(p + ".weight.quant_map").bytes[0] ^= 1;
  expect_error(wrong_map, "quant_map");
  auto bad_json = m;
  bad_json.at(p + ".weight.quant_state.bitsandbytes__nf4").bytes.pop_back();
  expect_error(bad_json, "quant_state");
  expect_error({}, "layer.weight");
}

TEST(Quant, QuantizationConfig) {
  QuantOptions nf4{Scheme::NF4, 64, true};
  nf4.compute = DType::F16;
  auto c = bnb_quantization_config(nf4);
  EXPECT_EQ(c, nlohmann::json::parse(R"({"quant_method": "bitsandbytes", "load_in_4bit": true,
    "load_in_8bit": false, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": true,
    "bnb_4bit_compute_dtype": "float16", "bnb_4bit_quant_storage": "uint8", "llm_int8_threshold": 6.0,
    "llm_int8_skip_modules": null, "llm_int8_has_fp16_weight": false, "llm_int8_enable_fp32_cpu_offload": false})"));
  auto c8 = bnb_quantization_config({Scheme::LLMInt8});
  EXPECT_EQ(c8.at("load_in_8bit"), true);
  EXPECT_EQ(c8.at("load_in_4bit"), false);
  EXPECT_EQ(c8.at("llm_int8_threshold"), 6.0);
  QuantOptions fp4{Scheme::FP4, 64, false};
  fp4.compute = DType::BF16;
  EXPECT_EQ(bnb_quantization_config(fp4).at("bnb_4bit_quant_type"), "fp4");
  EXPECT_EQ(bnb_quantization_config(fp4).at("bnb_4bit_compute_dtype"), "bfloat16");
  EXPECT_EQ(c8.at("bnb_4bit_compute_dtype"), "float32");  // transformers' default for 8-bit configs
}
