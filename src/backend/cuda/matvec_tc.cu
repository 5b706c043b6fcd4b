// Decode products on the tensor cores: y[n, out] = x[n, in] · Wᵀ for up to 32 tokens, nf4 / fp4 / int8 weights,
// activations and dequantized weights in the 16-bit compute dtype, fp32 accumulation (what bitsandbytes does with
// a 16-bit compute dtype).
//
// Why tensor cores for a matrix-vector product: the CUDA-core kernel spends one shared-memory codebook lookup and
// one fp32 multiply-add per weight element and is bound by its load/store unit at an eighth of DRAM bandwidth
// (docs/benchmarks/NOTES.md). Here a 4-bit byte becomes a pair of 16-bit values with one lookup (256 entries, one
// copy per lane so that lookups never conflict) and one packed multiply by its block scale, and the products and
// sums run as mma.sync. Up to 8 tokens cost the same as one (an m16n8k16 tile has 8 columns); 32 use four tiles.
//
// Work split (stream-k): the row tiles of the launch (16 rows each) times the rounds of a row (128 k elements) form
// one flat list of work, cut into equal contiguous ranges, one per warp. Lane (g, t) of a warp takes, for rows g
// and g + 8 of the tile, the 32 consecutive elements t·32.. of a round; an mma sums over 16 k indices that come
// from the four lanes' spans: any assignment of real columns to k indices gives the same sum as long as A
// (weights) and B (activations) agree, and both are read from lane t's span. Each warp keeps U rounds of weight
// loads in flight in registers across tile boundaries and never waits for other warps. A tile that lies in one
// warp's range is stored by that warp; a tile shared by several warps is summed by the last of them to arrive,
// from the partial tiles in warp order (deterministic results). The lookup table is built once per block, and one
// launch covers up to three weights with the same input (q, k, v or gate, up).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "backend/cuda/check.h"
#include "backend/cuda/kernel_util.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/split.h"
#include "core/error.h"

namespace bq::cuda {

namespace {

constexpr int kWarps = kTcWarpsPerBlock;
constexpr int kTileRows = kTcTileRows;
constexpr int kRoundElems = 128;   // k elements of one round: 4 lanes × 32
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
  return K == WeightKind::Q4 ? 16 : 32;
}

// Pair p (elements 2p, 2p + 1 of the lane's 32) as two 16-bit values, weights of one row. lane4: the lane's byte
// offset in a row of the lookup table (lane · 4).
template <WeightKind K, bool BF>
__device__ __forceinline__ uint32_t weight_pair(const uint32_t* words, int p, uint32_t scale2, const char* lut,
                                                uint32_t lane4) {
  if constexpr (K == WeightKind::Q4) {
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
    const uint8_t* base = K == WeightKind::Q4 ? w.packed : reinterpret_cast<const uint8_t*>(w.cb);
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

// The lane's activations (16-bit pairs) of one round, token tile j in xw[j]; zero for tokens past n. x_lane: the
// lane's activations at round 0.
template <int NTILES>
__device__ __forceinline__ void load_x(uint32_t (&xw)[NTILES][16], const uint32_t* __restrict__ x_lane,
                                       int64_t x_words, int round, int n, int g) {
#pragma unroll
  for (int j = 0; j < NTILES; ++j) {
    const uint4* xp = reinterpret_cast<const uint4*>(x_lane + j * 8 * x_words + round * (kRoundElems / 2));
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      uint4 v = j * 8 + g < n ? __ldg(xp + q) : make_uint4(0, 0, 0, 0);
      xw[j][4 * q] = v.x, xw[j][4 * q + 1] = v.y, xw[j][4 * q + 2] = v.z, xw[j][4 * q + 3] = v.w;
    }
  }
}

// c += this round's weights · activations xw. dq, offset: the block-scale recipe of the tile's weight.
template <WeightKind K, bool BF, int NTILES>
__device__ __forceinline__ void compute_stage(float (&c)[NTILES][4], const Stage<K>& s, bool dq, float offset,
                                              const uint32_t (&xw)[NTILES][16], const char* lut, uint32_t lane4,
                                              const float* dyn) {
  const uint32_t* wda = reinterpret_cast<const uint32_t*>(s.a);
  const uint32_t* wdb = reinterpret_cast<const uint32_t*>(s.b);
  uint32_t s2a = 0, s2b = 0;
  if constexpr (K == WeightKind::Q4) {
    // The block scale as q4_absmax computes it (no fused multiply-add).
    const float sa = dq ? __fadd_rn(__fmul_rn(dyn[s.qa], s.fa), offset) : s.fa;
    const float sb = dq ? __fadd_rn(__fmul_rn(dyn[s.qb], s.fb), offset) : s.fb;
    s2a = pack2<BF>(sa, sa), s2b = pack2<BF>(sb, sb);
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const uint32_t a0 = weight_pair<K, BF>(wda, 2 * i, s2a, lut, lane4);
    const uint32_t a1 = weight_pair<K, BF>(wdb, 2 * i, s2b, lut, lane4);
    const uint32_t a2 = weight_pair<K, BF>(wda, 2 * i + 1, s2a, lut, lane4);
    const uint32_t a3 = weight_pair<K, BF>(wdb, 2 * i + 1, s2b, lut, lane4);
#pragma unroll
    for (int j = 0; j < NTILES; ++j) mma<BF>(c[j], a0, a1, a2, a3, xw[j][2 * i], xw[j][2 * i + 1]);
  }
}

// The finished sums of a tile: int8 row scale, rounding to the compute dtype, bias, store or accumulate.
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
      v = round_to<BF>(v);  // bitsandbytes' product leaves in the compute dtype
      if (bias) v += bias[row];
      const int64_t idx = int64_t(token) * w.out + row;
      y[idx] = accumulate ? y[idx] + v : v;
    }
}

