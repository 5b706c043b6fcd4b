// The tiled tensor-core product for 17..64 tokens a launch (batched decode, short prompt chunks; in batch-invariant
// mode every product, in launches of up to 64): y[n, out] = x[n, in] · Wᵀ with 4-bit or int8 weights dequantized in
// registers straight from bitsandbytes' layout (or bf16 weights as stored), the same arithmetic as the stream-k kernel
// (tc_product.cuh): activations and weights in the 16-bit compute dtype, fp32 sums, the result rounded to the compute
// dtype (bf16 weights: left in fp32).
//
// Why a second kernel: the stream-k kernel (matvec_tc.cu) has every lane load its tokens' activations from global
// memory each round, so from 17 tokens on it moves 8-16 times more activation bytes through L1 than weight bytes
// (H200, llama-3.1-8b nf4 at batch 32: 9.4 ms a decode step against bf16's 7.9), and from 33 tokens the products
// went through whole dequantized bf16 tiles and cuBLAS, reading the weights three times. Here the 8 warps of a block
// share one copy of the activations in shared memory and reuse each weight fragment for all 64 tokens.
//
// Block: a row block of 16 tiles (256 weight rows, two tiles per warp) over one k split (split.h), for all the
// launch's tokens. Rounds (128 k elements) of activations stream through three shared-memory stages (cp.async, in
// 8-byte pieces); each warp keeps its next U rounds of weights in registers, loaded before the wait for the previous
// kernel where they are the first.
//
// A stage holds each token's round in a 288-byte row: lane t's 32 activations (64 bytes) at t · 72, then 8 bytes of
// padding (split.h: tc_gemm_piece_offset, tc_gemm_b_offset, checked on the CPU). For step i, lane (g, t) reads the 8
// bytes at t · 72 + 8i of token g's row (its B operand: elements 4i..4i+3 of its span, as the weights' A operand has
// them). In each half-warp, the 16 lanes' words g · 72 + t · 18 + 2i and + 1 (mod 32) are all different: no bank
// conflicts.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "backend/cuda/check.h"
#include "backend/cuda/tc_product.cuh"
#include "core/error.h"

namespace bq::cuda::tc {

namespace {

constexpr int kWarps = kTcWarpsPerBlock;
constexpr int WT = kTcGemmTilesPerWarp;
constexpr int kStages = 3;
constexpr int kTokenBytes = kTcGemmTokenBytes;

// set_tc_gemm_blocks (ops.h); 2 from the start where BIOMEDQ_TC_GEMM_BLOCKS=2, else 1.
int g_blocks = [] {
  const char* v = std::getenv("BIOMEDQ_TC_GEMM_BLOCKS");
  return v && std::string(v) == "2" ? 2 : 1;
}();

template <int NT>
constexpr int kStageBytes = NT * 8 * kTokenBytes;
template <WeightKind K, int NT>
constexpr int kSmemBytes = (K == WeightKind::Q4 ? kLutBytes : 0) + kStages * kStageBytes<NT>;

// 8 bytes from global to shared memory, or zeros where !valid (tokens past the launch's).
__device__ __forceinline__ void copy8_async(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 8 : 0));
}

// Round r's activations of the launch's NT · 8 tokens into a stage: 32 pieces of 8 bytes a token, consecutive threads
// on consecutive pieces.
template <int NT>
__device__ __forceinline__ void load_round(char* stage, const uint16_t* __restrict__ xh, int64_t in, int r, int n) {
  constexpr int kPieces = NT * 8 * 32;
  static_assert(kPieces % (kWarps * 32) == 0, "whole pieces per thread");
#pragma unroll
  for (int i = 0; i < kPieces / (kWarps * 32); ++i) {
    const int p = int(threadIdx.x) + i * kWarps * 32, token = p / 32, q = p % 32;
    const bool valid = token < n;
    const uint16_t* src = xh + (valid ? int64_t(token) * in + int64_t(r) * kRoundElems + q * 4 : 0);
    copy8_async(stage + tc_gemm_piece_offset(token, q), src, valid);
  }
}

