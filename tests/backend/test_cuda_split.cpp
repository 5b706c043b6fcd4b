// The work split of the tensor-core decode products (backend/cuda/split.h), checked on the CPU: every round of
// every tile belongs to exactly one warp, no block is idle, shared tiles' partial slots never collide and fit the
// scratch the planner counts.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "backend/cuda/layout.h"

namespace bq {
namespace {

using namespace cuda;

void check_split(int tiles, int R, int max_blocks) {
  const int64_t total = int64_t(tiles) * R;
  const TcSplit s = tc_split(total, max_blocks);
  const int L = s.rounds_per_warp, warps = s.blocks * kTcWarpsPerBlock;
  SCOPED_TRACE(::testing::Message() << tiles << " tiles x " << R << " rounds, at most " << max_blocks << " blocks");
  ASSERT_GE(s.blocks, 1);
  ASSERT_LE(s.blocks, max_blocks);
  ASSERT_GE(L, kTcMinRoundsPerWarp);
  ASSERT_GE(int64_t(warps) * L, total) << "every round has a warp";
  ASSERT_LT(int64_t(s.blocks - 1) * kTcWarpsPerBlock * L, total) << "no block without work";
  ASSERT_LE(size_t(s.blocks) * kTcWarpsPerBlock * 2 * 32 * 4 * 4, kTcPartialFloats);
  std::map<int, int> slot_tile;  // slot -> the tile whose partial it holds
  for (int t = 0; t < tiles; ++t) {
    const int first = tc_first_warp(t, R, L), last = tc_last_warp(t, R, L);
    ASSERT_LE(first, last);
    ASSERT_LT(last, warps);
    // The tile's first and last rounds lie in those warps' ranges.
    ASSERT_TRUE(int64_t(first) * L <= int64_t(t) * R && int64_t(t) * R < int64_t(first + 1) * L);
    ASSERT_TRUE(int64_t(last) * L <= int64_t(t + 1) * R - 1 && int64_t(t + 1) * R - 1 < int64_t(last + 1) * L);
    if (first == last) continue;
    for (int w = first; w <= last; ++w) {
      const int slot = tc_partial_slot(w, t, R, L);
      ASSERT_TRUE(slot == 2 * w || slot == 2 * w + 1);
      auto [it, fresh] = slot_tile.emplace(slot, t);
      ASSERT_TRUE(fresh) << "slot " << slot << " of warp " << w << " holds tiles " << it->second << " and " << t;
    }
  }
}

TEST(CudaSplit, ModelShapes) {
  // (row tiles, rounds per tile) of llama-3.1-8b and llama-3.3-70b launches: q/k/v, o, gate+up, down, lm_head.
  for (auto [tiles, R] : {std::pair{384, 32}, {256, 32}, {1792, 32}, {256, 112}, {8016, 32}, {640, 64}, {512, 64},
                          {3584, 64}, {512, 224}, {16032, 64}})
    for (int blocks : {1, 2, 3, 132, 264}) check_split(tiles, R, blocks);
}

TEST(CudaSplit, RandomShapes) {
  std::mt19937 rng(std::random_device{}());
  for (int i = 0; i < 300; ++i)
    check_split(1 + int(rng() % 3000), 1 + int(rng() % 130), 1 + int(rng() % kTcMaxBlocks));
}

// Prompt tiles: runs of one sequence's prompt rows, at most kPrefillTileRows each, never across sequences or a
// decode row; every prompt row in exactly one tile.
TEST(AttentionTiles, CoverPromptRowsBySequence) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int> seq;
    std::vector<bool> prompt;
    for (int s = 0, n = int(rng() % 6) + 1; s < n; ++s) {
      const bool is_prompt = rng() % 3 != 0;
      const int rows = is_prompt ? int(rng() % 200) + 1 : 1;
      for (int i = 0; i < rows; ++i) seq.push_back(s), prompt.push_back(is_prompt);
    }
    const auto tiles = attention_tiles(seq, prompt);
    std::vector<int> covered(seq.size());
    for (const AttentionTile& t : tiles) {
      ASSERT_GE(t.rows, 1);
      ASSERT_LE(t.rows, kPrefillTileRows);
      for (int r = t.first_row; r < t.first_row + t.rows; ++r) {
        ++covered[size_t(r)];
        EXPECT_EQ(seq[size_t(r)], seq[size_t(t.first_row)]);
      }
    }
    for (size_t r = 0; r < seq.size(); ++r) EXPECT_EQ(covered[r], prompt[r] ? 1 : 0) << r;
    // As few tiles as that allows: a new tile only at a sequence's start or after a full one.
    for (size_t i = 1; i < tiles.size(); ++i)
      if (seq[size_t(tiles[i].first_row)] == seq[size_t(tiles[i - 1].first_row)])
        EXPECT_EQ(tiles[i - 1].rows, kPrefillTileRows);
  }
}

}  // namespace
}  // namespace bq
