// How the tensor-core decode products (backend/cuda/matvec_tc.cu) cut their work among warps, in plain C++ so that
// the kernel, its launcher and a CPU test share one definition.
//
// The work of a launch is tiles × R rounds (a round: 128 k elements of a 16-row tile), numbered tile-major. Warp w
// takes the contiguous range [w·L, (w+1)·L). A tile covered by one warp is stored by it; a tile covered by warps
// first..last (first < last) gets one partial tile from each, summed in warp order by the last to arrive. A warp's
// partial tiles are at most two, the one where its range starts and the one where it ends, in slots 2w and 2w + 1.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "core/host_device.h"

namespace bq::cuda {

constexpr int kTcWarpsPerBlock = 8;
constexpr int kTcRoundElems = 128;  // k elements of a round: 4 lanes × 32
constexpr int kTcMinRoundsPerWarp = 4;  // shorter ranges cost more in partial tiles than they gain in parallelism

struct TcSplit {
  int blocks;           // launched
  int rounds_per_warp;  // L
};

// The split of `total` rounds over at most `max_blocks` blocks: ranges of at least kTcMinRoundsPerWarp rounds, no
// block without work.
inline TcSplit tc_split(int64_t total, int max_blocks) {
  const int64_t warps = int64_t(std::max(max_blocks, 1)) * kTcWarpsPerBlock;
  const int64_t L = std::max<int64_t>(kTcMinRoundsPerWarp, (total + warps - 1) / warps);
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(max_blocks, (total + L * kTcWarpsPerBlock - 1) /
                                                                                 (L * kTcWarpsPerBlock)));
  return TcSplit{int(blocks), int(L)};
}

// First and last warp whose ranges cover tile `tile` (R rounds per tile, L per warp).
BQ_HOST_DEVICE inline int tc_first_warp(int tile, int R, int L) { return int(int64_t(tile) * R / L); }
BQ_HOST_DEVICE inline int tc_last_warp(int tile, int R, int L) { return int((int64_t(tile + 1) * R - 1) / L); }

// Slot of warp w's partial tile for tile `tile`: 2w where the warp's range starts in the tile, 2w + 1 where it ends
// there.
BQ_HOST_DEVICE inline int tc_partial_slot(int w, int tile, int R, int L) {
  return 2 * w + (int64_t(w) * L >= int64_t(tile) * R ? 0 : 1);
}

// The tiled tensor-core product (backend/cuda/tc_gemm.cu) for 17..kTcGemmTokens tokens a launch. A block of
// kTcWarpsPerBlock warps takes a row block of kTcGemmBlockTiles 16-row tiles (kTcGemmTilesPerWarp per warp) over
// one contiguous range of rounds (a k split), for all the launch's tokens. The splits of a row block are summed in
// split order by the last of its blocks to arrive. The split depends on the weights' shape only, never on the
// tokens, so that a token's result does not depend on the batch it is in.
constexpr int kTcGemmTilesPerWarp = 2;
constexpr int kTcGemmBlockTiles = kTcWarpsPerBlock * kTcGemmTilesPerWarp;
constexpr int kTcGemmTokens = 64;               // tokens of one launch: 8 mma column tiles
constexpr int kTcGemmTargetBlocks = 2 * 132;    // row blocks × splits aimed at: about two per multiprocessor
constexpr int kTcGemmMinRoundsPerSplit = 4;

struct TcGemmSplit {
  int row_blocks;        // blocks along the rows (grid: row_blocks × splits)
  int splits;            // k ranges, none empty
  int rounds_per_split;  // the last may have fewer
};

// tiles: 16-row tiles of the launch (all its weights); rounds: in / kTcRoundElems.
inline TcGemmSplit tc_gemm_split(int64_t tiles, int64_t rounds) {
  const int64_t row_blocks = std::max<int64_t>(1, (tiles + kTcGemmBlockTiles - 1) / kTcGemmBlockTiles);
  const int64_t want = (kTcGemmTargetBlocks + row_blocks - 1) / row_blocks;
  const int64_t most = std::max<int64_t>(1, rounds / kTcGemmMinRoundsPerSplit);
  const int64_t k = std::clamp<int64_t>(want, 1, most);
  const int64_t per = (rounds + k - 1) / k;
  return TcGemmSplit{int(row_blocks), int((rounds + per - 1) / per), int(per)};
}

// fp32 partial sums a launch over `tiles` row tiles and `rounds` rounds needs: one 16-row × kTcGemmTokens tile per
// (tile, split), none when there is one split.
// Where the tiled product keeps a round's activations in shared memory: token-major rows of kTcGemmTokenBytes, lane
// t's 32 activations (64 bytes) at t · kTcGemmSpanBytes, then 8 bytes of padding, so that the B-operand reads of a
// half-warp hit 32 different banks.
constexpr int kTcGemmSpanBytes = 72;
constexpr int kTcGemmTokenBytes = 4 * kTcGemmSpanBytes;
// Byte offset in a stage of piece q (0..31: elements 4q..4q+3 of the round, 8 bytes) of `token`.
BQ_HOST_DEVICE constexpr int tc_gemm_piece_offset(int token, int q) {
  return token * kTcGemmTokenBytes + (q / 8) * kTcGemmSpanBytes + (q % 8) * 8;
}
// Byte offset in a stage of the 8 bytes lane (g, t) reads as its B operand of mma step i (0..7) and token tile j:
// elements t·32 + 4i .. + 3 of token j·8 + g, what the weights' A operand pairs them with (tc_product.cuh).
BQ_HOST_DEVICE constexpr int tc_gemm_b_offset(int g, int t, int j, int i) {
  return (j * 8 + g) * kTcGemmTokenBytes + t * kTcGemmSpanBytes + i * 8;
}

inline size_t tc_gemm_partial_floats(int64_t tiles, int64_t rounds) {
  if (rounds < 1) return 0;  // narrower than a round: never a tensor-core product (and no split to divide by)
  const TcGemmSplit s = tc_gemm_split(tiles, rounds);
  if (s.splits == 1) return 0;
  return size_t(s.row_blocks) * kTcGemmBlockTiles * size_t(s.splits) * 16 * kTcGemmTokens;
}

}  // namespace bq::cuda
