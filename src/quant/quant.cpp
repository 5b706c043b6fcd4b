#include "quant/quant.h"

#include <atomic>
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/json.h"
#include "quant/precision.h"

namespace bq::quant {

namespace {

// NF4 codebook as float32 bit patterns (index 0..15).
constexpr uint32_t kNF4Bits[16] = {0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f,
                                   0xbdba7871, 0x00000000, 0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a,
                                   0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000};

// bitsandbytes' signed dynamic map (create_dynamic_map(signed=True)), float32 bit patterns, ascending.
constexpr uint32_t kDynamicMapBits[256] = {
    0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000,
    0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333,
    0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6666,
    0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
    0xbf0b0000, 0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a,
    0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000,
    0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
    0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
    0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a,
    0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147b, 0xbd728f5d, 0xbd670a3d,
    0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
    0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
    0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
    0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
    0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
    0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
    0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
    0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
    0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
    0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
    0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
    0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
    0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
    0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
    0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
    0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
    0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
    0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
    0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
    0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
    0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
    0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
};

// Decision thresholds of bitsandbytes' NF4 quantizer (midpoints between neighbouring codes), ascending: the code
// index is the number of thresholds a value is strictly greater than.
constexpr float kNF4Thresholds[15] = {
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
    0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f};

// FP4 magnitude thresholds; magnitudes in ascending order belong to the bit patterns kFP4ByRank.
constexpr float kFP4Thresholds[7] = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                     0.4166667f, 0.583333f, 0.8333333f};
constexpr uint8_t kFP4ByRank[8] = {0, 1, 6, 7, 4, 5, 2, 3};

// Strict ">" as bitsandbytes' decision trees: a value on a threshold takes the lower code, NaN (an all-zero
// block: 0 * (1/0)) takes index 0, as on the GPU. Branch-free, so that a block's loop vectorizes.
inline uint8_t nf4_index(float x) {
  uint8_t idx = 0;
  for (float t : kNF4Thresholds) idx += x > t;
  return idx;
}

inline uint8_t fp4_index(float x) {
  uint8_t rank = 0;
  const float m = std::fabs(x);
  for (float t : kFP4Thresholds) rank += m > t;
  return uint8_t(kFP4ByRank[rank] | (x < 0 ? 8 : 0));
}

// One row or block of the input weight as float (16-bit values convert exactly).
void load_f32(const void* w, DType dtype, int64_t start, int64_t count, float* out) {
  to_f32(dtype, static_cast<const uint8_t*>(w) + start * int64_t(dtype_size(dtype)), out, size_t(count));
}

// On the magnitudes' bit patterns: for finite floats their integer order is the numeric order, and an integer
// maximum vectorizes where a float one (NaN's rules) does not. Callers reject non-finite weights.
float max_abs(const float* v, int64_t n) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::bit_cast<uint32_t>(v[i]) & 0x7fffffffu);
  return std::bit_cast<float>(m);
}

// |x| <= 127 to the nearest integer, halves to even: adding and taking away 1.5 * 2^52 rounds in the current
// (nearest) rounding mode, as std::nearbyint does, without its library call, so loops over a row vectorize.
inline double round_half_even(double x) {
  constexpr double kRound = 6755399441055744.0;
  return (x + kRound) - kRound;
}

// An int8 code: round_half_to_even(v * 127 / scale), scale > 0. v * 127 is exact in double and the division is
// correctly rounded, so exact halves stay exact and round to even.
inline int8_t int8_code(float v, double scale) { return int8_t(int32_t(round_half_even(double(v) * 127.0 / scale))); }

// Whether every value is finite (its exponent bits not all ones), in one integer pass that vectorizes.
bool all_finite(const float* v, int64_t n) {
  uint32_t special = 0;
  for (int64_t i = 0; i < n; ++i) special |= uint32_t((std::bit_cast<uint32_t>(v[i]) & 0x7f800000u) == 0x7f800000u);
  return special == 0;
}

// Index of the first inf/NaN in v, or -1: the error names it. (An inf or NaN maximum would scale every code of its
// block or row to 0 or NaN, so such weights would quantize to garbage silently.)
int64_t first_non_finite(const float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i])) return i;
  return -1;
}

