// CPU matmul over bitsandbytes-format weights: y[n, rows] = x[n, cols] · Wᵀ.
// n = 1 (decode) reads each weight row once and dots it with x; n > 1 (prefill) dequantizes kTileRows rows at a
// time into a per-thread buffer and multiplies that tile with every token, so the dequantization is amortized.
// LLM.int8 quantizes the activations once per call and runs int8 x int8 -> int32 dots.
#include "backend/cpu/qmatmul.h"

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <vector>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "core/host_memory.h"

namespace bq::quant {

namespace {

std::atomic<bool> g_force_portable{false};

constexpr int64_t kTileRows = 16;  // 16 rows x 4096 fp32 = 256 KiB: stays in L2 while every token passes

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

bool cpu_has_f16c() {  // CPUID leaf 1, ECX bit 29 (not every compiler's __builtin_cpu_supports knows "f16c")
  unsigned a = 0, b = 0, c = 0, d = 0;
  static const bool has = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
  return has;
}

inline uint8_t nibble(const uint8_t* packed, int64_t e) {
  uint8_t b = packed[e / 2];
  return e % 2 == 0 ? b >> 4 : b & 15;  // even element in the high nibble
}

// Calls f(start, end, absmax) for the pieces of row r that lie in one 4-bit block (flat element indices).
template <typename F>
inline void for_each_block_segment(const QuantizedMatrix& w, int64_t r, F&& f) {
  const int64_t e0 = r * w.cols, e1 = e0 + w.cols;
  for (int64_t s = e0; s < e1;) {
    int64_t b = s / w.blocksize, e = std::min(e1, (b + 1) * w.blocksize);
    f(s, e, w.block_absmax(b));
    s = e;
  }
}

// ---------------------------------------------------------------- portable kernels

// Eight independent partial sums let the compiler vectorize without reassociating.
float dot_f32_portable(const float* a, const float* b, int64_t n) {
  float s[8] = {};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; ++j) s[j] += a[k + j] * b[k + j];
  for (; k < n; ++k) s[0] += a[k] * b[k];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

int32_t dot_i8_portable(const int8_t* a, const int8_t* b, int64_t n) {
  int32_t s = 0;
  for (int64_t k = 0; k < n; ++k) s += int32_t(a[k]) * int32_t(b[k]);
  return s;
}

float row_dot_portable(const QuantizedMatrix& w, const float* code, int64_t r, const float* x) {
  if (w.scheme == Scheme::Int8) {
    const int8_t* cb = w.cb.data() + r * w.cols;
    float s[8] = {};
    int64_t k = 0;
    for (; k + 8 <= w.cols; k += 8)
      for (int j = 0; j < 8; ++j) s[j] += float(cb[k + j]) * x[k + j];
    for (; k < w.cols; ++k) s[0] += float(cb[k]) * x[k];
    float sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    return sum * (w.scb[size_t(r)] / 127.0f);
  }
  const int64_t e0 = r * w.cols;
  float total = 0;
  for_each_block_segment(w, r, [&](int64_t s, int64_t e, float a) {
    float acc = 0;
    for (int64_t i = s; i < e; ++i) acc += code[nibble(w.packed.data(), i)] * x[i - e0];
    total += a * acc;
  });
  return total;
}

void dequant_rows_portable(const QuantizedMatrix& w, const float* code, int64_t r0, int64_t nr, float* out) {
  for (int64_t r = r0; r < r0 + nr; ++r) {
    float* dst = out + (r - r0) * w.cols;
    if (w.scheme == Scheme::Int8) {
      float scale = w.scb[size_t(r)] / 127.0f;
      const int8_t* cb = w.cb.data() + r * w.cols;
      for (int64_t c = 0; c < w.cols; ++c) dst[c] = float(cb[c]) * scale;
      continue;
    }
    const int64_t e0 = r * w.cols;
    for_each_block_segment(w, r, [&](int64_t s, int64_t e, float a) {
      for (int64_t i = s; i < e; ++i) dst[i - e0] = code[nibble(w.packed.data(), i)] * a;
    });
  }
}

// out[t * ldo + i] = tile row i · x[t] for nr tile rows and n tokens.
void tile_matmul_portable(const float* tile, int64_t nr, int64_t cols, const float* x, int64_t n, float* out,
                          int64_t ldo) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < nr; ++i) out[t * ldo + i] = dot_f32_portable(tile + i * cols, x + t * cols, cols);
}

// ---------------------------------------------------------------- AVX2 / FMA kernels

