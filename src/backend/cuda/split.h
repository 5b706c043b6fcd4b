// How the tensor-core decode products (backend/cuda/matvec_tc.cu) cut their work among warps, in plain C++ so that
// the kernel, its launcher and a CPU test share one definition.
//
// The work of a launch is tiles × R rounds (a round: 128 k elements of a 16-row tile), numbered tile-major. Warp w
// takes the contiguous range [w·L, (w+1)·L). A tile covered by one warp is stored by it; a tile covered by warps
// first..last (first < last) gets one partial tile from each, summed in warp order by the last to arrive. A warp's
// partial tiles are at most two, the one where its range starts and the one where it ends, in slots 2w and 2w + 1.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/host_device.h"

namespace bq::cuda {

constexpr int kTcWarpsPerBlock = 8;
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

}  // namespace bq::cuda