// Records the smallest offending element index found by any thread (no exceptions inside OpenMP regions).
void note_non_finite(std::atomic<int64_t>& first, int64_t index) {
  int64_t cur = first.load();
  while ((cur < 0 || index < cur) && !first.compare_exchange_weak(cur, index)) {
  }
}

template <typename T>
NamedTensor make_tensor(std::string name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& v) {
  NamedTensor t{std::move(name), dtype, std::move(shape), std::vector<uint8_t>(v.size() * sizeof(T))};
  if (!v.empty()) std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

std::string torch_dtype_name(DType d) {
  switch (d) {
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    case DType::F32: return "float32";
    default: fail("bitsandbytes quant_state: unsupported original dtype {}", dtype_name(d));
  }
}

// json.dumps(dict) as Python writes it (", " and ": " separators, insertion order): the quant_state tensor holds
// these bytes, so they must match for byte-identical checkpoints. Doubles use the shortest round-trip form, as
// Python's repr does.
std::string quant_state_json(const QuantizedMatrix& q, DType orig_dtype) {
  std::string s = fmt::format(R"({{"quant_type": "{}", "blocksize": {}, "dtype": "{}", "shape": [{}, {}])",
                              precision_name(q.scheme), q.blocksize, torch_dtype_name(orig_dtype), q.rows, q.cols);
  if (q.double_quant)
    s += fmt::format(R"(, "nested_blocksize": {}, "nested_dtype": "float32", "nested_offset": {})",
                     kNestedBlocksize, nlohmann::json(double(q.offset)).dump());
  return s + "}";
}

}  // namespace

bool is_4bit(Scheme s) { return s == Scheme::NF4 || s == Scheme::FP4; }


std::array<float, 16> code4(Scheme s) {
  std::array<float, 16> c{};
  if (s == Scheme::NF4) {
    for (int i = 0; i < 16; ++i) c[i] = std::bit_cast<float>(kNF4Bits[i]);
  } else if (s == Scheme::FP4) {
    // Bit 3 is the sign; bitsandbytes builds the table from {0, 0.0625, 8, 12, 4, 6, 2, 3} / 12 and its "-0"
    // entry is a Python int, so index 8 holds +0.0.
    const float mag[8] = {0, 0.0625f, 8, 12, 4, 6, 2, 3};
    for (int i = 0; i < 8; ++i) {
      c[i] = mag[i] / 12.0f;
      c[i + 8] = i == 0 ? 0.0f : -mag[i] / 12.0f;
    }
  } else {
    fail("code4: {} is not a 4-bit scheme", precision_name(s));
  }
  return c;
}

const std::array<float, 256>& dynamic_map_signed() {
  static const std::array<float, 256> map = [] {
    std::array<float, 256> m{};
    for (int i = 0; i < 256; ++i) m[i] = std::bit_cast<float>(kDynamicMapBits[i]);
    return m;
  }();
  return map;
}

uint8_t quantize4_index(Scheme s, float x) { return s == Scheme::NF4 ? nf4_index(x) : fp4_index(x); }

uint8_t dynamic_map_index(float x) {
  const auto& m = dynamic_map_signed();
  int hi = int(std::lower_bound(m.begin(), m.end(), x) - m.begin());  // first entry >= x (0 for NaN)
  if (hi == 0) return 0;
  if (hi == 256) return 255;
  float mid = (m[hi - 1] + m[hi]) * 0.5f;
  return uint8_t(x > mid ? hi : hi - 1);
}

int8_t quantize_int8(float v, float scale) {
  return scale == 0 ? 0 : int8_code(v, double(scale));
}

// The add must not fuse with the multiply: bitsandbytes dequantizes the nested maxima, then adds the offset.
// (GCC may contract across statements when FMA is enabled; clang only within one expression.)
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
float QuantizedMatrix::block_absmax(int64_t block) const {
  if (!double_quant) return absmax[size_t(block)];
  float scaled = dynamic_map_signed()[absmax_q[size_t(block)]] * absmax2[size_t(block / kNestedBlocksize)];
  return scaled + offset;
}