#define BQ_AVX2 __attribute__((target("avx2,fma")))

BQ_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Codebook lookup of eight 4-bit indices: two 8-entry permutes, bit 3 (moved to the sign bit) picks the half.
BQ_AVX2 inline __m256 lookup8(__m256i idx, __m256 tlo, __m256 thi) {
  __m256 lo = _mm256_permutevar8x32_ps(tlo, idx), hi = _mm256_permutevar8x32_ps(thi, idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

// Decodes 32 elements (16 packed bytes, starting at an even element) into four vectors of codebook values.
BQ_AVX2 inline void decode32(const uint8_t* p, __m256 tlo, __m256 thi, __m256 v[4]) {
  const __m128i mask = _mm_set1_epi8(0x0f);
  __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask), lo = _mm_and_si128(b, mask);
  __m128i e0 = _mm_unpacklo_epi8(hi, lo), e1 = _mm_unpackhi_epi8(hi, lo);  // element order restored
  v[0] = lookup8(_mm256_cvtepu8_epi32(e0), tlo, thi);
  v[1] = lookup8(_mm256_cvtepu8_epi32(_mm_srli_si128(e0, 8)), tlo, thi);
  v[2] = lookup8(_mm256_cvtepu8_epi32(e1), tlo, thi);
  v[3] = lookup8(_mm256_cvtepu8_epi32(_mm_srli_si128(e1, 8)), tlo, thi);
}

BQ_AVX2 inline __m256 load_i8_as_f32(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

BQ_AVX2 float dot_i8f_avx2(const int8_t* cb, const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  for (; k + 32 <= n; k += 32) {
    a0 = _mm256_fmadd_ps(load_i8_as_f32(cb + k), _mm256_loadu_ps(x + k), a0);
    a1 = _mm256_fmadd_ps(load_i8_as_f32(cb + k + 8), _mm256_loadu_ps(x + k + 8), a1);
    a2 = _mm256_fmadd_ps(load_i8_as_f32(cb + k + 16), _mm256_loadu_ps(x + k + 16), a2);
    a3 = _mm256_fmadd_ps(load_i8_as_f32(cb + k + 24), _mm256_loadu_ps(x + k + 24), a3);
  }
  for (; k + 8 <= n; k += 8) a0 = _mm256_fmadd_ps(load_i8_as_f32(cb + k), _mm256_loadu_ps(x + k), a0);
  float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; k < n; ++k) s += float(cb[k]) * x[k];
  return s;
}

BQ_AVX2 int32_t dot_i8_avx2(const int8_t* a, const int8_t* b, int64_t n) {
  // maddubs multiplies unsigned by signed bytes: |a| times b with a's sign; pairs of products (at most
  // 2 * 127 * 128) fit int16.
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 32 <= n; k += 32) {
    __m256i va = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + k));
    __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k));
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(va), _mm256_sign_epi8(vb, va));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
  }
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  int32_t sum = _mm_cvtsi128_si32(s);
  for (; k < n; ++k) sum += int32_t(a[k]) * int32_t(b[k]);
  return sum;
}

BQ_AVX2 float row_dot_avx2(const QuantizedMatrix& w, const float* code, int64_t r, const float* x) {
  if (w.scheme == Scheme::Int8) return dot_i8f_avx2(w.cb.data() + r * w.cols, x, w.cols) * (w.scb[size_t(r)] / 127.0f);
  const __m256 tlo = _mm256_loadu_ps(code), thi = _mm256_loadu_ps(code + 8);
  const uint8_t* packed = w.packed.data();
  const int64_t e0 = r * w.cols;
  __m256 total = _mm256_setzero_ps();
  float total_s = 0;
  for_each_block_segment(w, r, [&](int64_t s, int64_t e, float a) BQ_AVX2 {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    float acc_s = 0;
    int64_t i = s;
    if (i % 2) acc_s += code[nibble(packed, i)] * x[i - e0], ++i;
    for (; i + 32 <= e; i += 32) {
      __m256 v[4];
      decode32(packed + i / 2, tlo, thi, v);
      const float* xp = x + (i - e0);
      a0 = _mm256_fmadd_ps(v[0], _mm256_loadu_ps(xp), a0);
      a1 = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(xp + 8), a1);
      a2 = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(xp + 16), a2);
      a3 = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(xp + 24), a3);
    }
    for (; i < e; ++i) acc_s += code[nibble(packed, i)] * x[i - e0];
    total = _mm256_fmadd_ps(_mm256_set1_ps(a), _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), total);
    total_s += a * acc_s;
  });
  return hsum(total) + total_s;
}