// c[w] += round's weights of the warp's tile w · the stage's activations. xs: the lane's first B operand
// (tc_gemm_b_offset(g, t, 0, 0)); the offsets are linear in j and i.
template <WeightKind K, bool BF, int NT>
__device__ __forceinline__ void compute_round(float (&c)[WT][NT][4], const Stage<K> (&s)[WT], const bool (&dq)[WT],
                                              const float (&offset)[WT], const char* xs, const char* lut,
                                              uint32_t lane4, const float* dyn) {
  uint32_t s2a[WT], s2b[WT];
#pragma unroll
  for (int w = 0; w < WT; ++w) round_scales<K, BF>(s[w], dq[w], offset[w], dyn, s2a[w], s2b[w]);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    uint32_t b[NT][2];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const uint2 v = *reinterpret_cast<const uint2*>(xs + tc_gemm_b_offset(0, 0, j, i));
      b[j][0] = v.x, b[j][1] = v.y;
    }
#pragma unroll
    for (int w = 0; w < WT; ++w) {
      const uint32_t* wda = reinterpret_cast<const uint32_t*>(s[w].a);
      const uint32_t* wdb = reinterpret_cast<const uint32_t*>(s[w].b);
      const uint32_t a0 = weight_pair<K, BF>(wda, 2 * i, s2a[w], lut, lane4);
      const uint32_t a1 = weight_pair<K, BF>(wdb, 2 * i, s2b[w], lut, lane4);
      const uint32_t a2 = weight_pair<K, BF>(wda, 2 * i + 1, s2a[w], lut, lane4);
      const uint32_t a3 = weight_pair<K, BF>(wdb, 2 * i + 1, s2b[w], lut, lane4);
#pragma unroll
      for (int j = 0; j < NT; ++j) mma<BF>(c[w][j], a0, a1, a2, a3, b[j][0], b[j][1]);
    }
  }
}

// U: rounds of weights a warp holds in registers (loads in flight); kBlocks: blocks a multiprocessor keeps, which
// bounds the registers a thread (65,536 / (256 · kBlocks)).
template <WeightKind K, bool BF, int NT, int U, int kBlocks>
__global__ void __launch_bounds__(kWarps * 32, kBlocks)
    tc_gemm_kernel(Group G, const uint16_t* __restrict__ xh, int n, bool accumulate, TcGemmSplit split,
                   float4* partial, int* counters) {
  extern __shared__ uint4 smem[];
  __shared__ float dyn[K == WeightKind::Q4 ? 256 : 1];
  __shared__ int last_block;
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32, g = lane / 4, t = lane % 4;
  const char* lut = reinterpret_cast<const char*>(smem);
  char* stages = reinterpret_cast<char*>(smem) + (K == WeightKind::Q4 ? kLutBytes : 0);
  const uint32_t lane4 = uint32_t(lane) * 4;
  if constexpr (K == WeightKind::Q4) build_q4_tables<BF>(G, smem, dyn, warp, lane);

  const int row_block = int(blockIdx.x) / split.splits, ks = int(blockIdx.x) % split.splits;
  const int R = int(G.w[0].in / kRoundElems), tiles = G.tiles_before[G.count];
  const int r0 = ks * split.rounds_per_split, r1 = min(R, r0 + split.rounds_per_split);
  // The warp's tiles: warp and warp + 8 of the row block. A tile past the launch's last loads that one and stores
  // nothing (the warp still takes part in the block's barriers).
  int tile[WT];
  bool dq[WT];
  float offset[WT];
  LoadCursor<K> lc[WT];
#pragma unroll
  for (int w = 0; w < WT; ++w) {
    tile[w] = row_block * kTcGemmBlockTiles + w * kWarps + warp;
    const int at = min(tile[w], tiles - 1);
    lc[w].seek(G, at, r0, g, t);
    const DeviceWeight& dw = G.w[tile_ref(G, at, g).wi];
    dq[w] = dw.absmax_q != nullptr, offset[w] = dw.offset;
  }
  Stage<K> wr[U][WT];
#pragma unroll
  for (int u = 0; u < U; ++u)
    if (r0 + u < r1)
#pragma unroll
      for (int w = 0; w < WT; ++w) {
        lc[w].load(wr[u][w]);
        lc[w].advance(G, tiles, R, g, t);
      }
  grid_wait();  // the activations are the previous kernel's output
  const int64_t in = G.w[0].in;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (r0 + s < r1) load_round<NT>(stages + s * kStageBytes<NT>, xh, in, r0 + s, n);
    commit_async();  // a group per round, empty ones too, so that wait_async counts rounds
  }
  float c[WT][NT][4];