template <WeightKind K, bool BF, int NTILES>
__global__ void __launch_bounds__(kWarps * 32, NTILES == 4 ? 1 : 2)
    matvec_tc_kernel(Group G, const uint32_t* __restrict__ xh, int n, bool accumulate, int L, float4* partial,
                     int* counters) {
  constexpr int U = 64 / lane_bytes<K>();  // rounds of weight loads in flight per warp
  extern __shared__ uint4 lut_smem[];  // 4-bit: the lookup table, kLutBytes (dynamic: above 48 KiB)
  __shared__ float dyn[K == WeightKind::Q4 ? 256 : 1];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const char* lut = reinterpret_cast<const char*>(lut_smem);
  const uint32_t lane4 = uint32_t(lane) * 4;
  if constexpr (K == WeightKind::Q4) {
    // Thread (warp, lane) writes entries e = warp + 8k, k = 0..31, of its lane: code[e >> 4] = code[k / 2] (the
    // high nibble) with code[e & 15] = code[warp + 8 (k % 2)]: two loads per thread, the rest uniform.
    const float* code = G.w[0].code;
    const float lo[2] = {__ldg(code + warp), __ldg(code + warp + 8)};
    uint32_t* lut_w = reinterpret_cast<uint32_t*>(lut_smem);
#pragma unroll
    for (int k = 0; k < kLutEntries / kWarps; ++k)
      lut_w[(warp + kWarps * k) * (kLutRowBytes / 4) + lane] = pack2<BF>(__ldg(code + k / 2), lo[k % 2]);
    for (int i = threadIdx.x; i < 256; i += blockDim.x) dyn[i] = __ldg(G.w[0].dyn_map + i);
    __syncthreads();
  }
  const int R = int(G.w[0].in / kRoundElems), tiles = G.tiles_before[G.count];
  const int64_t total = int64_t(tiles) * R;
  const int gw = blockIdx.x * kWarps + warp;
  const int begin = int(min(int64_t(gw) * L, total)), end = int(min(int64_t(begin) + L, total));

  // The first U rounds' weights are loaded before waiting for the previous kernel: they do not depend on it.
  Stage<K> stage[U];
  LoadCursor<K> lc;
  lc.seek(G, min(begin / R, tiles - 1), begin % R, g, t);
#pragma unroll
  for (int u = 0; u < U; ++u)
    if (begin + u < end) {
      lc.load(stage[u]);
      lc.advance(G, tiles, R, g, t);
    }
  grid_wait();
  if (begin >= end) return grid_allow_successor();

  const int64_t x_words = G.w[0].in / 2;  // 16-bit pairs per token
  const uint32_t* x_lane = xh + int64_t(g) * x_words + t * 16;
  int ct = begin / R, cr = begin - ct * R;  // compute cursor
  TileRef cref = tile_ref(G, ct, g);
  bool dq = G.w[cref.wi].absmax_q != nullptr;
  float offset = G.w[cref.wi].offset;
  float c[NTILES][4];
#pragma unroll
  for (int j = 0; j < NTILES; ++j) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0;

  for (int f = begin; f < end; f += U) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (f + u >= end) break;
      uint32_t xw[NTILES][16];
      load_x<NTILES>(xw, x_lane, x_words, cr, n, g);
      compute_stage<K, BF, NTILES>(c, stage[u], dq, offset, xw, lut, lane4, dyn);
      if (f + u + U < end) {
        lc.load(stage[u]);
        lc.advance(G, tiles, R, g, t);
      } else if (f + u + U == end) {
        grid_allow_successor();  // all weight loads issued: the next kernel may start its prologue
      }
      const bool tile_done = ++cr == R;
      if (!tile_done && f + u + 1 < end) continue;
      // Flush tile ct: alone, or as one of the warps first..last that share it.
      const int first = tc_first_warp(ct, R, L), last = tc_last_warp(ct, R, L);
      if (first == last) {
        store_tile<K, BF, NTILES>(c, G, cref, n, accumulate, g, t);
      } else {
        float4* mine = partial + int64_t(tc_partial_slot(gw, ct, R, L)) * NTILES * 32 + lane;
#pragma unroll
        for (int j = 0; j < NTILES; ++j) mine[j * 32] = make_float4(c[j][0], c[j][1], c[j][2], c[j][3]);
        __threadfence();
        __syncwarp();
        int arrived = 0;
        if (lane == 0) arrived = atomicAdd(counters + ct, 1);
        arrived = __shfl_sync(0xffffffffu, arrived, 0);
        if (arrived == last - first) {  // the last of them: sum the partials in warp order
          __threadfence();
          float sum[NTILES][4];
#pragma unroll
          for (int j = 0; j < NTILES; ++j) sum[j][0] = sum[j][1] = sum[j][2] = sum[j][3] = 0;
          for (int w2 = first; w2 <= last; ++w2) {
            const float4* p = partial + int64_t(tc_partial_slot(w2, ct, R, L)) * NTILES * 32 + lane;
#pragma unroll
            for (int j = 0; j < NTILES; ++j) {
              const float4 v = __ldcg(p + j * 32);
              sum[j][0] += v.x, sum[j][1] += v.y, sum[j][2] += v.z, sum[j][3] += v.w;
            }
          }
          if (lane == 0) counters[ct] = 0;  // ready for the next launch
          store_tile<K, BF, NTILES>(sum, G, cref, n, accumulate, g, t);
        }
      }
#pragma unroll
      for (int j = 0; j < NTILES; ++j) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0;
      if (tile_done) {
        cr = 0;
        if (++ct < tiles) {
          cref = tile_ref(G, ct, g);
          dq = G.w[cref.wi].absmax_q != nullptr, offset = G.w[cref.wi].offset;
        }
      }
    }
  }
}

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