size_t QuantizedMatrix::bytes() const {
  return packed.size() + absmax.size() * 4 + absmax_q.size() + absmax2.size() * 4 + cb.size() + scb.size() * 4;
}

QuantizedMatrix quantize(const void* w, DType dtype, int64_t rows, int64_t cols, const QuantOptions& opt) {
  if (dtype != DType::BF16 && dtype != DType::F16 && dtype != DType::F32)
    fail("quantize: weight dtype {} is not BF16, F16 or F32", dtype_name(dtype));
  if (rows <= 0 || cols <= 0) fail("quantize: empty weight [{}, {}]", rows, cols);
  std::atomic<int64_t> bad{-1};
  auto check_finite = [&] {
    if (bad >= 0)
      fail("quantize: weight [{}, {}] has a non-finite value (inf or NaN) at row {}, column {}", rows, cols,
           bad / cols, bad % cols);
  };
  QuantizedMatrix q;
  q.scheme = opt.scheme;
  q.rows = rows;
  q.cols = cols;
  q.compute = opt.compute;
  if (!is_4bit(opt.scheme)) {
    q.threshold = opt.scheme == Scheme::LLMInt8 ? opt.llm_int8_threshold : 0.0f;
    q.cb.resize(size_t(rows * cols));
    q.scb.resize(size_t(rows));
#pragma omp parallel
    {
      std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        load_f32(w, dtype, r * cols, cols, row.data());
        if (!all_finite(row.data(), cols)) note_non_finite(bad, r * cols + first_non_finite(row.data(), cols));
        float s = max_abs(row.data(), cols);
        q.scb[size_t(r)] = s;
        int8_t* dst = q.cb.data() + r * cols;
        if (s == 0) {
          std::fill(dst, dst + cols, int8_t(0));
          continue;
        }
        // Local copies: int8 stores may alias anything the OpenMP region shares, which would stop vectorization.
        const double scale = double(s);
        const int64_t n = cols;
        const float* x = row.data();
        for (int64_t c = 0; c < n; ++c) dst[c] = int8_code(x[c], scale);
      }
    }
    check_finite();
    return q;
  }

  if (opt.blocksize <= 0 || opt.blocksize % 2) fail("quantize: blocksize {} must be positive and even", opt.blocksize);
  q.blocksize = opt.blocksize;
  q.double_quant = opt.double_quant;
  const int64_t numel = rows * cols, nblocks = q.num_blocks();
  q.packed.resize(size_t((numel + 1) / 2));
  std::vector<float> absmax(static_cast<size_t>(nblocks));
  const bool nf4 = opt.scheme == Scheme::NF4;
  // Blocks start at even elements (even blocksize), so threads never share a packed byte.
#pragma omp parallel
  {
    std::vector<float> block(static_cast<size_t>(opt.blocksize));
    std::vector<uint8_t> idx(static_cast<size_t>(opt.blocksize) + 1);  // + the odd tail's padding nibble
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t start = b * opt.blocksize, count = std::min<int64_t>(opt.blocksize, numel - start);
      float* x = block.data();
      load_f32(w, dtype, start, count, x);
      if (!all_finite(x, count)) note_non_finite(bad, start + first_non_finite(x, count));
      const float amax = max_abs(x, count);
      absmax[size_t(b)] = amax;
      const float inv = 1.0f / amax;  // bitsandbytes scales by the fp32 reciprocal
      uint8_t* code = idx.data();
      if (nf4)
        for (int64_t i = 0; i < count; ++i) code[i] = nf4_index(x[i] * inv);
      else
        for (int64_t i = 0; i < count; ++i) code[i] = fp4_index(x[i] * inv);
      code[count] = 0;
      uint8_t* dst = q.packed.data() + start / 2;
      for (int64_t i = 0; i < (count + 1) / 2; ++i)
        dst[i] = uint8_t(code[2 * i] << 4 | code[2 * i + 1]);  // even element in the high nibble
    }
  }
  check_finite();
  if (!opt.double_quant) {
    q.absmax = std::move(absmax);
    return q;
  }

  double sum = 0;
  for (float a : absmax) sum += a;
  q.offset = float(sum / double(nblocks));
  const int64_t nnested = (nblocks + kNestedBlocksize - 1) / kNestedBlocksize;
  q.absmax_q.resize(size_t(nblocks));
  q.absmax2.resize(size_t(nnested));