#pragma unroll
  for (int w = 0; w < WT; ++w)
#pragma unroll
    for (int j = 0; j < NT; ++j) c[w][j][0] = c[w][j][1] = c[w][j][2] = c[w][j][3] = 0;

  for (int f = r0; f < r1; f += U) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int r = f + u;
      if (r >= r1) break;  // uniform over the block
      wait_async<kStages - 2>();  // round r's stage has landed (this thread's pieces) ...
      __syncthreads();            // ... everyone's, and round r - 1's stage is free for round r + kStages - 1
      const int next = r + kStages - 1;
      if (next < r1) load_round<NT>(stages + ((next - r0) % kStages) * kStageBytes<NT>, xh, in, next, n);
      commit_async();
      const char* xs = stages + ((r - r0) % kStages) * kStageBytes<NT> + tc_gemm_b_offset(g, t, 0, 0);
      compute_round<K, BF, NT>(c, wr[u], dq, offset, xs, lut, lane4, dyn);
      if (r + U < r1)
#pragma unroll
        for (int w = 0; w < WT; ++w) {
          lc[w].load(wr[u][w]);
          lc[w].advance(G, tiles, R, g, t);
        }
    }
  }
  grid_allow_successor();

  if (split.splits == 1) {
#pragma unroll
    for (int w = 0; w < WT; ++w)
      if (tile[w] < tiles) store_tile<K, BF, NT>(c[w], G, tile_ref(G, tile[w], g), n, accumulate, g, t);
    return;
  }
  // The partial tile of (tile, split) at ((tile · splits + split) · NT + j) · 32 + lane; the last of the row
  // block's splits to arrive sums them in split order (the same bits whatever the arrival order).
#pragma unroll
  for (int w = 0; w < WT; ++w)
    if (tile[w] < tiles) {
      float4* mine = partial + (int64_t(tile[w]) * split.splits + ks) * NT * 32 + lane;
#pragma unroll
      for (int j = 0; j < NT; ++j) mine[j * 32] = make_float4(c[w][j][0], c[w][j][1], c[w][j][2], c[w][j][3]);
    }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last_block = atomicAdd(counters + row_block, 1) == split.splits - 1;
  __syncthreads();
  if (!last_block) return;
  __threadfence();
#pragma unroll
  for (int w = 0; w < WT; ++w) {
    if (tile[w] >= tiles) continue;
    float sum[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j) sum[j][0] = sum[j][1] = sum[j][2] = sum[j][3] = 0;
    for (int k2 = 0; k2 < split.splits; ++k2) {
      const float4* p = partial + (int64_t(tile[w]) * split.splits + k2) * NT * 32 + lane;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const float4 v = __ldcg(p + j * 32);
        sum[j][0] += v.x, sum[j][1] += v.y, sum[j][2] += v.z, sum[j][3] += v.w;
      }
    }
    store_tile<K, BF, NT>(sum, G, tile_ref(G, tile[w], g), n, accumulate, g, t);
  }
  if (threadIdx.x == 0) counters[row_block] = 0;  // ready for the next launch
}

template <WeightKind K, bool BF, int NT, int U, int kBlocks>
void launch(const Group& G, const uint16_t* xh, int n, bool accumulate, const TcScratch& s, cudaStream_t st) {
  constexpr int smem = kSmemBytes<K, NT>;
  static_assert(kBlocks * (smem + 1024) <= 227 * 1024, "the blocks' shared memory fits a multiprocessor");
  opt_in_smem(tc_gemm_kernel<K, BF, NT, U, kBlocks>, smem);
  const TcGemmSplit split = tc_gemm_split(G.tiles_before[G.count], G.w[0].in / kRoundElems);
  const size_t need = tc_gemm_partial_floats(G.tiles_before[G.count], G.w[0].in / kRoundElems);
  if (need > s.partial_floats || size_t(split.row_blocks) > s.counter_count)
    fail("tc_gemm: the k-split scratch is too small for {} row tiles", G.tiles_before[G.count]);
  pdl_launch_smem(tc_gemm_kernel<K, BF, NT, U, kBlocks>, dim3(unsigned(split.row_blocks * split.splits)),
                  dim3(kWarps * 32), size_t(smem), st, G, xh, n, accumulate, split,
                  reinterpret_cast<float4*>(s.partial), s.counters);
}