// Decode fast path (cols and blocksize multiples of 32): the four bytes of each float code are looked up with
// pshufb from 16-entry byte tables, then interleaved back into floats. That yields the elements of a 32-element
// chunk in a fixed shuffled order; x is permuted into the same order once per call (nibble_order_x).
struct BytePlanes {
  __m256i plane[4];
};

BQ_AVX2 BytePlanes make_byte_planes(const float* code) {
  BytePlanes bp;
  for (int k = 0; k < 4; ++k) {
    alignas(16) uint8_t bytes[16];
    for (int c = 0; c < 16; ++c) bytes[c] = uint8_t(std::bit_cast<uint32_t>(code[c]) >> (8 * k));
    bp.plane[k] = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(bytes)));
  }
  return bp;
}

// Lane 0 holds the high nibbles (even elements), lane 1 the low nibbles (odd elements); after the byte and word
// interleaves, v[m] holds elements 8m, 8m+2, 8m+4, 8m+6, 8m+1, 8m+3, 8m+5, 8m+7.
BQ_AVX2 inline void decode32_shuffled(const uint8_t* p, const BytePlanes& bp, __m256 v[4]) {
  const __m128i mask = _mm_set1_epi8(0x0f);
  __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  __m256i idx = _mm256_set_m128i(_mm_and_si128(b, mask), _mm_and_si128(_mm_srli_epi16(b, 4), mask));
  __m256i p0 = _mm256_shuffle_epi8(bp.plane[0], idx), p1 = _mm256_shuffle_epi8(bp.plane[1], idx);
  __m256i p2 = _mm256_shuffle_epi8(bp.plane[2], idx), p3 = _mm256_shuffle_epi8(bp.plane[3], idx);
  __m256i lo01 = _mm256_unpacklo_epi8(p0, p1), hi01 = _mm256_unpackhi_epi8(p0, p1);
  __m256i lo23 = _mm256_unpacklo_epi8(p2, p3), hi23 = _mm256_unpackhi_epi8(p2, p3);
  v[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(lo01, lo23));
  v[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(lo01, lo23));
  v[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(hi01, hi23));
  v[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(hi01, hi23));
}

std::vector<float> nibble_order_x(const float* x, int64_t cols) {
  std::vector<float> xp(static_cast<size_t>(cols));
  for (int64_t k = 0; k < cols; k += 32)
    for (int m = 0; m < 4; ++m)
      for (int s = 0; s < 8; ++s) xp[size_t(k + 8 * m + s)] = x[k + 8 * m + (s < 4 ? 2 * s : 2 * (s - 4) + 1)];
  return xp;
}

BQ_AVX2 float row_dot_shuffled_avx2(const QuantizedMatrix& w, const BytePlanes& bp, int64_t r, const float* xp) {
  const uint8_t* packed = w.packed.data();
  const int64_t e0 = r * w.cols;
  __m256 total = _mm256_setzero_ps();
  for_each_block_segment(w, r, [&](int64_t s, int64_t e, float a) BQ_AVX2 {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = s; i < e; i += 32) {
      __m256 v[4];
      decode32_shuffled(packed + i / 2, bp, v);
      const float* xc = xp + (i - e0);
      a0 = _mm256_fmadd_ps(v[0], _mm256_loadu_ps(xc), a0);
      a1 = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(xc + 8), a1);
      a2 = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(xc + 16), a2);
      a3 = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(xc + 24), a3);
    }
    total = _mm256_fmadd_ps(_mm256_set1_ps(a), _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), total);
  });
  return hsum(total);
}

