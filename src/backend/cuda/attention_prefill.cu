// Causal GQA attention of prompt rows on the tensor cores, FlashAttention-2 style. A block takes one tile of up to
// 64 consecutive rows of one sequence (AttentionTile, layout.h) and one query head; each of its 4 warps holds 16
// query rows. Key tiles of 64 positions stream through shared memory (cp.async, two stages); a warp computes
// S = Q·Kᵀ with mma.sync (bf16 in, fp32 out), keeps an online softmax per row in fp32, and adds P·V with P rounded
// to bf16, straight from the registers that held S (the accumulator layout of one m16n8k16 is the operand layout of
// the next).
//
// Why: prompt rows on the decode kernel, one row at a time on the CUDA cores, were 43% of a bf16 prefill layer of
// llama-3.1-8b at about 6.5 TFLOP/s (docs/benchmarks/NOTES.md).
//
// Batch invariance: key tiles start at multiples of 64 in absolute positions and every row walks them in order, so a
// row's sums do not depend on which other rows share its tile; a key tile wholly after a row (or before its window)
// leaves the row's state exactly as it was (p = 0, correction 1).
#include <cuda_bf16.h>

#include "backend/cuda/check.h"
#include "backend/cuda/kernel_util.cuh"
#include "backend/cuda/ops.h"
#include "core/error.h"

namespace bq::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kKeys = 64;  // positions per key tile
constexpr int kPad = 8;    // bf16 per shared row beyond head_dim: rows 16 bytes apart in the banks (no conflicts)
static_assert(kPrefillTileRows == kWarps * 16, "a warp holds 16 query rows");
constexpr float kLog2e = 1.4426950408889634f;

template <int HD>
struct Smem {
  uint16_t k[2][kKeys][HD + kPad];
  uint16_t v[2][kKeys][HD + kPad];
};

