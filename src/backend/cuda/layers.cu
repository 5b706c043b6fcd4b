// Elementwise and per-row kernels of the forward pass: RMSNorm, RoPE + KV-cache store, SwiGLU, embeddings,
// argmax, synthetic weight fills.
#include <cuda_bf16.h>

#include <algorithm>

#include "backend/cuda/check.h"
#include "backend/cuda/kernel_util.cuh"
#include "backend/cuda/ops.h"
#include "core/error.h"

namespace bq::cuda {

namespace {

bool g_programmatic_launch = true;  // decode 4-10% faster on the H200 (docs/benchmarks/NOTES.md)

__device__ __forceinline__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) red[0] = v;
  }
  __syncthreads();
  return red[0];
}

// One block per row; float4 loads where the width allows (one per thread for 4096 wide rows, so one memory round
// trip): a decode step runs this on one row, where latency is all there is.
__global__ void rmsnorm_kernel(const float* x, const float* w, float* out, int d, float eps, bool add, uint16_t* out16,
                               Compute c16) {
  __shared__ float red[32];
  grid_allow_successor();
  grid_wait();
  const int64_t row = blockIdx.x;
  const float* xr = x + row * d;
  const bool vec = d % 4 == 0 && (reinterpret_cast<uintptr_t>(xr) & 15) == 0;
  float ss = 0;
  if (vec) {
    for (int i = threadIdx.x; i < d / 4; i += blockDim.x) {
      const float4 v = reinterpret_cast<const float4*>(xr)[i];
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  }
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / float(d) + eps);
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = w[i] * (xr[i] * inv) + (add ? out[row * d + i] : 0.0f);
    out[row * d + i] = v;
    if (out16) out16[row * d + i] = to_16bit(v, c16);
  }
}

__global__ void gated_act_kernel(Activation act, float* g, const float* u, int64_t n, uint16_t* out16, Compute c16) {
  grid_allow_successor();
  grid_wait();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float a = g[i];
    const float v = (act == Activation::GeluTanh
                         ? 0.5f * a * (1.0f + tanhf(0.7978845608028654f * (a + 0.044715f * a * a * a)))
                         : a / (1.0f + expf(-a))) *
                    u[i];
    g[i] = v;
    if (out16) out16[i] = to_16bit(v, c16);
  }
}

__global__ void to_bf16_kernel(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = to_bf16_bits(x[i]);
}

__global__ void add_bias_kernel(float* y, const float* b, int64_t n, int m) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += b[i % m];
}

// One block per row. Angles as the CPU path: fp32 product pos * inv_freq, cos/sin of it in double, computed once
// per row for all heads.
constexpr int kMaxRopeHalf = 128;
__global__ void rope_store_kernel(float* q, const float* k, const float* v, const RowInfo* rows, KvLayer layer,
                                  int n_heads, int n_kv, int hd, const float* inv_freq) {
  __shared__ float cos_t[kMaxRopeHalf], sin_t[kMaxRopeHalf];
  grid_allow_successor();
  grid_wait();
  const int r = blockIdx.x, half = hd / 2, kv_dim = n_kv * hd;
  const RowInfo ri = rows[r];
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    double sn, cs;
    sincos(double(float(ri.pos) * inv_freq[i]), &sn, &cs);
    cos_t[i] = float(cs), sin_t[i] = float(sn);
  }
  __syncthreads();
  uint16_t* key = kv_key(ri.pages, layer, ri.pos, ri.capacity, kv_dim);
  uint16_t* value = kv_value(ri.pages, layer, ri.pos, ri.capacity, kv_dim);
  float* qr = q + int64_t(r) * n_heads * hd;
  const float* kr = k + int64_t(r) * kv_dim;
  const float* vr = v + int64_t(r) * kv_dim;
  for (int j = threadIdx.x; j < (n_heads + n_kv) * half; j += blockDim.x) {
    const int h = j / half, i = j % half;
    const float c = cos_t[i], s = sin_t[i];
    if (h < n_heads) {
      float* p = qr + h * hd;
      float a = p[i], b = p[i + half];
      p[i] = a * c - b * s;
      p[i + half] = b * c + a * s;
    } else {
      const int kh = h - n_heads;
      const float* p = kr + kh * hd;
      float a = p[i], b = p[i + half];
      key[kh * hd + i] = to_bf16_bits(a * c - b * s);
      key[kh * hd + i + half] = to_bf16_bits(b * c + a * s);
    }
  }
  for (int j = threadIdx.x; j < kv_dim; j += blockDim.x) value[j] = to_bf16_bits(vr[j]);
}