int sm_count() {
  static int n = [] {
    int dev = 0, v = 0;
    BQ_CUDA(cudaGetDevice(&dev));
    BQ_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    return v;
  }();
  return n;
}

template <WeightKind K, bool BF, int NTILES>
void launch_tc(const Group& G, const uint32_t* xh, int n, bool accumulate, const TcScratch& s, int max_blocks,
               cudaStream_t st) {
  constexpr int smem = K == WeightKind::Q4 ? kLutBytes : 0;
  static int per_sm = [] {
    BQ_CUDA(cudaFuncSetAttribute(matvec_tc_kernel<K, BF, NTILES>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    int b = 0;
    BQ_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, matvec_tc_kernel<K, BF, NTILES>, kWarps * 32, smem));
    return std::max(b, 1);
  }();
  const int64_t total = int64_t(G.tiles_before[G.count]) * (G.w[0].in / kRoundElems);
  int most = std::min(sm_count() * per_sm, kTcMaxBlocks);
  if (max_blocks > 0) most = std::min(most, max_blocks);
  const TcSplit split = tc_split(total, most);
  if (size_t(split.blocks) * kWarps * 2 * NTILES * 32 * 4 > s.partial_floats ||
      size_t(G.tiles_before[G.count]) > s.counter_count)
    fail("matvec_tc: the k-split scratch is too small for {} row tiles", G.tiles_before[G.count]);
  pdl_launch_smem(matvec_tc_kernel<K, BF, NTILES>, dim3(unsigned(split.blocks)), dim3(kWarps * 32), size_t(smem), st,
                  G, xh, n, accumulate, split.rounds_per_warp, reinterpret_cast<float4*>(s.partial), s.counters);
}