#pragma omp parallel for schedule(static)
  for (int64_t nb = 0; nb < nnested; ++nb) {
    int64_t start = nb * kNestedBlocksize, count = std::min<int64_t>(kNestedBlocksize, nblocks - start);
    float amax2 = 0;
    for (int64_t i = start; i < start + count; ++i) amax2 = std::max(amax2, std::fabs(absmax[size_t(i)] - q.offset));
    q.absmax2[size_t(nb)] = amax2;
    float inv = 1.0f / amax2;
    for (int64_t i = start; i < start + count; ++i)
      q.absmax_q[size_t(i)] = dynamic_map_index((absmax[size_t(i)] - q.offset) * inv);
  }
  return q;
}

size_t quantized_bytes(int64_t rows, int64_t cols, const QuantOptions& opt) {
  const int64_t numel = rows * cols;
  if (!is_4bit(opt.scheme)) return size_t(numel) + size_t(rows) * 4;  // cb + scb
  const int64_t nblocks = (numel + opt.blocksize - 1) / opt.blocksize;
  size_t packed = size_t((numel + 1) / 2);
  if (!opt.double_quant) return packed + size_t(nblocks) * 4;
  return packed + size_t(nblocks) + size_t((nblocks + kNestedBlocksize - 1) / kNestedBlocksize) * 4;
}

QuantizedMatrix slice_rows(const QuantizedMatrix& q, int64_t row0, int64_t rows) {
  if (row0 < 0 || rows <= 0 || row0 + rows > q.rows)
    fail("slice_rows: rows [{}, {}) outside a [{}, {}] matrix", row0, row0 + rows, q.rows, q.cols);
  QuantizedMatrix s;
  s.scheme = q.scheme;
  s.rows = rows;
  s.cols = q.cols;
  s.blocksize = q.blocksize;
  s.threshold = q.threshold;
  s.compute = q.compute;
  if (!is_4bit(q.scheme)) {
    s.cb.assign(q.cb.begin() + row0 * q.cols, q.cb.begin() + (row0 + rows) * q.cols);
    s.scb.assign(q.scb.begin() + row0, q.scb.begin() + row0 + rows);
    return s;
  }
  const int64_t start = row0 * q.cols, end = (row0 + rows) * q.cols;
  if (start % q.blocksize || (end % q.blocksize && end != q.numel()))
    fail("slice_rows: rows [{}, {}) of a [{}, {}] matrix do not start and end on {}-element block boundaries", row0,
         row0 + rows, q.rows, q.cols, q.blocksize);
  s.packed.assign(q.packed.begin() + start / 2, q.packed.begin() + (end + 1) / 2);
  // The double-quantized maxima are resolved to the exact fp32 values every kernel multiplies by.
  s.double_quant = false;
  for (int64_t b = start / q.blocksize; b < (end + q.blocksize - 1) / q.blocksize; ++b)
    s.absmax.push_back(q.block_absmax(b));
  return s;
}

void dequantize(const QuantizedMatrix& q, float* out) {
  const int64_t numel = q.numel();
  if (is_4bit(q.scheme)) {
    auto code = code4(q.scheme);
    for (int64_t e = 0; e < numel; ++e) {
      uint8_t byte = q.packed[size_t(e / 2)];
      uint8_t idx = e % 2 == 0 ? byte >> 4 : byte & 15;
      out[e] = code[idx] * q.block_absmax(e / q.blocksize);
    }
    return;
  }
  for (int64_t r = 0; r < q.rows; ++r) {
    float scale = q.scb[size_t(r)] / 127.0f;
    for (int64_t c = 0; c < q.cols; ++c) out[r * q.cols + c] = float(q.cb[size_t(r * q.cols + c)]) * scale;
  }
}