__global__ void argmax_kernel(const float* x, int v, int* out) {
  __shared__ float best_v[32];
  __shared__ int best_i[32];
  grid_wait();
  const float* xr = x + int64_t(blockIdx.x) * v;
  float bv = -INFINITY;
  int bi = 0x7fffffff;
  bool non_finite = false;
  // Ascending indices per thread, so that the first maximum is kept. Rows of a multiple of 4 (aligned, as the logits'
  // rows are) are read 16 bytes a load, four loads in flight: one float a load kept a 128,256-entry row at about
  // 11 GB/s a block (H200, 46 µs for 32 rows).
  auto take = [&](float e, int i) {
    non_finite |= !isfinite(e);
    if (e > bv) bv = e, bi = i;
  };
  if (v % 4 == 0) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
#pragma unroll 4
    for (int j = threadIdx.x; j < v / 4; j += blockDim.x) {
      const float4 q = x4[j];
      take(q.x, 4 * j), take(q.y, 4 * j + 1), take(q.z, 4 * j + 2), take(q.w, 4 * j + 3);
    }
  } else {
    for (int i = threadIdx.x; i < v; i += blockDim.x) take(xr[i], i);
  }
  non_finite = __syncthreads_or(non_finite);  // one flag for the row, read by thread 0 below
  auto better = [](float av, int ai, float cv, int ci) { return cv > av || (cv == av && ci < ai); };
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (better(bv, bi, ov, oi)) bv = ov, bi = oi;
  }
  if (threadIdx.x % 32 == 0) best_v[threadIdx.x / 32] = bv, best_i[threadIdx.x / 32] = bi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < int(blockDim.x / 32); ++w)
      if (better(bv, bi, best_v[w], best_i[w])) bv = best_v[w], bi = best_i[w];
    out[blockIdx.x] = non_finite ? -1 : bi == 0x7fffffff ? 0 : bi;
  }
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {  // splitmix64 finalizer
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Approximately standard normal: a centred, scaled sum of four uniforms (Irwin-Hall), from one 64-bit hash.
__device__ __forceinline__ float hash_normal(uint64_t seed, uint64_t i) {
  uint64_t h = mix64(seed ^ mix64(i));
  float s = 0;
  for (int k = 0; k < 4; ++k) s += float((h >> (16 * k)) & 0xffff) * (1.0f / 65536.0f);
  return (s - 2.0f) * 1.7320508f;
}

__global__ void fill_normal_kernel(uint16_t* p, size_t n, uint64_t seed, float std) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = to_bf16_bits(hash_normal(seed, i) * std);
}

__global__ void fill_bytes_kernel(uint8_t* p, size_t n, uint64_t seed, uint32_t lo, uint32_t span) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = uint8_t(lo + uint32_t(mix64(seed ^ mix64(i)) % span));
}

__global__ void fill_uniform_kernel(float* p, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = lo + (hi - lo) * float(mix64(seed ^ mix64(i)) >> 40) * (1.0f / 16777216.0f);
}

__global__ void synthetic_embed_kernel(const int* tokens, int hidden, uint64_t seed, float std, float* out) {
  grid_allow_successor();
  grid_wait();
  const int64_t t = tokens[blockIdx.x];
  for (int i = threadIdx.x; i < hidden; i += blockDim.x)
    out[int64_t(blockIdx.x) * hidden + i] = hash_normal(seed, uint64_t(t * hidden + i)) * std;
}

