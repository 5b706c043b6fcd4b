// Causal GQA attention over the bf16 KV cache. Each block takes one row, one KV head (all the query heads that
// share it, so K and V are read once for the group) and one chunk of positions, with an online softmax in fp32;
// a second kernel combines the chunks. A row's chunks come from its sequence's capacity alone (layout.h), so its
// result does not depend on the batch.
//
// Two block kernels: for head_dim 64, 96, 128 and 256 (every model of the study) the lanes of a warp split the
// head's dimensions and the warps take positions in turn, so that each cache row is one coalesced read and the
// per-warp chain of dependent instructions stays short (a decode step is all latency); other head sizes take the
// general kernel, one thread per position.
#include <algorithm>

#include "backend/cuda/check.h"
#include "backend/cuda/kernel_util.cuh"
#include "backend/cuda/ops.h"
#include "core/error.h"

namespace bq::cuda {

namespace {

constexpr int kThreads = 128;  // = positions per tile
constexpr int kMaxGroup = 8;   // query heads per KV head
constexpr int kMaxHd = 256;
constexpr int kValueStageBytes = 16 << 10;  // values of 64 positions of a 128-wide head

__global__ void __launch_bounds__(kThreads) attention_kernel(const float* __restrict__ q, const RowInfo* rows,
                                                             KvLayer layer,
                                                             int n_heads, int n_kv, int hd, float scale, int window,
                                                             int splits, float* __restrict__ partial) {
  __shared__ float qs[kMaxGroup * kMaxHd];
  __shared__ float probs[kMaxGroup][kThreads];
  __shared__ float red[kMaxGroup][kThreads / 32];
  __shared__ uint4 vstage[kValueStageBytes / 16];
  grid_allow_successor();
  grid_wait();
  const int r = blockIdx.x, g = blockIdx.y, s = blockIdx.z, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int group = n_heads / n_kv, kv_dim = n_kv * hd;
  const RowInfo ri = rows[r];
  if (ri.in_tile || s >= attention_row_splits(ri.capacity)) return;  // attention_prefill's; past the row's chunks
  const int split_len = attention_split_len(ri.capacity);
  const int p_begin = max(s * split_len, window > 0 ? ri.pos + 1 - window : 0),
            p_end = min(ri.pos + 1, s * split_len + split_len);
  for (int i = tid; i < group * hd; i += kThreads) qs[i] = q[(int64_t(r) * n_heads + g * group) * hd + i] * scale;
  __syncthreads();

  const int head_off = g * hd;
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
      // Eight 16-byte loads of the key in flight at a time (a decode row's whole 128-wide key in two round trips).
      const uint4* kp = reinterpret_cast<const uint4*>(kv_key(ri.pages, layer, p, ri.capacity, kv_dim) + head_off);
      for (int c0 = 0; c0 < hd / 8; c0 += 8) {
        uint4 kk[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) kk[i] = c0 + i < hd / 8 ? kp[c0 + i] : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int ci = 0; ci < 8; ++ci) {
          const int c = c0 + ci;
          if (c >= hd / 8) break;
          const uint32_t w[4] = {kk[ci].x, kk[ci].y, kk[ci].z, kk[ci].w};
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
    // Values: chunks of positions staged in shared memory with all loads in flight at once, then summed from there.
    const int count = min(kThreads, p_end - t0), per_chunk = kValueStageBytes / (hd * 2), row_words = hd / 8;
    for (int j0 = 0; j0 < count; j0 += per_chunk) {
      const int np = min(per_chunk, count - j0);
#pragma unroll 8
      for (int i = tid; i < np * row_words; i += kThreads) {
        const int pj = i / row_words;
        vstage[i] = *reinterpret_cast<const uint4*>(kv_value(ri.pages, layer, t0 + j0 + pj, ri.capacity, kv_dim) +
                                                    head_off + (i - pj * row_words) * 8);
      }
      __syncthreads();
      const uint16_t* vs = reinterpret_cast<const uint16_t*>(vstage);
      for (int j = 0; j < np; ++j) {
#pragma unroll
        for (int d = 0; d < kMaxHd / kThreads; ++d) {
          const int dim = tid + d * kThreads;
          const float vv = dim < hd ? bf16f(vs[j * hd + dim]) : 0.0f;
#pragma unroll
          for (int h = 0; h < kMaxGroup; ++h) {
            if (h >= group) break;
            acc[h][d] += probs[h][j0 + j] * vv;
          }
        }
#pragma unroll
        for (int h = 0; h < kMaxGroup; ++h) {
          if (h >= group) break;
          l[h] += probs[h][j0 + j];
        }
      }
      __syncthreads();
    }
  }
  // Partial record per (row, head, split): hd accumulators, then m and l.
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    if (h >= group) break;
    float* out = partial + ((int64_t(ri.partial_row) * n_heads + g * group + h) * splits + s) * (hd + 2);
#pragma unroll
    for (int d = 0; d < kMaxHd / kThreads; ++d)
      if (tid + d * kThreads < hd) out[tid + d * kThreads] = acc[h][d];
    if (tid == 0) out[hd] = m[h], out[hd + 1] = l[h];
  }
}

// Lanes split the head dimension (D = head_dim / 32 values each), the four warps take every fourth position, four
// positions per iteration so that their loads are in flight together; each warp keeps its own online softmax and
// the warps' states are merged at the end.
constexpr int kWarpPositions = 4;  // positions a warp works on at once

template <int D>
__device__ __forceinline__ void load_row(const uint16_t* p, float (&out)[D]) {
  if constexpr (D == 2) {
    const uint32_t u = *reinterpret_cast<const uint32_t*>(p);
    out[0] = __uint_as_float(u << 16), out[1] = __uint_as_float(u & 0xffff0000u);
  } else if constexpr (D == 4) {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    out[0] = __uint_as_float(u.x << 16), out[1] = __uint_as_float(u.x & 0xffff0000u);
    out[2] = __uint_as_float(u.y << 16), out[3] = __uint_as_float(u.y & 0xffff0000u);
  } else if constexpr (D == 8) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) out[2 * i] = __uint_as_float(w[i] << 16), out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  } else {
#pragma unroll
    for (int i = 0; i < D; ++i) out[i] = bf16f(p[i]);
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_lanes_kernel(const float* __restrict__ q, const RowInfo* rows,
                                                                   KvLayer layer, int n_heads, int n_kv, float scale,
                                                                   int window, int splits,
                                                                   float* __restrict__ partial) {
  constexpr int hd = 32 * D, kWarpsPerBlock = kThreads / 32;
  __shared__ float merge[kWarpsPerBlock][kMaxGroup][hd + 2];
  grid_allow_successor();
  grid_wait();
  const int r = blockIdx.x, g = blockIdx.y, s = blockIdx.z, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int group = n_heads / n_kv, kv_dim = n_kv * hd;
  const RowInfo ri = rows[r];
  if (ri.in_tile || s >= attention_row_splits(ri.capacity)) return;
  const int split_len = attention_split_len(ri.capacity);
  const int p_begin = max(s * split_len, window > 0 ? ri.pos + 1 - window : 0),
            p_end = min(ri.pos + 1, s * split_len + split_len);
  float qv[kMaxGroup][D], acc[kMaxGroup][D], m[kMaxGroup], l[kMaxGroup];
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    m[h] = -INFINITY, l[h] = 0;
#pragma unroll
    for (int i = 0; i < D; ++i) {
      qv[h][i] = h < group ? q[(int64_t(r) * n_heads + g * group + h) * hd + lane * D + i] * scale : 0.0f;
      acc[h][i] = 0;
    }
  }
  const int head_off = g * hd + lane * D;
  for (int p0 = p_begin + warp * kWarpPositions; p0 < p_end; p0 += kWarpsPerBlock * kWarpPositions) {
    float kr[kWarpPositions][D], vr[kWarpPositions][D];
#pragma unroll
    for (int j = 0; j < kWarpPositions; ++j) {
      const int p = min(p0 + j, p_end - 1);  // past the end: a valid row, weight zero below
      load_row<D>(kv_key(ri.pages, layer, p, ri.capacity, kv_dim) + head_off, kr[j]);
      load_row<D>(kv_value(ri.pages, layer, p, ri.capacity, kv_dim) + head_off, vr[j]);
    }
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) {
      if (h >= group) break;
      float sc[kWarpPositions];
#pragma unroll
      for (int j = 0; j < kWarpPositions; ++j) {
        float d = 0;
#pragma unroll
        for (int i = 0; i < D; ++i) d += qv[h][i] * kr[j][i];
        sc[j] = d;
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1)
#pragma unroll
        for (int j = 0; j < kWarpPositions; ++j) sc[j] += __shfl_xor_sync(0xffffffffu, sc[j], o);
      float tmax = -INFINITY;
#pragma unroll
      for (int j = 0; j < kWarpPositions; ++j) {
        if (p0 + j >= p_end) sc[j] = -INFINITY;
        tmax = fmaxf(tmax, sc[j]);
      }
      const float m_new = fmaxf(m[h], tmax);
      const float corr = m[h] == -INFINITY ? 0.0f : __expf(m[h] - m_new);
      l[h] *= corr;
#pragma unroll
      for (int i = 0; i < D; ++i) acc[h][i] *= corr;
#pragma unroll
      for (int j = 0; j < kWarpPositions; ++j) {
        const float pj = sc[j] == -INFINITY ? 0.0f : __expf(sc[j] - m_new);
        l[h] += pj;
#pragma unroll
        for (int i = 0; i < D; ++i) acc[h][i] += pj * vr[j][i];
      }
      m[h] = m_new;
    }
  }
  // The warps' softmax states merged into one partial record per query head: hd accumulators, then m and l.
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    if (h >= group) break;
#pragma unroll
    for (int i = 0; i < D; ++i) merge[warp][h][lane * D + i] = acc[h][i];
    if (lane == 0) merge[warp][h][hd] = m[h], merge[warp][h][hd + 1] = l[h];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < group * hd; idx += kThreads) {
    const int h = idx / hd, d = idx % hd;
    float mm = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarpsPerBlock; ++w) mm = fmaxf(mm, merge[w][h][hd]);
    float a = 0, ll = 0;
    if (mm != -INFINITY)
