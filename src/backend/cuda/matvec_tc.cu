// Decode products on the tensor cores: y[n, out] = x[n, in] · Wᵀ for up to 32 tokens (16 with the tiled kernel on),
// nf4 / fp4 / int8 weights, activations and dequantized weights in the 16-bit compute dtype, fp32 accumulation (what
// bitsandbytes does with a 16-bit compute dtype).
//
// Why tensor cores for a matrix-vector product: the CUDA-core kernel spends one shared-memory codebook lookup and
// one fp32 multiply-add per weight element and is bound by its load/store unit at an eighth of DRAM bandwidth
// (docs/benchmarks/NOTES.md). Here a 4-bit byte becomes a pair of 16-bit values with one lookup (256 entries, one
// copy per lane so that lookups never conflict) and one packed multiply by its block scale, and the products and
// sums run as mma.sync. Up to 8 tokens cost the same as one (an m16n8k16 tile has 8 columns); 32 use four tiles.
//
// Work split (stream-k): the row tiles of the launch (16 rows each) times the rounds of a row (128 k elements) form one
// flat list of work, cut into equal contiguous ranges, one per warp. A lane's weights and activations of a round are
// the 32 elements of its span (tc_product.cuh). Each warp keeps U rounds of weight loads in flight in registers across
// tile boundaries and never waits for other warps. A tile that lies in one warp's range is stored by that warp; a tile
// shared by several warps is summed by the last of them to arrive, from the partial tiles in warp order (deterministic
// results). The lookup table is built once per block, and one launch covers up to three weights with the same input (q,
// k, v or gate, up).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>

#include "backend/cuda/check.h"
#include "backend/cuda/tc_product.cuh"
#include "core/error.h"

namespace bq::cuda {

namespace {

using namespace tc;
constexpr int kWarps = kTcWarpsPerBlock;

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
  uint32_t s2a, s2b;
  round_scales<K, BF>(s, dq, offset, dyn, s2a, s2b);
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
  if constexpr (K == WeightKind::Q4) build_q4_tables<BF>(G, lut_smem, dyn, warp, lane);
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

namespace {
// On (13-17% faster decode at batch 32 and 64 on the H200); BIOMEDQ_TC_GEMM=0 turns it off, for comparisons.
bool g_tc_gemm = [] {
  const char* v = std::getenv("BIOMEDQ_TC_GEMM");
  return !(v && std::string(v) == "0");
}();
}  // namespace

void set_tc_gemm(bool on) { g_tc_gemm = on; }
bool tc_gemm_enabled() { return g_tc_gemm; }

namespace {
bool g_batch_invariant = false;
}  // namespace

void set_batch_invariant(bool on) { g_batch_invariant = on; }
bool batch_invariant() { return g_batch_invariant; }

Compute product_compute(const DeviceWeight& w) {
  return g_batch_invariant && w.kind == WeightKind::BF16 ? Compute::BF16 : w.compute;
}

bool matvec_tc_supported(const DeviceWeight& w, int n) {
  const int most = g_batch_invariant ? std::numeric_limits<int>::max() : g_tc_gemm ? kTcGemmMaxRows : kMatvecMaxRows;
  if (n < 1 || n > most) return false;
  if (product_compute(w) == Compute::F32 || w.in % kRoundElems != 0) return false;
  if (uint64_t(w.out) * uint64_t(w.in) >> 32) return false;  // 32-bit element indices
  switch (w.kind) {
    case WeightKind::Int8: return aligned16(w.cb) && aligned16(w.scb);
    case WeightKind::Q4:
      return aligned16(w.packed) && q4_blocks_vectorizable(w);
    case WeightKind::BF16: return g_batch_invariant && aligned16(w.bf16);  // else the CUDA-core kernel and cuBLAS
    default: return false;  // LLM.int8: its own decomposition
  }
}

bool matvec_tc_can_share(const MatvecTarget* targets, int count, int n) {
  if (count < 1 || count > kMaxGroup) return false;
  const DeviceWeight& w0 = *targets[0].w;
  for (int i = 0; i < count; ++i) {
    const DeviceWeight& w = *targets[i].w;
    if (!matvec_tc_supported(w, n) || w.kind != w0.kind || w.in != w0.in || product_compute(w) != product_compute(w0) ||
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
    G.w[i].compute = product_compute(w);
    G.y[i] = targets[i].y;
    G.bias[i] = targets[i].bias;
    G.tiles_before[i + 1] = G.tiles_before[i] + int((w.out + kTileRows - 1) / kTileRows);
  }
  const int64_t elems = int64_t(n) * w0.in;
  const bool bf = product_compute(w0) == Compute::BF16;
  if (x) {
    const dim3 blocks(unsigned((elems / 2 + 255) / 256)), threads(256);
    if (bf) pdl_launch(to_compute_kernel<true>, blocks, threads, st, x, elems, s.xh);
    else pdl_launch(to_compute_kernel<false>, blocks, threads, st, x, elems, s.xh);
  }
  if (g_batch_invariant) return tc::launch_gemm_rows(G, s.xh, n, accumulate, s, st);
  if (g_tc_gemm && n > kTcStreamMaxRows) return tc::launch_gemm(G, s.xh, n, accumulate, s, st);  // one launch
  const uint32_t* xw = reinterpret_cast<const uint32_t*>(s.xh);
  if (w0.kind == WeightKind::Q4)
    return bf ? launch_tiles<WeightKind::Q4, true>(G, xw, n, accumulate, s, max_blocks, st)
              : launch_tiles<WeightKind::Q4, false>(G, xw, n, accumulate, s, max_blocks, st);
  return bf ? launch_tiles<WeightKind::Int8, true>(G, xw, n, accumulate, s, max_blocks, st)
            : launch_tiles<WeightKind::Int8, false>(G, xw, n, accumulate, s, max_blocks, st);
}

}  // namespace bq::cuda
