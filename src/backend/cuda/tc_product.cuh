// What the tensor-core products share (matvec_tc.cu for up to 16 tokens, tc_gemm.cu for more): a launch's weight
// group, the 4-bit lookup table, a lane's weight bytes of one round and the 16-bit pairs made of them, the epilogue.
//
// A round is 128 k elements of a 16-row tile. Lane (g, t) of a warp holds, for rows g and g + 8, the 32 consecutive
// elements t·32.. of the round: one 16-byte load per row of 4-bit codes (two of int8, four of bf16), straight from
// bitsandbytes' layout. An m16n8k16 mma sums over 16 k indices; step i of a round gives k indices 2t, 2t + 1 the lane's elements
// 4i, 4i + 1 and k indices 2t + 8, 2t + 9 its elements 4i + 2, 4i + 3. Any assignment of real columns to k indices
// gives the same sum as long as the weights (A) and the activations (B) agree, so the activations of token g for
// step i are the same four elements of the token's row.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/kernel_util.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/split.h"

namespace bq::cuda::tc {

constexpr int kTileRows = kTcTileRows;
constexpr int kRoundElems = kTcRoundElems;
constexpr int kLutEntries = 256;   // byte -> two 16-bit values
// Entry e of lane l at byte e * 256 + l * 4 of shared memory: one byte permute turns a weight byte and the lane's
// offset into the address (half of each 256-byte row is unused; the lookup costs no address arithmetic).
constexpr int kLutRowBytes = 256;
constexpr int kLutBytes = kLutEntries * kLutRowBytes;
constexpr int kMaxGroup = 3;

struct Group {
  DeviceWeight w[kMaxGroup];
  float* y[kMaxGroup];
  const float* bias[kMaxGroup];
  int tiles_before[kMaxGroup + 1];  // prefix sums of row tiles
  int count;
};

template <bool BF>
__device__ __forceinline__ uint32_t mul2(uint32_t a, uint32_t b) {
  if constexpr (BF) {
    __nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  } else {
    __half2 r = __hmul2(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  }
}

template <bool BF>
__device__ __forceinline__ float round_to(float v) {
  if constexpr (BF) return __bfloat162float(__float2bfloat16_rn(v));
  else return __half2float(__float2half_rn(v));
}

// Bytes per lane per round and row: 32 elements.
template <WeightKind K>
__host__ __device__ constexpr int lane_bytes() {
  return K == WeightKind::Q4 ? 16 : K == WeightKind::BF16 ? 64 : 32;
}

// Pair p (elements 2p, 2p + 1 of the lane's 32) as two 16-bit values, weights of one row. lane4: the lane's byte
// offset in a row of the lookup table (lane · 4).
template <WeightKind K, bool BF>
__device__ __forceinline__ uint32_t weight_pair(const uint32_t* words, int p, uint32_t scale2, const char* lut,
                                                uint32_t lane4) {
  if constexpr (K == WeightKind::BF16) {
    return words[p];  // elements 2p (low half) and 2p + 1, as stored
  } else if constexpr (K == WeightKind::Q4) {
    // Address byte 0: lane4, byte 1: weight byte p % 4 (high nibble: element 2p), bytes 2 and 3: zero.
    const uint32_t at = __byte_perm(words[p / 4], lane4, 0x5504u | (unsigned(p % 4) << 4));
    return mul2<BF>(*reinterpret_cast<const uint32_t*>(lut + at), scale2);
  } else {
    const int k = 2 * (p % 2);
    if constexpr (BF) {
      return pack2<true>(int8_to_float(words[p / 2], k), int8_to_float(words[p / 2], k + 1));
    } else {
      // 0x64 above a biased byte u is the fp16 value 1024 + u: minus 1152 gives the signed byte, exactly.
      const uint32_t u = words[p / 2] ^ 0x80808080u;
      uint32_t h = __byte_perm(u, 0x64646464u, unsigned(k) | (4u << 4) | (unsigned(k + 1) << 8) | (5u << 12));
      __half2 r = __hsub2(*reinterpret_cast<__half2*>(&h), __half2half2(__ushort_as_half(0x6480)));
      return *reinterpret_cast<uint32_t*>(&r);
    }
  }
}

// A tile's weight and rows: rows past the end of the weight load its last row and are not stored.
struct TileRef {
  int wi;           // weight of the group
  int64_t row0;     // first row of the tile in that weight
  int64_t ra, rb;   // rows of lane group g: g and g + 8
};

__device__ __forceinline__ TileRef tile_ref(const Group& G, int tile, int g) {
  int wi = 0;
  while (wi + 1 < G.count && tile >= G.tiles_before[wi + 1]) ++wi;
  const int64_t row0 = int64_t(tile - G.tiles_before[wi]) * kTileRows, last = G.w[wi].out - 1;
  return TileRef{wi, row0, min(row0 + g, last), min(row0 + g + 8, last)};
}

// One round of one lane in flight: its weight bytes of rows ra and rb and, for 4-bit weights, what their block
// scales are computed from.
template <WeightKind K>
struct Stage {
  static constexpr int V = lane_bytes<K>() / 16;
  uint4 a[V], b[V];
  uint32_t qa, qb;  // double quant: dynamic-map indices
  float fa, fb;     // double quant: nested absmax; otherwise the absmax
};

// Where a warp's next weight loads come from. Pointers are set up when the cursor enters a tile and stepped by
// one round after that, so that a round costs a few adds rather than the address arithmetic from scratch.
template <WeightKind K>
struct LoadCursor {
  static constexpr int LB = lane_bytes<K>();
  const uint8_t* pa;
  const uint8_t* pb;          // this lane's bytes of rows ra, rb in the current round
  uint32_t ea, eb;            // 4-bit: element index of their first element (the block scale's index)
  const uint8_t* absmax_q;
  const float* absmax;        // absmax2 with double quant, else the absmax
  int shift;
  int tile, round;

  __device__ __forceinline__ void seek(const Group& G, int tile_, int round_, int g, int t) {
    tile = tile_, round = round_;
    const TileRef r = tile_ref(G, tile, g);
    const DeviceWeight& w = G.w[r.wi];
    const uint8_t* base = K == WeightKind::Q4     ? w.packed
                          : K == WeightKind::BF16 ? reinterpret_cast<const uint8_t*>(w.bf16)
                                                  : reinterpret_cast<const uint8_t*>(w.cb);
    const int64_t row_bytes = w.in * LB / 32, off = int64_t(round) * 4 * LB + t * LB;
    pa = base + r.ra * row_bytes + off;
    pb = base + r.rb * row_bytes + off;
    if constexpr (K == WeightKind::Q4) {
      const int64_t col = int64_t(round) * kRoundElems + t * 32;  // a lane's 32 elements lie in one block
      ea = uint32_t(r.ra * w.in + col), eb = uint32_t(r.rb * w.in + col);  // < 2^32: matvec_tc_supported
      absmax_q = w.absmax_q;
      absmax = w.absmax_q ? w.absmax2 : w.absmax;
      shift = w.block_shift;
    }
  }
  __device__ __forceinline__ void load(Stage<K>& s) const {
#pragma unroll
    for (int v = 0; v < Stage<K>::V; ++v) {
      s.a[v] = load_stream(pa + v * 16);
      s.b[v] = load_stream(pb + v * 16);
    }
    if constexpr (K == WeightKind::Q4) {
      const uint32_t ba = ea >> shift, bb = eb >> shift;
      if (absmax_q) {
        s.qa = __ldg(absmax_q + ba), s.qb = __ldg(absmax_q + bb);
        s.fa = __ldg(absmax + (ba >> 8)), s.fb = __ldg(absmax + (bb >> 8));
      } else {
        s.fa = __ldg(absmax + ba), s.fb = __ldg(absmax + bb);
      }
    }
  }
  __device__ __forceinline__ void advance(const Group& G, int tiles, int R, int g, int t) {
    if (++round == R) {
      if (tile + 1 < tiles) seek(G, tile + 1, 0, g, t);
      return;
    }
    pa += 4 * LB, pb += 4 * LB;
    if constexpr (K == WeightKind::Q4) ea += kRoundElems, eb += kRoundElems;
  }
};

// The finished sums of a tile: int8 row scale, rounding to the compute dtype (not for bf16 weights, whose products
// stay fp32 as cuBLAS returns them), bias, store or accumulate.
template <WeightKind K, bool BF, int NTILES>
__device__ __forceinline__ void store_tile(const float (&c)[NTILES][4], const Group& G, const TileRef& r, int n,
                                           bool accumulate, int g, int t) {
  const DeviceWeight& w = G.w[r.wi];
  float* y = G.y[r.wi];
  const float* bias = G.bias[r.wi];
#pragma unroll
  for (int j = 0; j < NTILES; ++j)
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t row = r.row0 + g + (k >= 2 ? 8 : 0);
      const int token = j * 8 + 2 * t + (k & 1);
      if (row >= w.out || token >= n) continue;
      float v = c[j][k];
      if constexpr (K == WeightKind::Int8) v *= w.scb[row] / 127.0f;
      if constexpr (K != WeightKind::BF16) v = round_to<BF>(v);  // bitsandbytes' product leaves in the compute dtype
      if (bias) v += bias[row];
      const int64_t idx = int64_t(token) * w.out + row;
      y[idx] = accumulate ? y[idx] + v : v;
    }
}

// Builds the 4-bit lookup table (kLutBytes of dynamic shared memory) and the dynamic map (256 floats) of a block
// of kTcWarpsPerBlock warps, then syncs the block. Thread (warp, lane) writes entries e = warp + 8k, k = 0..31, of
// its lane: code[e >> 4] = code[k / 2] (the high nibble) with code[e & 15] = code[warp + 8 (k % 2)]: two loads per
// thread, the rest uniform.
static_assert(kTcWarpsPerBlock == 8, "the table's fill assumes 8 warps");
template <bool BF>
__device__ __forceinline__ void build_q4_tables(const Group& G, uint4* lut_smem, float* dyn, int warp, int lane) {
  const float* code = G.w[0].code;
  const float lo[2] = {__ldg(code + warp), __ldg(code + warp + 8)};
  uint32_t* lut_w = reinterpret_cast<uint32_t*>(lut_smem);
#pragma unroll
  for (int k = 0; k < kLutEntries / kTcWarpsPerBlock; ++k)
    lut_w[(warp + kTcWarpsPerBlock * k) * (kLutRowBytes / 4) + lane] = pack2<BF>(__ldg(code + k / 2), lo[k % 2]);
  for (int i = threadIdx.x; i < 256; i += blockDim.x) dyn[i] = __ldg(G.w[0].dyn_map + i);
  __syncthreads();
}

// The block scales of a round's two rows as packed 16-bit pairs, computed as q4_absmax does (no fused
// multiply-add); zero for int8. dq, offset: the double-quant recipe of the tile's weight.
template <WeightKind K, bool BF>
__device__ __forceinline__ void round_scales(const Stage<K>& s, bool dq, float offset, const float* dyn, uint32_t& s2a,
                                             uint32_t& s2b) {
  s2a = s2b = 0;
  if constexpr (K == WeightKind::Q4) {
    const float sa = dq ? __fadd_rn(__fmul_rn(dyn[s.qa], s.fa), offset) : s.fa;
    const float sb = dq ? __fadd_rn(__fmul_rn(dyn[s.qb], s.fb), offset) : s.fb;
    s2a = pack2<BF>(sa, sa), s2b = pack2<BF>(sb, sb);
  }
}

// x[n, in] rounded to the compute dtype, pairs at a time (the products' input where no kernel before wrote it).
template <bool BF>
__global__ void to_compute_kernel(const float* __restrict__ x, int64_t n, uint16_t* __restrict__ out) {
  grid_allow_successor();
  grid_wait();
  int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 2;
  if (i + 1 < n) {
    const float2 v = *reinterpret_cast<const float2*>(x + i);
    *reinterpret_cast<uint32_t*>(out + i) = pack2<BF>(v.x, v.y);
  }
}

// The tiled product for 1..kTcGemmTokens tokens a launch (tc_gemm.cu), on xh already in the compute dtype (compute
// set in G's weights: product_compute).
void launch_gemm(const Group& G, const uint16_t* xh, int n, bool accumulate, const TcScratch& s, cudaStream_t st);
// The same for any number of tokens, as launches of kTcGemmTokens (batch-invariant mode): a token's sums are the same
// in each.
void launch_gemm_rows(const Group& G, const uint16_t* xh, int n, bool accumulate, const TcScratch& s, cudaStream_t st);

}  // namespace bq::cuda::tc