BQ_AVX2 void dequant_rows_avx2(const QuantizedMatrix& w, const float* code, int64_t r0, int64_t nr, float* out) {
  const __m256 tlo = _mm256_loadu_ps(code), thi = _mm256_loadu_ps(code + 8);
  const uint8_t* packed = w.packed.data();
  for (int64_t r = r0; r < r0 + nr; ++r) {
    float* dst = out + (r - r0) * w.cols;
    if (w.scheme == Scheme::Int8) {
      const int8_t* cb = w.cb.data() + r * w.cols;
      const float scale = w.scb[size_t(r)] / 127.0f;
      const __m256 vs = _mm256_set1_ps(scale);
      int64_t c = 0;
      for (; c + 8 <= w.cols; c += 8) _mm256_storeu_ps(dst + c, _mm256_mul_ps(load_i8_as_f32(cb + c), vs));
      for (; c < w.cols; ++c) dst[c] = float(cb[c]) * scale;
      continue;
    }
    const int64_t e0 = r * w.cols;
    for_each_block_segment(w, r, [&](int64_t s, int64_t e, float a) BQ_AVX2 {
      const __m256 va = _mm256_set1_ps(a);
      int64_t i = s;
      if (i % 2) dst[i - e0] = code[nibble(packed, i)] * a, ++i;
      for (; i + 32 <= e; i += 32) {
        __m256 v[4];
        decode32(packed + i / 2, tlo, thi, v);
        for (int j = 0; j < 4; ++j) _mm256_storeu_ps(dst + (i - e0) + 8 * j, _mm256_mul_ps(v[j], va));
      }
      for (; i < e; ++i) dst[i - e0] = code[nibble(packed, i)] * a;
    });
  }
}

// R tile rows times T tokens, all accumulators in registers.
template <int R, int T>
BQ_AVX2 void micro_tile_avx2(const float* tile, int64_t cols, const float* x, float* out, int64_t ldo) {
  __m256 acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= cols; k += 8) {
    __m256 xv[T];
    for (int t = 0; t < T; ++t) xv[t] = _mm256_loadu_ps(x + t * cols + k);
    for (int i = 0; i < R; ++i) {
      __m256 wv = _mm256_loadu_ps(tile + i * cols + k);
      for (int t = 0; t < T; ++t) acc[i][t] = _mm256_fmadd_ps(wv, xv[t], acc[i][t]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) {
      float s = hsum(acc[i][t]);
      for (int64_t kk = k; kk < cols; ++kk) s += tile[i * cols + kk] * x[t * cols + kk];
      out[t * ldo + i] = s;
    }
}

BQ_AVX2 void tile_matmul_avx2(const float* tile, int64_t nr, int64_t cols, const float* x, int64_t n, float* out,
                              int64_t ldo) {
  for (int64_t i = 0; i < nr; i += 4) {
    const float* ti = tile + i * cols;
    float* oi = out + i;
    int64_t t = 0;
    if (nr - i >= 4) {
      for (; t + 2 <= n; t += 2) micro_tile_avx2<4, 2>(ti, cols, x + t * cols, oi + t * ldo, ldo);
      for (; t < n; ++t) micro_tile_avx2<4, 1>(ti, cols, x + t * cols, oi + t * ldo, ldo);
    } else {
      for (int64_t j = 0; j < nr - i; ++j)
        for (t = 0; t < n; ++t) micro_tile_avx2<1, 1>(ti + j * cols, cols, x + t * cols, oi + j + t * ldo, ldo);
    }
  }
}

// ---------------------------------------------------------------- drivers

void matmul_llm_int8(const QuantizedMatrix& w, const float* x, int64_t n, float* y, bool avx2) {
  const int64_t rows = w.rows, cols = w.cols;
  const float thr = w.threshold;
  // Outlier feature columns: any token with |x| >= threshold (over the whole batch, as bitsandbytes).
  std::vector<int64_t> outliers;
  if (thr > 0)
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t t = 0; t < n; ++t)
        if (std::fabs(x[t * cols + c]) >= thr) {
          outliers.push_back(c);
          break;
        }
  // Per token: SCA = max |x| over the elements below the threshold; int8 activations with outlier columns zeroed.
  tracked_vector<int8_t> ca(static_cast<size_t>(n * cols));
  tracked_vector<float> sca(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) if (n >= 4)  // waking threads costs more than one token's work
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * cols;
    float s = 0;
    for (int64_t c = 0; c < cols; ++c)
      if (thr <= 0 || std::fabs(xt[c]) < thr) s = std::max(s, std::fabs(xt[c]));
    sca[size_t(t)] = s;
    int8_t* dst = ca.data() + t * cols;
    for (int64_t c = 0; c < cols; ++c) dst[c] = quantize_int8(xt[c], s);
    for (int64_t c : outliers) dst[c] = 0;
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* cb = w.cb.data() + r * cols;
    const double scb = w.scb[size_t(r)];
    const float wscale = w.scb[size_t(r)] / 127.0f;
    for (int64_t t = 0; t < n; ++t) {
      const int8_t* a = ca.data() + t * cols;
      int32_t acc = avx2 ? dot_i8_avx2(a, cb, cols) : dot_i8_portable(a, cb, cols);
      // Outlier columns in floating point (bitsandbytes: 16-bit) against the dequantized int8 weight.
      float extra = 0;
      for (int64_t c : outliers) extra += x[t * cols + c] * (float(cb[c]) * wscale);
      y[t * rows + r] = float(double(acc) * (double(sca[size_t(t)]) * scb / (127.0 * 127.0))) + extra;
    }
  }
}

}  // namespace

