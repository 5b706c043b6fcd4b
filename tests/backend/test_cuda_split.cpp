// The work split of the tensor-core decode products (backend/cuda/split.h), checked on the CPU: every round of
// every tile belongs to exactly one warp, no block is idle, shared tiles' partial slots never collide and fit the
// scratch the planner counts.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <random>

#include "backend/cuda/layout.h"
#include "model/config.h"

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

// The decode attention's chunks come from a row's own capacity (layout.h): whole multiples of
// kAttentionMinSplitLen, at most kAttentionMaxSplits, none empty, covering every position; and the launch's split
// count for sequences of at most C positions is exactly the most any of them needs.
TEST(AttentionSplits, ChunksFromTheRowsOwnCapacity) {
  int most = 0;
  for (int cap = 1; cap <= 40000; ++cap) {
    const int len = attention_split_len(cap), splits = attention_row_splits(cap);
    ASSERT_EQ(len % kAttentionMinSplitLen, 0) << cap;
    ASSERT_GE(len, kAttentionMinSplitLen) << cap;
    ASSERT_GE(splits, 1) << cap;
    ASSERT_LE(splits, kAttentionMaxSplits) << cap;
    ASSERT_GE(int64_t(splits) * len, cap) << cap;
    ASSERT_LT(int64_t(splits - 1) * len, cap) << cap;
    most = std::max(most, splits);
    ASSERT_EQ(attention_splits(cap), most) << cap;
  }
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
    for (size_t i = 1; i < tiles.size(); ++i) {
      if (seq[size_t(tiles[i].first_row)] == seq[size_t(tiles[i - 1].first_row)]) {
        EXPECT_EQ(tiles[i - 1].rows, kPrefillTileRows);
      }
    }
  }
}

// The tiled product's split (split.h): every round of a row block in exactly one split, none empty, splits of at
// least kTcGemmMinRoundsPerSplit rounds unless the weight has fewer, about kTcGemmTargetBlocks blocks where the
// rows allow, and partial slots ((tile · splits + split) · 64 tokens · 16 rows) inside what the launch asks for.
void check_gemm_split(int64_t tiles, int64_t rounds) {
  SCOPED_TRACE(::testing::Message() << tiles << " tiles x " << rounds << " rounds");
  const TcGemmSplit s = tc_gemm_split(tiles, rounds);
  ASSERT_EQ(s.row_blocks, (tiles + kTcGemmBlockTiles - 1) / kTcGemmBlockTiles);
  ASSERT_GE(s.splits, 1);
  ASSERT_GE(int64_t(s.splits) * s.rounds_per_split, rounds) << "every round in a split";
  ASSERT_LT(int64_t(s.splits - 1) * s.rounds_per_split, rounds) << "no empty split";
  if (s.splits > 1) {
    ASSERT_GE(s.rounds_per_split, kTcGemmMinRoundsPerSplit);
  }
  // At least half the target where the rows and rounds allow it (rounding the split length up loses at most half).
  const int64_t blocks = int64_t(s.row_blocks) * s.splits;
  const int64_t most = std::max<int64_t>(1, rounds / kTcGemmMinRoundsPerSplit);
  ASSERT_GE(2 * blocks, std::min<int64_t>(kTcGemmTargetBlocks, s.row_blocks * most));
  const size_t floats = tc_gemm_partial_floats(tiles, rounds);
  if (s.splits == 1) {
    ASSERT_EQ(floats, 0u);
  } else {
    const int64_t last_slot = ((tiles - 1) * s.splits + s.splits - 1) * 16 * kTcGemmTokens;
    ASSERT_LE(size_t(last_slot + 16 * kTcGemmTokens), floats);
  }
}

// The tiled product's shared-memory layout, emulated: pieces placed as load_round places them (element e of token
// k written as the value 1000·k + e), then every lane's B operand read as compute_round reads it. Each lane must
// get elements t·32 + 4i .. + 3 of token 8j + g, in order, what the A operand pairs with them (tc_product.cuh);
// pieces must not overlap; and in each half-warp, the 16 lanes' 8-byte reads must hit 32 different banks.
TEST(CudaGemmSplit, SharedMemoryLayoutFeedsEachLaneItsElements) {
  constexpr int kTokens = kTcGemmTokens;
  std::vector<int> stage(size_t(kTokens * kTcGemmTokenBytes / 2), -1);  // one 16-bit slot per value
  for (int token = 0; token < kTokens; ++token)
    for (int q = 0; q < 32; ++q) {
      const int at = tc_gemm_piece_offset(token, q);
      ASSERT_EQ(at % 8, 0) << "cp.async of 8 bytes needs 8-byte alignment";
      ASSERT_LE(at + 8, kTokens * kTcGemmTokenBytes);
      for (int e = 0; e < 4; ++e) {
        int& slot = stage[size_t(at / 2 + e)];
        ASSERT_EQ(slot, -1) << "pieces overlap";
        slot = 1000 * token + 4 * q + e;
      }
    }
  for (int j = 0; j < kTokens / 8; ++j)
    for (int i = 0; i < 8; ++i) {
      for (int g = 0; g < 8; ++g)
        for (int t = 0; t < 4; ++t) {
          const int at = tc_gemm_b_offset(g, t, j, i);
          ASSERT_EQ(at % 8, 0);
          for (int e = 0; e < 4; ++e)
            ASSERT_EQ(stage[size_t(at / 2 + e)], 1000 * (8 * j + g) + 32 * t + 4 * i + e)
                << "lane (" << g << ", " << t << "), tile " << j << ", step " << i << ", value " << e;
        }
      for (int half = 0; half < 2; ++half) {  // lanes 16·half .. +15: g = 4·half .. +3
        std::set<int> banks;
        for (int lane = 16 * half; lane < 16 * half + 16; ++lane) {
          const int word = tc_gemm_b_offset(lane / 4, lane % 4, j, i) / 4;
          banks.insert(word % 32), banks.insert((word + 1) % 32);
        }
        EXPECT_EQ(banks.size(), 32u) << "bank conflict: tile " << j << ", step " << i << ", half " << half;
      }
    }
}