// 16 bytes from global to shared memory, or zeros where !valid (positions outside the causal range may hold
// anything, even NaN bit patterns, and 0 · NaN would poison the sums).
__device__ __forceinline__ void copy16_async(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

template <int HD>
__global__ void __launch_bounds__(kThreads) attention_prefill_kernel(const float* __restrict__ q, const RowInfo* rows,
                                                                     const AttentionTile* tiles, KvLayer layer,
                                                                     int n_heads, int n_kv, float scale, int window,
                                                                     float* __restrict__ out, uint16_t* out16,
                                                                     Compute c16) {
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  Smem<HD>& sm = *reinterpret_cast<Smem<HD>*>(smem_bytes);
  grid_allow_successor();
  grid_wait();
  const int h = blockIdx.y, tid = threadIdx.x, lane = tid % 32, warp = tid / 32, g = lane / 4, t = lane % 4;
  const AttentionTile tile = tiles[blockIdx.x];
  const RowInfo first = rows[tile.first_row];
  const int kv_dim = n_kv * HD, kvh = h / (n_heads / n_kv);
  const int head_off = kvh * HD;
  // Rows of the tile have consecutive positions; this warp's rows are 16·warp + g and + 8 of the tile.
  const int pos0 = first.pos, last_pos = pos0 + tile.rows - 1;
  const int key_begin = window > 0 ? max(0, pos0 + 1 - window) : 0, key_end = last_pos + 1;
  const int row_a = warp * 16 + g, row_b = row_a + 8;
  const int pos_a = row_a < tile.rows ? pos0 + row_a : -1, pos_b = row_b < tile.rows ? pos0 + row_b : -1;
  // Warp-uniform (the mma and shuffles need every lane): whether the warp holds rows, and its last position (later
  // keys are masked for all of them).
  const bool warp_rows = warp * 16 < tile.rows;
  const int warp_last = min(pos0 + warp * 16 + 15, last_pos);

  // Q as A operands, scaled (and by log2 e: the softmax runs on exp2), rounded to bf16.
  uint32_t qa[HD / 16][4];
  {
    const float s = scale * kLog2e;
    auto qrow = [&](int row) { return q + (int64_t(tile.first_row + row) * n_heads + h) * HD; };
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      float2 a = {0, 0}, b = {0, 0}, c = {0, 0}, d = {0, 0};
      if (pos_a >= 0) {
        a = *reinterpret_cast<const float2*>(qrow(row_a) + kk * 16 + 2 * t);
        c = *reinterpret_cast<const float2*>(qrow(row_a) + kk * 16 + 8 + 2 * t);
      }
      if (pos_b >= 0) {
        b = *reinterpret_cast<const float2*>(qrow(row_b) + kk * 16 + 2 * t);
        d = *reinterpret_cast<const float2*>(qrow(row_b) + kk * 16 + 8 + 2 * t);
      }
      qa[kk][0] = pack2<true>(a.x * s, a.y * s);
      qa[kk][1] = pack2<true>(b.x * s, b.y * s);
      qa[kk][2] = pack2<true>(c.x * s, c.y * s);
      qa[kk][3] = pack2<true>(d.x * s, d.y * s);
    }
  }

  auto load_tile = [&](int stage, int t0) {
    constexpr int chunks = HD / 8;  // 16-byte chunks per key row
    for (int i = tid; i < kKeys * chunks; i += kThreads) {
      const int key = i / chunks, c = i % chunks, p = t0 + key;
      const bool valid = p >= key_begin && p < key_end;
      // Outside the range: any valid address (the copy reads nothing and writes zeros).
      const int at = valid ? p : key_begin;
      const int off = head_off + c * 8;
      copy16_async(&sm.k[stage][key][c * 8], kv_key(first.pages, layer, at, first.capacity, kv_dim) + off, valid);
      copy16_async(&sm.v[stage][key][c * 8], kv_value(first.pages, layer, at, first.capacity, kv_dim) + off, valid);
    }
  };

  float o[HD / 8][4] = {};
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0, l_b = 0;  // per-thread partial sums l: reduced at the end
  const int t_begin = key_begin / kKeys * kKeys;
  load_tile(0, t_begin);
  commit_async();
  for (int t0 = t_begin, stage = 0; t0 < key_end; t0 += kKeys, stage ^= 1) {
    if (t0 + kKeys < key_end) load_tile(stage ^ 1, t0 + kKeys);
    commit_async();
    wait_async<1>();
    __syncthreads();
    if (warp_rows && t0 <= warp_last) {
      // S = Q·Kᵀ: 8 column tiles of 8 keys; one ldmatrix.x4 gives the B operands of two of them.
      float s[kKeys / 8][4] = {};
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk)
#pragma unroll
        for (int j = 0; j < kKeys / 8; j += 2) {
          const int m = lane / 8;
          uint32_t b[4];
          ldmatrix_x4(b, &sm.k[stage][8 * (j + (m >> 1)) + lane % 8][kk * 16 + 8 * (m & 1)]);
          mma<true>(s[j], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b[0], b[1]);
          mma<true>(s[j + 1], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b[2], b[3]);
        }
      // Causal (and window) mask, then the online softmax of rows a (c0, c1) and b (c2, c3).
      float tmax_a = -INFINITY, tmax_b = -INFINITY;
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int p = t0 + 8 * j + 2 * t + (e & 1), qp = e < 2 ? pos_a : pos_b;
          const bool keep = p <= qp && (window <= 0 || p > qp - window);
          s[j][e] = keep ? s[j][e] : -INFINITY;
          if (e < 2) tmax_a = fmaxf(tmax_a, s[j][e]);
          else tmax_b = fmaxf(tmax_b, s[j][e]);
        }
#pragma unroll
      for (int x = 1; x <= 2; x <<= 1) {
        tmax_a = fmaxf(tmax_a, __shfl_xor_sync(0xffffffffu, tmax_a, x));
        tmax_b = fmaxf(tmax_b, __shfl_xor_sync(0xffffffffu, tmax_b, x));
      }
      const float mn_a = fmaxf(m_a, tmax_a), mn_b = fmaxf(m_b, tmax_b);
      const float corr_a = mn_a == -INFINITY ? 1.0f : exp2f(m_a - mn_a),
                  corr_b = mn_b == -INFINITY ? 1.0f : exp2f(m_b - mn_b);
      m_a = mn_a, m_b = mn_b;
      l_a *= corr_a, l_b *= corr_b;
#pragma unroll
      for (int d = 0; d < HD / 8; ++d) o[d][0] *= corr_a, o[d][1] *= corr_a, o[d][2] *= corr_b, o[d][3] *= corr_b;
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float mr = e < 2 ? mn_a : mn_b;
          s[j][e] = s[j][e] == -INFINITY ? 0.0f : exp2f(s[j][e] - mr);
        }
      // O += P·V over 4 steps of 16 keys; P's operand registers are S's accumulators of column tiles 2kk, 2kk + 1.
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        const uint32_t pa0 = pack2<true>(s[2 * kk][0], s[2 * kk][1]), pa1 = pack2<true>(s[2 * kk][2], s[2 * kk][3]),
                       pa2 = pack2<true>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                       pa3 = pack2<true>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        // l sums the probabilities as rounded for the product, so that the normalisation matches it.
        const __nv_bfloat162* r = reinterpret_cast<const __nv_bfloat162*>(&pa0);
        l_a += __low2float(*r) + __high2float(*r);
        r = reinterpret_cast<const __nv_bfloat162*>(&pa2);
        l_a += __low2float(*r) + __high2float(*r);
        r = reinterpret_cast<const __nv_bfloat162*>(&pa1);
        l_b += __low2float(*r) + __high2float(*r);
        r = reinterpret_cast<const __nv_bfloat162*>(&pa3);
        l_b += __low2float(*r) + __high2float(*r);