unsigned grid_for(int64_t n) { return unsigned(std::min<int64_t>((n + 255) / 256, 132 * 32)); }

}  // namespace

void set_programmatic_launch(bool on) { g_programmatic_launch = on; }
bool programmatic_launch() { return g_programmatic_launch; }

void rmsnorm(const float* x, const float* weight, float* out, int n, int d, float eps, cudaStream_t st,
             uint16_t* out16, Compute c16) {
  const unsigned threads = unsigned(std::clamp((d / 4 + 31) / 32 * 32, 128, 1024));
  pdl_launch(rmsnorm_kernel, dim3(unsigned(n)), dim3(threads), st, x, weight, out, d, eps, false, out16, c16);
}

void rmsnorm_add(const float* x, const float* weight, float* out, int n, int d, float eps, cudaStream_t st) {
  const unsigned threads = unsigned(std::clamp((d / 4 + 31) / 32 * 32, 128, 1024));
  pdl_launch(rmsnorm_kernel, dim3(unsigned(n)), dim3(threads), st, x, weight, out, d, eps, true, nullptr,
             Compute::F32);
}

void gated_act(Activation act, float* gate, const float* up, int64_t n, cudaStream_t st, uint16_t* out16,
               Compute c16) {
  pdl_launch(gated_act_kernel, dim3(grid_for(n)), dim3(256), st, act, gate, up, n, out16, c16);
}

void to_bf16(const float* x, int64_t n, uint16_t* out, cudaStream_t st) {
  to_bf16_kernel<<<grid_for(n), 256, 0, st>>>(x, n, out);
  BQ_LAUNCHED();
}

void add_bias(float* y, const float* bias, int n, int m, cudaStream_t st) {
  add_bias_kernel<<<grid_for(int64_t(n) * m), 256, 0, st>>>(y, bias, int64_t(n) * m, m);
  BQ_LAUNCHED();
}

void rope_store(float* q, const float* k, const float* v, const RowInfo* rows, int n, KvLayer layer, int n_heads,
                int n_kv_heads, int hd, const float* inv_freq, cudaStream_t st) {
  if (hd / 2 > kMaxRopeHalf) fail("CUDA RoPE supports head_dim up to {} (got {})", 2 * kMaxRopeHalf, hd);
  pdl_launch(rope_store_kernel, dim3(unsigned(n)), dim3(256), st, q, k, v, rows, layer, n_heads, n_kv_heads, hd,
             inv_freq);
}

void argmax_rows(const float* x, int n, int v, int* out, cudaStream_t st) {
  pdl_launch(argmax_kernel, dim3(unsigned(n)), dim3(1024), st, x, v, out);
}

void fill_normal_bf16(uint16_t* p, size_t n, uint64_t seed, float std, cudaStream_t st) {
  fill_normal_kernel<<<grid_for(int64_t(n)), 256, 0, st>>>(p, n, seed, std);
  BQ_LAUNCHED();
}

void fill_bytes(uint8_t* p, size_t n, uint64_t seed, uint8_t lo, uint8_t hi, cudaStream_t st) {
  fill_bytes_kernel<<<grid_for(int64_t(n)), 256, 0, st>>>(p, n, seed, lo, uint32_t(hi) - lo + 1);
  BQ_LAUNCHED();
}

void fill_uniform(float* p, size_t n, uint64_t seed, float lo, float hi, cudaStream_t st) {
  fill_uniform_kernel<<<grid_for(int64_t(n)), 256, 0, st>>>(p, n, seed, lo, hi);
  BQ_LAUNCHED();
}

void synthetic_embed(const int* tokens, int n, int hidden, uint64_t seed, float std, float* out, cudaStream_t st) {
  pdl_launch(synthetic_embed_kernel, dim3(unsigned(n)), dim3(256), st, tokens, hidden, seed, std, out);
}

}  // namespace bq::cuda