template <WeightKind K, bool BF>
void launch_tiles(const Group& G, const uint32_t* xh, int n, bool accumulate, const TcScratch& s, int max_blocks,
                  cudaStream_t st) {
  if (n <= 8) return launch_tc<K, BF, 1>(G, xh, n, accumulate, s, max_blocks, st);
  if (n <= 16) return launch_tc<K, BF, 2>(G, xh, n, accumulate, s, max_blocks, st);
  return launch_tc<K, BF, 4>(G, xh, n, accumulate, s, max_blocks, st);
}

}  // namespace

bool matvec_tc_supported(const DeviceWeight& w, int n) {
  if (n < 1 || n > kMatvecMaxRows || w.compute == Compute::F32 || w.in % kRoundElems != 0) return false;
  if (uint64_t(w.out) * uint64_t(w.in) >> 32) return false;  // 32-bit element indices
  switch (w.kind) {
    case WeightKind::Int8: return aligned16(w.cb) && aligned16(w.scb);
    case WeightKind::Q4:
      return aligned16(w.packed) && q4_blocks_vectorizable(w);
    default: return false;  // bf16: the CUDA-core kernel and cuBLAS; LLM.int8: its own decomposition
  }
}

bool matvec_tc_can_share(const MatvecTarget* targets, int count, int n) {
  if (count < 1 || count > kMaxGroup) return false;
  const DeviceWeight& w0 = *targets[0].w;
  for (int i = 0; i < count; ++i) {
    const DeviceWeight& w = *targets[i].w;
    if (!matvec_tc_supported(w, n) || w.kind != w0.kind || w.in != w0.in || w.compute != w0.compute ||
        (w.kind == WeightKind::Q4 && (w.code != w0.code || w.dyn_map != w0.dyn_map)))
      return false;
  }
  return true;
}

void matvec_tc(const MatvecTarget* targets, int count, const float* x, int n, bool accumulate, const TcScratch& s,
               cudaStream_t st, int max_blocks) {
  if (count < 1 || count > kMaxGroup) fail("matvec_tc: {} weights in one launch (1..{})", count, kMaxGroup);
  if (!s.xh || !aligned16(s.xh) || !aligned16(s.partial) || !s.counters)
    fail("matvec_tc: needs an aligned 16-bit activation scratch and the k-split scratch");
  if (!matvec_tc_can_share(targets, count, n)) fail("matvec_tc: the {} weights cannot share one launch", count);
  const DeviceWeight& w0 = *targets[0].w;
  Group G{};
  G.count = count;
  for (int i = 0; i < count; ++i) {
    const DeviceWeight& w = *targets[i].w;
    G.w[i] = with_block_shift(w);
    G.y[i] = targets[i].y;
    G.bias[i] = targets[i].bias;
    G.tiles_before[i + 1] = G.tiles_before[i] + int((w.out + kTileRows - 1) / kTileRows);
  }
  const int64_t elems = int64_t(n) * w0.in;
  const bool bf = w0.compute == Compute::BF16;
  if (x) {
    const dim3 blocks(unsigned((elems / 2 + 255) / 256)), threads(256);
    if (bf) pdl_launch(to_compute_kernel<true>, blocks, threads, st, x, elems, s.xh);
    else pdl_launch(to_compute_kernel<false>, blocks, threads, st, x, elems, s.xh);
  }
  const uint32_t* xw = reinterpret_cast<const uint32_t*>(s.xh);
  if (w0.kind == WeightKind::Q4)
    return bf ? launch_tiles<WeightKind::Q4, true>(G, xw, n, accumulate, s, max_blocks, st)
              : launch_tiles<WeightKind::Q4, false>(G, xw, n, accumulate, s, max_blocks, st);
  return bf ? launch_tiles<WeightKind::Int8, true>(G, xw, n, accumulate, s, max_blocks, st)
            : launch_tiles<WeightKind::Int8, false>(G, xw, n, accumulate, s, max_blocks, st);
}

}  // namespace bq::cuda