#pragma unroll
        for (int d = 0; d < HD / 8; d += 2) {
          const int m = lane / 8;
          uint32_t b[4];
          ldmatrix_x4_trans(b, &sm.v[stage][kk * 16 + 8 * (m & 1) + lane % 8][8 * (d + (m >> 1))]);
          mma<true>(o[d], pa0, pa1, pa2, pa3, b[0], b[1]);
          mma<true>(o[d + 1], pa0, pa1, pa2, pa3, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the next iteration's loads overwrite the other stage, read in this one
  }
  wait_async<0>();

#pragma unroll
  for (int x = 1; x <= 2; x <<= 1) {
    l_a += __shfl_xor_sync(0xffffffffu, l_a, x);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, x);
  }
  auto store = [&](int row, float v0, float v1, int dim) {
    const int64_t i = (int64_t(tile.first_row + row) * n_heads + h) * HD + dim;
    *reinterpret_cast<float2*>(out + i) = make_float2(v0, v1);
    if (out16) out16[i] = to_16bit(v0, c16), out16[i + 1] = to_16bit(v1, c16);
  };
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) {
    if (pos_a >= 0) store(row_a, o[d][0] / l_a, o[d][1] / l_a, 8 * d + 2 * t);
    if (pos_b >= 0) store(row_b, o[d][2] / l_b, o[d][3] / l_b, 8 * d + 2 * t);
  }
}

template <int HD>
void launch(dim3 grid, cudaStream_t st, const float* q, const RowInfo* rows, const AttentionTile* tiles, KvLayer layer,
            int n_heads, int n_kv, float scale, int window, float* out, uint16_t* out16, Compute c16) {
  opt_in_smem(attention_prefill_kernel<HD>, int(sizeof(Smem<HD>)));
  pdl_launch_smem(attention_prefill_kernel<HD>, grid, dim3(kThreads), sizeof(Smem<HD>), st, q, rows, tiles, layer,
                  n_heads, n_kv, scale, window, out, out16, c16);
}

}  // namespace

void attention_prefill(const float* q, const RowInfo* rows, const AttentionTile* tiles, int n_tiles, KvLayer layer,
                       int n_heads, int n_kv_heads, int hd, float scale, int window, float* out, cudaStream_t st,
                       uint16_t* out16, Compute c16) {
  if (n_tiles == 0) return;
  const dim3 grid{unsigned(n_tiles), unsigned(n_heads)};
  switch (hd) {
    case 16: return launch<16>(grid, st, q, rows, tiles, layer, n_heads, n_kv_heads, scale, window, out, out16, c16);
    case 32: return launch<32>(grid, st, q, rows, tiles, layer, n_heads, n_kv_heads, scale, window, out, out16, c16);
    case 64: return launch<64>(grid, st, q, rows, tiles, layer, n_heads, n_kv_heads, scale, window, out, out16, c16);
    case 128: return launch<128>(grid, st, q, rows, tiles, layer, n_heads, n_kv_heads, scale, window, out, out16, c16);
  }
  fail("the tensor-core prefill attention takes head_dim 16, 32, 64 or 128 (got {})", hd);
}

}  // namespace bq::cuda