#pragma unroll
      for (int w = 0; w < kWarpsPerBlock; ++w) {
        const float mw = merge[w][h][hd];
        if (mw == -INFINITY) continue;
        const float e = __expf(mw - mm);
        a += merge[w][h][d] * e;
        ll += merge[w][h][hd + 1] * e;
      }
    float* out = partial + ((int64_t(ri.partial_row) * n_heads + g * group + h) * splits + s) * (hd + 2);
    out[d] = a;
    if (d == 0) out[hd] = mm, out[hd + 1] = ll;
  }
}

__global__ void combine_kernel(const RowInfo* rows, const float* partial, int n_heads, int hd, int splits, float* out,
                               uint16_t* out16, Compute c16) {
  grid_allow_successor();
  grid_wait();
  const int r = blockIdx.x, h = blockIdx.y;
  const RowInfo ri = rows[r];
  if (ri.in_tile) return;
  // The row's own chunks, in order: the same sums whatever the launch's `splits` (a chunk wholly outside the row's
  // range holds m = -inf and is skipped).
  const int row_splits = attention_row_splits(ri.capacity);
  const float* p = partial + (int64_t(ri.partial_row) * n_heads + h) * splits * (hd + 2);
  float m = -INFINITY;
  for (int s = 0; s < row_splits; ++s) m = fmaxf(m, p[s * (hd + 2) + hd]);
  float l = 0;
  for (int s = 0; s < row_splits; ++s) {
    float ms = p[s * (hd + 2) + hd];
    if (ms != -INFINITY) l += p[s * (hd + 2) + hd + 1] * __expf(ms - m);
  }
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0;
    for (int s = 0; s < row_splits; ++s) {
      float ms = p[s * (hd + 2) + hd];
      if (ms != -INFINITY) a += p[s * (hd + 2) + d] * __expf(ms - m);
    }
    const int64_t i = (int64_t(r) * n_heads + h) * hd + d;
    out[i] = a / l;
    if (out16) out16[i] = to_16bit(a / l, c16);
  }
}

}  // namespace

