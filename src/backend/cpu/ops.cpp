#include "backend/cpu/ops.h"

#include "core/host_memory.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace bq::cpu {

namespace {

// Dot products of one weight row with a fp32 vector. The AVX2 versions are chosen at run time when the CPU has them.
float dot_f32_portable(const float* w, const float* x, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += w[i + j] * x[i + j];
  float s = 0;
  for (int j = 0; j < 8; ++j) s += acc[j];
  for (; i < n; ++i) s += w[i] * x[i];
  return s;
}

float dot_bf16_portable(const uint16_t* w, const float* x, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += bf16_to_f32(w[i + j]) * x[i + j];
  float s = 0;
  for (int j = 0; j < 8; ++j) s += acc[j];
  for (; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
  return s;
}

float dot_f16_portable(const uint16_t* w, const float* x, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += f16_to_f32(w[i]) * x[i];
  return s;
}

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) float dot_f32_avx2(const float* w, const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
  }
  float s = hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) s += w[i] * x[i];
  return s;
}

__attribute__((target("avx2,fma"))) inline __m256 load_bf16x8(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx2,fma"))) float dot_bf16_avx2(const uint16_t* w, const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(load_bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(load_bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
  }
  float s = hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
  return s;
}

__attribute__((target("avx2,fma,f16c"))) float dot_f16_avx2(const uint16_t* w, const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 wf = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    a0 = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + i), a0);
  }
  float s = hsum(a0);
  for (; i < n; ++i) s += f16_to_f32(w[i]) * x[i];
  return s;
}

bool have_avx2() {
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");  // every AVX2 CPU also has F16C
  return v;
}

float dot_row(const void* w, DType t, int64_t row, int64_t cols, const float* x) {
  bool fast = have_avx2();
  switch (t) {
    case DType::BF16: {
      auto p = static_cast<const uint16_t*>(w) + row * cols;
      return fast ? dot_bf16_avx2(p, x, cols) : dot_bf16_portable(p, x, cols);
    }
    case DType::F16: {
      auto p = static_cast<const uint16_t*>(w) + row * cols;
      return fast ? dot_f16_avx2(p, x, cols) : dot_f16_portable(p, x, cols);
    }
    default: {
      auto p = static_cast<const float*>(w) + row * cols;
      return fast ? dot_f32_avx2(p, x, cols) : dot_f32_portable(p, x, cols);
    }
  }
}

}  // namespace

constexpr int64_t kMatvecMaxRows = 3;  // up to here each weight row is read once and dotted with every input row
constexpr int64_t kBlockRows = 64;     // weight rows widened to fp32 at a time by each thread

namespace {
std::atomic<bool> g_batch_invariant{false};
}  // namespace

void set_batch_invariant(bool on) { g_batch_invariant = on; }
bool batch_invariant() { return g_batch_invariant; }

size_t matmul_thread_scratch_floats(int64_t n, DType wt, int64_t cols) {
  return n <= kMatvecMaxRows || wt == DType::F32 || batch_invariant() ? 0 : size_t(kBlockRows * cols);
}

void matmul(const float* x, int64_t n, const void* w, DType wt, int64_t rows, int64_t cols, float* y) {
  if (n <= kMatvecMaxRows || batch_invariant()) {
    // Decode: memory-bound, each weight row read once and dotted with every input row.
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < n; ++i) y[i * rows + r] = dot_row(w, wt, r, cols, x + i * cols);
    return;
  }
  // Prefill: each OpenMP thread widens a block of weight rows to fp32 (never the whole matrix) and multiplies it with
  // single-threaded BLAS. One threading runtime only: OpenBLAS's own spinning threads next to OpenMP's made decode
  // steps several times slower on a 2-core machine.
  static const bool blas_single_threaded = (openblas_set_num_threads(1), true);
  (void)blas_single_threaded;
  const int64_t block = kBlockRows;
  const size_t esz = dtype_size(wt);
#pragma omp parallel
  {
    tracked_vector<float> wf(matmul_thread_scratch_floats(n, wt, cols));
#pragma omp for schedule(dynamic)
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      const int64_t nr = std::min(block, rows - r0);
      const float* wblock = static_cast<const float*>(w) + r0 * cols;
      if (wt != DType::F32) {
        to_f32(wt, static_cast<const uint8_t*>(w) + size_t(r0 * cols) * esz, wf.data(), size_t(nr * cols));
        wblock = wf.data();
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(nr), int(cols), 1.0f, x, int(cols), wblock,
                  int(cols), 0.0f, y + r0, int(rows));
    }
  }
}

void rmsnorm(const float* x, const float* weight, float* out, int64_t n, int64_t d, float eps) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += double(xi[j]) * xi[j];
    float inv = 1.0f / std::sqrt(float(ss / double(d)) + eps);
    for (int64_t j = 0; j < d; ++j) out[i * d + j] = weight[j] * (xi[j] * inv);
  }
}

void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) {
  int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* p = x + h * head_dim;
    for (int i = 0; i < half; ++i) {
      float a = p[i], b = p[i + half];
      p[i] = a * cos[i] - b * sin[i];
      p[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n) {
  constexpr float k = 0.7978845608028654f;  // sqrt(2 / pi)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = 0.5f * g * (1.0f + std::tanh(k * (g + 0.044715f * g * g * g))) * up[i];
  }
}

void gated_act(Activation act, const float* gate, const float* up, float* out, int64_t n) {
  if (act == Activation::GeluTanh) gelu_tanh_mul(gate, up, out, n);
  else silu_mul(gate, up, out, n);
}

void attention(const float* q, const float* const* k_rows, const float* const* v_rows, int n_pos, int n_heads,
               int n_kv_heads, int head_dim, float scale, float* out, float* scratch) {
  const int group = n_heads / n_kv_heads;
  // Heads are independent; run them in parallel unless the caller already parallelises over tokens.
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
  for (int h = 0; h < n_heads; ++h) {
    const float* qh = q + h * head_dim;
    const int kvh = h / group;
    float* s = scratch + size_t(h) * n_pos;
    float mx = -INFINITY;
    for (int p = 0; p < n_pos; ++p) {
      const float* kp = k_rows[p] + kvh * head_dim;
      float d = 0;
      for (int i = 0; i < head_dim; ++i) d += qh[i] * kp[i];
      s[p] = d * scale;
      mx = std::max(mx, s[p]);
    }
    float sum = 0;
    for (int p = 0; p < n_pos; ++p) sum += (s[p] = std::exp(s[p] - mx));
    float* oh = out + h * head_dim;
    std::fill(oh, oh + head_dim, 0.0f);
    for (int p = 0; p < n_pos; ++p) {
      const float* vp = v_rows[p] + kvh * head_dim;
      float wgt = s[p] / sum;
      for (int i = 0; i < head_dim; ++i) oh[i] += wgt * vp[i];
    }
  }
}

}  // namespace bq::cpu