TEST(CudaGemmSplit, ModelAndRandomShapes) {
  for (auto [tiles, rounds] : {std::pair<int64_t, int64_t>{384, 32}, {256, 32}, {1792, 32}, {256, 112}, {8016, 32},
                               {640, 64}, {3584, 64}, {512, 224}, {16032, 64}, {1, 1}, {5, 32}, {17, 3}})
    check_gemm_split(tiles, rounds);
  std::mt19937 rng(11);
  for (int i = 0; i < 500; ++i) check_gemm_split(1 + int64_t(rng() % 20000), 1 + int64_t(rng() % 300));
}

// The scratch the forward pass allocates (and the planner counts) for a batch the tiled kernel takes holds the
// partial sums of each of the model's launches.
TEST(CudaGemmSplit, ScratchCoversEveryLaunch) {
  for (const char* name : {"llama-3.1-8b", "llama-3.3-70b", "small-100m", "medgemma-27b", "qwen3-8b", "phi-4"}) {
    SCOPED_TRACE(name);
    const ModelConfig c = preset_config(name);
    const auto tiles = [](int64_t rows) { return (rows + kTcTileRows - 1) / kTcTileRows; };
    const int64_t H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate;
    const size_t most = std::max({tc_gemm_partial_floats(tiles(Q) + 2 * tiles(KV), H / kTcRoundElems),
                                  tc_gemm_partial_floats(tiles(H), Q / kTcRoundElems),
                                  tc_gemm_partial_floats(2 * tiles(I), H / kTcRoundElems),
                                  tc_gemm_partial_floats(tiles(H), I / kTcRoundElems),
                                  tc_gemm_partial_floats(tiles(c.vocab), H / kTcRoundElems)});
    for (int rows : {kTcStreamMaxRows + 1, 32, 64, kTcGemmMaxRows}) {
      const CudaScratchElems e = cuda_scratch_elems(c, rows, rows, 4, rows, true);
      EXPECT_GE(e.tc_partial, most) << rows << " rows";
      EXPECT_GE(e.tc_counters, size_t(tc_gemm_split(tiles(2 * I), H / kTcRoundElems).row_blocks));
    }
    EXPECT_GE(cuda_scratch_elems(c, 8, 8, 4, 8, true).tc_partial, kTcPartialFloats);
  }
}

// A model narrower than one 128-element round (the parity fixtures: hidden 64) has no tiled launch, and sizing its
// scratch divides by no empty split (it stopped every quantized CUDA parity test with SIGFPE, H200, 2026-12-05).
TEST(CudaGemmSplit, NarrowModelsHaveNoTiledScratch) {
  const ModelConfig c = preset_config("tiny");
  ASSERT_LT(c.hidden, kTcRoundElems);
  EXPECT_EQ(tc_gemm_partial_floats(8, 0), 0u);
  EXPECT_EQ(tc_gemm_partial_floats_most(c), 0u);
  for (int rows : {kTcStreamMaxRows + 1, 64, kTcGemmMaxRows})
    EXPECT_GE(cuda_scratch_elems(c, rows, rows, 4, rows, true).tc_partial, kTcPartialFloats) << rows;
}

// Prefill passes as long as the activation budget allows: llama-3.3-70b stays at 1,024 rows, llama-3.1-8b takes
// 2,048, a small model the most, a model with sliding layers no more than its ring allows; and the buffers of a
// pass of that many rows are within the budget.
TEST(CudaPassRows, LongestPassWithinTheActivationBudget) {
  EXPECT_EQ(max_rows_per_pass(preset_config("llama-3.3-70b")), 1024);
  EXPECT_EQ(max_rows_per_pass(preset_config("llama-3.1-8b")), 2048);
  EXPECT_EQ(max_rows_per_pass(preset_config("small-100m")), kMostRowsPerPass);
  EXPECT_EQ(max_rows_per_pass(preset_config("medgemma-4b")), kSlidingPassRows);
  for (const std::string& name : preset_names()) {
    const ModelConfig c = preset_config(name);
    const int rows = max_rows_per_pass(c);
    SCOPED_TRACE(name + ": " + std::to_string(rows) + " rows");
    EXPECT_GE(rows, kMinRowsPerPass);
    EXPECT_LE(rows, kMostRowsPerPass);
    const CudaScratchElems s = cuda_scratch_elems(c, rows, 0, 1, 0, true);
    if (rows > kMinRowsPerPass) EXPECT_LE(s.bytes() - s.wtile * 2, kPassActivationBytes);
  }
}

}  // namespace
}  // namespace bq