void attention(const float* q, const RowInfo* rows, int n, KvLayer layer, int n_heads, int n_kv_heads, int hd, float scale,
               int window, int splits, float* partial, float* out, cudaStream_t st, uint16_t* out16,
               Compute c16) {
  if (n_heads / n_kv_heads > kMaxGroup || hd > kMaxHd || hd % 8 != 0)
    fail("CUDA attention supports head_dim a multiple of 8 up to {} and up to {} query heads per KV head (got {}, {})",
         kMaxHd, kMaxGroup, hd, n_heads / n_kv_heads);
  const dim3 grid{unsigned(n), unsigned(n_kv_heads), unsigned(splits)}, block{unsigned(kThreads)};
  using Lanes = void (*)(const float*, const RowInfo*, KvLayer, int, int, float, int, int, float*);
  const Lanes lanes = hd == 64    ? attention_lanes_kernel<2>
                      : hd == 96  ? attention_lanes_kernel<3>
                      : hd == 128 ? attention_lanes_kernel<4>
                      : hd == 256 ? attention_lanes_kernel<8>
                                  : nullptr;
  if (lanes)
    pdl_launch(lanes, grid, block, st, q, rows, layer, n_heads, n_kv_heads, scale, window, splits, partial);
  else
    pdl_launch(attention_kernel, grid, block, st, q, rows, layer, n_heads, n_kv_heads, hd, scale, window, splits,
               partial);
  pdl_launch(combine_kernel, dim3(unsigned(n), unsigned(n_heads)), dim3(unsigned(std::min(hd, 256))), st, rows,
             partial, n_heads, hd, splits, out, out16, c16);
}

}  // namespace bq::cuda