size_t matmul_scratch_bytes(Scheme s, DType compute, int64_t n, int64_t cols, int threads) {
  if (n <= 0) return 0;
  const size_t rounded_x = compute == DType::F32 ? 0 : size_t(n * cols) * sizeof(float);
  if (s == Scheme::LLMInt8) return rounded_x + size_t(n * cols) + size_t(n) * sizeof(float);
  return rounded_x + (n == 1 && !cpu::batch_invariant() ? 0 : size_t(threads) * size_t(kTileRows * cols) * sizeof(float));
}

void set_force_portable(bool on) { g_force_portable = on; }
bool using_avx2() { return !g_force_portable && cpu_has_avx2(); }

namespace {

void matmul_f32(const QuantizedMatrix& w, const float* x, int64_t n, float* y) {
  const bool avx2 = using_avx2();
  if (w.scheme == Scheme::LLMInt8) {
    if (cpu::batch_invariant()) fail("{}", kLlmInt8DependsOnTheBatch);
    return matmul_llm_int8(w, x, n, y, avx2);
  }
  // One row as a matrix-vector product, except in batch-invariant mode: there every n takes the tiles, whose sums
  // are the same for any number of tokens.
  const bool one_row = n == 1 && !cpu::batch_invariant();
  std::array<float, 16> code{};
  if (w.scheme != Scheme::Int8) code = code4(w.scheme);
  const int64_t rows = w.rows, cols = w.cols;
  if (one_row && avx2 && w.scheme != Scheme::Int8 && cols % 32 == 0 && w.blocksize % 32 == 0) {
    const BytePlanes bp = make_byte_planes(code.data());
    const std::vector<float> xp = nibble_order_x(x, cols);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) y[r] = row_dot_shuffled_avx2(w, bp, r, xp.data());
    return;
  }
  if (one_row) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      y[r] = avx2 ? row_dot_avx2(w, code.data(), r, x) : row_dot_portable(w, code.data(), r, x);
    return;
  }
  const int64_t ntiles = (rows + kTileRows - 1) / kTileRows;
#pragma omp parallel
  {
    tracked_vector<float> tile(static_cast<size_t>(kTileRows * cols));
#pragma omp for schedule(static)
    for (int64_t ti = 0; ti < ntiles; ++ti) {
      const int64_t r0 = ti * kTileRows, nr = std::min(kTileRows, rows - r0);
      if (avx2) {
        dequant_rows_avx2(w, code.data(), r0, nr, tile.data());
        tile_matmul_avx2(tile.data(), nr, cols, x, n, y + r0, rows);
      } else {
        dequant_rows_portable(w, code.data(), r0, nr, tile.data());
        tile_matmul_portable(tile.data(), nr, cols, x, n, y + r0, rows);
      }
    }
  }
}

// F16C's conversions (every AVX2 CPU has them) round to nearest even, as f32_to_f16 does: 8 values at a time.
__attribute__((target("avx2,f16c"))) int64_t round_to_f16_f16c(float* v, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(v + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_ps(v + i, _mm256_cvtph_ps(h));
  }
  return i;
}

// Rounds n floats in place to a 16-bit compute dtype (nearest even) and back; F32 leaves them.
void round_to(DType t, float* v, int64_t n) {
  if (t == DType::F16) {
    int64_t i = using_avx2() && cpu_has_f16c() ? round_to_f16_f16c(v, n) : 0;
    for (; i < n; ++i) v[i] = f16_to_f32(f32_to_f16(v[i]));
  } else if (t == DType::BF16) {
    for (int64_t i = 0; i < n; ++i) v[i] = bf16_to_f32(f32_to_bf16(v[i]));
  }
}

}  // namespace

void matmul(const QuantizedMatrix& w, const float* x, int64_t n, float* y) {
  if (n <= 0 || w.rows <= 0) return;
  if (w.compute == DType::F32) return matmul_f32(w, x, n, y);
  tracked_vector<float> xc(x, x + n * w.cols);
  round_to(w.compute, xc.data(), n * w.cols);
  matmul_f32(w, xc.data(), n, y);
  round_to(w.compute, y, n * w.rows);
}

}  // namespace bq::quant