std::vector<NamedTensor> to_bnb_tensors(const QuantizedMatrix& q, const std::string& prefix, DType orig_dtype) {
  const std::string w = prefix + ".weight";
  std::vector<NamedTensor> out;
  if (!is_4bit(q.scheme)) {
    out.push_back(make_tensor(w, DType::I8, {q.rows, q.cols}, q.cb));
    out.push_back(make_tensor(prefix + ".SCB", DType::F32, {q.rows}, q.scb));
    out.push_back(make_tensor(prefix + ".weight_format", DType::U8, {}, std::vector<uint8_t>{0}));  // "row"
    return out;
  }
  const int64_t nblocks = q.num_blocks();
  out.push_back(make_tensor(w, DType::U8, {int64_t(q.packed.size()), 1}, q.packed));
  if (q.double_quant)
    out.push_back(make_tensor(w + ".absmax", DType::U8, {nblocks}, q.absmax_q));
  else
    out.push_back(make_tensor(w + ".absmax", DType::F32, {nblocks}, q.absmax));
  auto code = code4(q.scheme);
  out.push_back(make_tensor(w + ".quant_map", DType::F32, {16}, std::vector<float>(code.begin(), code.end())));
  if (q.double_quant) {
    out.push_back(make_tensor(w + ".nested_absmax", DType::F32, {int64_t(q.absmax2.size())}, q.absmax2));
    const auto& map = dynamic_map_signed();
    out.push_back(make_tensor(w + ".nested_quant_map", DType::F32, {256}, std::vector<float>(map.begin(), map.end())));
  }
  std::string js = quant_state_json(q, orig_dtype);
  out.push_back(make_tensor(w + ".quant_state.bitsandbytes__" + std::string(precision_name(q.scheme)), DType::U8,
                            {int64_t(js.size())}, std::vector<uint8_t>(js.begin(), js.end())));
  return out;
}