// The token columns of a launch (NT mma tiles of 8) only bound the work: a token's sums are the same in each, so the
// launches of up to 16 tokens (batch-invariant mode's decode steps) take one or two tiles and two blocks a
// multiprocessor.
template <WeightKind K, bool BF>
void launch_tokens(const Group& G, const uint16_t* xh, int n, bool accumulate, const TcScratch& s, cudaStream_t st) {
  if constexpr (K == WeightKind::BF16) {  // 64 bytes a lane and row a round: one round in registers
    if (n <= 8) return launch<K, BF, 1, 1, 2>(G, xh, n, accumulate, s, st);
    if (n <= 16) return launch<K, BF, 2, 1, 2>(G, xh, n, accumulate, s, st);
    if (n <= 32) return launch<K, BF, 4, 1, 1>(G, xh, n, accumulate, s, st);
    return launch<K, BF, 8, 1, 1>(G, xh, n, accumulate, s, st);
  } else {
    if (n <= 8) return launch<K, BF, 1, 2, 2>(G, xh, n, accumulate, s, st);
    if (n <= 16) return launch<K, BF, 2, 2, 2>(G, xh, n, accumulate, s, st);
    if (n <= 32)
      return g_blocks == 2 ? launch<K, BF, 4, 1, 2>(G, xh, n, accumulate, s, st)
                           : launch<K, BF, 4, 2, 1>(G, xh, n, accumulate, s, st);
    return launch<K, BF, 8, 2, 1>(G, xh, n, accumulate, s, st);
  }
}

}  // namespace

void launch_gemm(const Group& G, const uint16_t* xh, int n, bool accumulate, const TcScratch& s, cudaStream_t st) {
  if (n < 1 || n > kTcGemmTokens) fail("tc_gemm: {} tokens in one launch (1..{})", n, kTcGemmTokens);
  const bool bf = G.w[0].compute == Compute::BF16;
  if (G.w[0].kind == WeightKind::BF16) {
    if (!bf) fail("tc_gemm: bf16 weights take bf16 compute");
    return launch_tokens<WeightKind::BF16, true>(G, xh, n, accumulate, s, st);
  }
  if (G.w[0].kind == WeightKind::Q4)
    return bf ? launch_tokens<WeightKind::Q4, true>(G, xh, n, accumulate, s, st)
              : launch_tokens<WeightKind::Q4, false>(G, xh, n, accumulate, s, st);
  return bf ? launch_tokens<WeightKind::Int8, true>(G, xh, n, accumulate, s, st)
            : launch_tokens<WeightKind::Int8, false>(G, xh, n, accumulate, s, st);
}

void launch_gemm_rows(const Group& G, const uint16_t* xh, int n, bool accumulate, const TcScratch& s, cudaStream_t st) {
  const int64_t in = G.w[0].in;
  for (int r0 = 0; r0 < n; r0 += kTcGemmTokens) {
    Group part = G;
    for (int i = 0; i < G.count; ++i) part.y[i] = G.y[i] + int64_t(r0) * G.w[i].out;
    launch_gemm(part, xh + int64_t(r0) * in, std::min(kTcGemmTokens, n - r0), accumulate, s, st);
  }
}

}  // namespace bq::cuda::tc

namespace bq::cuda {

void set_tc_gemm_blocks(int blocks) {
  if (blocks != 1 && blocks != 2) fail("tc_gemm: {} blocks a multiprocessor (1 or 2)", blocks);
  tc::g_blocks = blocks;
}
int tc_gemm_blocks() { return tc::g_blocks; }

}  // namespace bq::cuda
