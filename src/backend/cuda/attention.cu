// Causal GQA attention over the bf16 KV cache. Each block takes one row, one KV head (all the query heads that
// share it, so K and V are read once for the group) and one chunk of positions, with an online softmax in fp32;
// a second kernel combines the chunks. Long contexts and small batches split into more chunks to fill the GPU.
#include <algorithm>

#include "backend/cuda/check.h"
#include "backend/cuda/ops.h"
#include "core/error.h"

namespace bq::cuda {

namespace {

constexpr int kThreads = 128;  // = positions per tile
constexpr int kMaxGroup = 8;   // query heads per KV head
constexpr int kMaxHd = 256;

__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }

__global__ void __launch_bounds__(kThreads) attention_kernel(const float* __restrict__ q, const RowInfo* rows, int layer,
                                                             int n_heads, int n_kv, int hd, int splits, int split_len,
                                                             float* __restrict__ partial) {
  __shared__ float qs[kMaxGroup * kMaxHd];
  __shared__ float probs[kMaxGroup][kThreads];
  __shared__ float red[kMaxGroup][kThreads / 32];
  const int r = blockIdx.x, g = blockIdx.y, s = blockIdx.z, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int group = n_heads / n_kv, kv_dim = n_kv * hd;
  const RowInfo ri = rows[r];
  const int p_begin = s * split_len, p_end = min(ri.pos + 1, p_begin + split_len);
  const float scale = rsqrtf(float(hd));
  for (int i = tid; i < group * hd; i += kThreads) qs[i] = q[(int64_t(r) * n_heads + g * group) * hd + i] * scale;
  __syncthreads();

  const size_t layer_off = size_t(layer) * ri.capacity * kv_dim + size_t(g) * hd;
  const uint16_t* K = ri.k + layer_off;
  const uint16_t* V = ri.v + layer_off;
  float m[kMaxGroup], l[kMaxGroup], acc[kMaxGroup][kMaxHd / kThreads];
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    m[h] = -INFINITY, l[h] = 0;
#pragma unroll
    for (int d = 0; d < kMaxHd / kThreads; ++d) acc[h][d] = 0;
  }

  for (int t0 = p_begin; t0 < p_end; t0 += kThreads) {
    const int p = t0 + tid;
    const bool valid = p < p_end;
    float sc[kMaxGroup];
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) sc[h] = 0;
    if (valid) {
      const uint4* kp = reinterpret_cast<const uint4*>(K + size_t(p) * kv_dim);
#pragma unroll 4
      for (int c = 0; c < hd / 8; ++c) {
        uint4 u = kp[c];
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
        float kv[8];
#pragma unroll
        for (int i = 0; i < 4; ++i) kv[2 * i] = __uint_as_float(w[i] << 16), kv[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
#pragma unroll
        for (int h = 0; h < kMaxGroup; ++h) {
          if (h >= group) break;
#pragma unroll
          for (int i = 0; i < 8; ++i) sc[h] += qs[h * hd + c * 8 + i] * kv[i];
        }
      }
    }
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) {
      if (h >= group) break;
      float v = valid ? sc[h] : -INFINITY;
      for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
      if (lane == 0) red[h][warp] = v;
    }
    __syncthreads();
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) {
      if (h >= group) break;
      float tmax = red[h][0];
      for (int w = 1; w < kThreads / 32; ++w) tmax = fmaxf(tmax, red[h][w]);
      const float m_new = fmaxf(m[h], tmax);
      const float corr = m[h] == -INFINITY ? 0.0f : __expf(m[h] - m_new);
      probs[h][tid] = valid ? __expf(sc[h] - m_new) : 0.0f;
      l[h] *= corr;
#pragma unroll
      for (int d = 0; d < kMaxHd / kThreads; ++d) acc[h][d] *= corr;
      m[h] = m_new;
    }
    __syncthreads();
    const int count = min(kThreads, p_end - t0);
#pragma unroll 8
    for (int j = 0; j < count; ++j) {
      const uint16_t* vp = V + size_t(t0 + j) * kv_dim;
#pragma unroll
      for (int d = 0; d < kMaxHd / kThreads; ++d) {
        const int dim = tid + d * kThreads;
        const float vv = dim < hd ? bf16f(vp[dim]) : 0.0f;
#pragma unroll
        for (int h = 0; h < kMaxGroup; ++h) {
          if (h >= group) break;
          acc[h][d] += probs[h][j] * vv;
        }
      }
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) {
        if (h >= group) break;
        l[h] += probs[h][j];
      }
    }
    __syncthreads();
  }
  // Partial record per (row, head, split): hd accumulators, then m and l.
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    if (h >= group) break;
    float* out = partial + ((int64_t(r) * n_heads + g * group + h) * splits + s) * (hd + 2);
#pragma unroll
    for (int d = 0; d < kMaxHd / kThreads; ++d)
      if (tid + d * kThreads < hd) out[tid + d * kThreads] = acc[h][d];
    if (tid == 0) out[hd] = m[h], out[hd + 1] = l[h];
  }
}

__global__ void combine_kernel(const float* partial, int n_heads, int hd, int splits, float* out) {
  const int r = blockIdx.x, h = blockIdx.y;
  const float* p = partial + (int64_t(r) * n_heads + h) * splits * (hd + 2);
  float m = -INFINITY;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, p[s * (hd + 2) + hd]);
  float l = 0;
  for (int s = 0; s < splits; ++s) {
    float ms = p[s * (hd + 2) + hd];
    if (ms != -INFINITY) l += p[s * (hd + 2) + hd + 1] * __expf(ms - m);
  }
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0;
    for (int s = 0; s < splits; ++s) {
      float ms = p[s * (hd + 2) + hd];
      if (ms != -INFINITY) a += p[s * (hd + 2) + d] * __expf(ms - m);
    }
    out[(int64_t(r) * n_heads + h) * hd + d] = a / l;
  }
}

}  // namespace

void attention(const float* q, const RowInfo* rows, int n, int layer, int n_heads, int n_kv_heads, int hd, int splits,
               int max_positions, float* partial, float* out, cudaStream_t st) {
  if (n_heads / n_kv_heads > kMaxGroup || hd > kMaxHd || hd % 8 != 0)
    fail("CUDA attention supports head_dim a multiple of 8 up to {} and up to {} query heads per KV head (got {}, {})",
         kMaxHd, kMaxGroup, hd, n_heads / n_kv_heads);
  const int split_len = (max_positions + splits - 1) / splits;
  attention_kernel<<<dim3(unsigned(n), unsigned(n_kv_heads), unsigned(splits)), kThreads, 0, st>>>(
      q, rows, layer, n_heads, n_kv_heads, hd, splits, split_len, partial);
  BQ_LAUNCHED();
  combine_kernel<<<dim3(unsigned(n), unsigned(n_heads)), std::min(hd, 256), 0, st>>>(partial, n_heads, hd, splits, out);
  BQ_LAUNCHED();
}

}  // namespace bq::cuda