QuantizedMatrix from_bnb_tensors(const std::string& prefix,
                                 const std::function<const TensorRef*(const std::string&)>& get,
                                 const std::string& origin, float llm_int8_threshold) {
  auto require = [&](const std::string& name, DType dtype, size_t nbytes) -> const TensorRef& {
    const TensorRef* t = get(name);
    if (!t) fail("{}: missing tensor {}", origin, name);
    if (t->dtype != dtype) fail("{}: tensor {} is {}, expected {}", origin, name, dtype_name(t->dtype), dtype_name(dtype));
    if (t->nbytes != nbytes) fail("{}: tensor {} holds {} bytes, expected {}", origin, name, t->nbytes, nbytes);
    return *t;
  };
  auto copy = [](auto& dst, const TensorRef& t) {
    dst.resize(t.nbytes / sizeof(dst[0]));
    if (t.nbytes) std::memcpy(dst.data(), t.data, t.nbytes);
  };
  const std::string w = prefix + ".weight";
  QuantizedMatrix q;

  const TensorRef* state = nullptr;
  for (Scheme s : {Scheme::NF4, Scheme::FP4})
    if ((state = get(w + ".quant_state.bitsandbytes__" + std::string(precision_name(s))))) {
      q.scheme = s;
      break;
    }
  if (!state) {
    const TensorRef* weight = get(w);
    if (!weight) fail("{}: missing tensor {}", origin, w);
    if (!get(prefix + ".SCB"))
      fail("{}: {} has neither a 4-bit quant_state nor an 8-bit SCB tensor", origin, w);
    if (weight->shape.size() != 2) fail("{}: tensor {} must be 2-dimensional", origin, w);
    q.scheme = Scheme::LLMInt8;
    q.threshold = llm_int8_threshold;
    q.rows = weight->shape[0];
    q.cols = weight->shape[1];
    copy(q.cb, require(w, DType::I8, size_t(q.rows * q.cols)));
    copy(q.scb, require(prefix + ".SCB", DType::F32, size_t(q.rows) * 4));
    if (const TensorRef* f = get(prefix + ".weight_format")) {
      if (f->dtype != DType::U8 || f->nbytes != 1) fail("{}: {}.weight_format must be one U8", origin, prefix);
      if (f->data[0] != 0) fail("{}: {} uses weight_format {} (only 0, \"row\", is supported)", origin, w, f->data[0]);
    }
    return q;
  }

  const std::string state_name = w + ".quant_state.bitsandbytes__" + std::string(precision_name(q.scheme));
  if (state->dtype != DType::U8) fail("{}: tensor {} must be U8", origin, state_name);
  auto js = parse_json(std::string_view(reinterpret_cast<const char*>(state->data), state->nbytes),
                       origin + ": " + state_name);
  if (!js.is_object()) fail("{}: tensor {} is not a JSON object", origin, state_name);
  try {
    if (js.at("quant_type").get<std::string>() != precision_name(q.scheme))
      fail("{}: {} says quant_type {}", origin, state_name, js.at("quant_type").dump());
    if (!js.at("blocksize").is_number_integer() || js["blocksize"].get<int64_t>() > (1 << 24))
      fail("{}: {} has blocksize {}", origin, state_name, js["blocksize"].dump());
    q.blocksize = js.at("blocksize").get<int>();
    auto shape = js.at("shape").get<std::vector<int64_t>>();
    // Each side below 2^31: rows x cols and the block counts derived from them must not overflow.
    if (shape.size() != 2 || shape[0] <= 0 || shape[1] <= 0 || shape[0] > INT32_MAX || shape[1] > INT32_MAX)
      fail("{}: {} has shape {}", origin, state_name, js.at("shape").dump());
    q.rows = shape[0];
    q.cols = shape[1];
    q.double_quant = js.contains("nested_offset");
    if (q.double_quant) {
      q.offset = js.at("nested_offset").get<float>();
      if (js.value("nested_blocksize", 0) != kNestedBlocksize)
        fail("{}: {} has nested_blocksize {} (only {} is supported)", origin, state_name,
             js.value("nested_blocksize", 0), kNestedBlocksize);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}: {}", origin, state_name, e.what());
  }
  if (q.blocksize <= 0 || q.blocksize % 2) fail("{}: {} has blocksize {}", origin, state_name, q.blocksize);

  const int64_t nblocks = q.num_blocks();
  copy(q.packed, require(w, DType::U8, size_t((q.numel() + 1) / 2)));
  auto check_map = [&](const std::string& name, const float* expect, size_t n) {
    const TensorRef& t = require(name, DType::F32, n * 4);
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, t.data + i * 4, 4);
      if (v != expect[i]) fail("{}: {} entry {} is {}, expected {}", origin, name, i, v, expect[i]);
    }
  };
  auto code = code4(q.scheme);
  check_map(w + ".quant_map", code.data(), 16);
  if (q.double_quant) {
    copy(q.absmax_q, require(w + ".absmax", DType::U8, size_t(nblocks)));
    int64_t nnested = (nblocks + kNestedBlocksize - 1) / kNestedBlocksize;
    copy(q.absmax2, require(w + ".nested_absmax", DType::F32, size_t(nnested) * 4));
    check_map(w + ".nested_quant_map", dynamic_map_signed().data(), 256);
  } else {
    copy(q.absmax, require(w + ".absmax", DType::F32, size_t(nblocks) * 4));
  }
  return q;
}

nlohmann::json bnb_quantization_config(const QuantOptions& opt) {
  bool four = is_4bit(opt.scheme);
  const char* compute_dtype = opt.compute == DType::F16 ? "float16" : opt.compute == DType::BF16 ? "bfloat16" : "float32";
  // For 8-bit the 4-bit fields keep BitsAndBytesConfig's defaults, as transformers writes them.
  return {{"quant_method", "bitsandbytes"},
          {"load_in_4bit", four},
          {"load_in_8bit", !four},
          {"bnb_4bit_quant_type", four ? std::string(precision_name(opt.scheme)) : "fp4"},
          {"bnb_4bit_use_double_quant", four && opt.double_quant},
          {"bnb_4bit_compute_dtype", four ? compute_dtype : "float32"},
          {"bnb_4bit_quant_storage", "uint8"},
          {"llm_int8_threshold", double(opt.llm_int8_threshold)},
          {"llm_int8_skip_modules", nullptr},
          {"llm_int8_has_fp16_weight", false},
          {"llm_int8_enable_fp32_cpu_offload", false}};
}

}  // namespace bq::quant
