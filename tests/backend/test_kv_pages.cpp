// The paged KV cache (kv_layout.h, kv_pages.h): where each layer's key and value of a position lie, which pages a
// prefix copy shares and copies, and what the CPU backend holds as sequences grow, share prefixes and end.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "backend/cpu/cpu_forward.h"
#include "backend/kv_layout.h"
#include "generate/generate.h"
#include "model/model.h"

namespace bq {
namespace {

// Every key and value row a layer can hold at once is a row of its own: over all layers, K and V, and the slots of
// the positions a layer keeps (a full layer: every position; a sliding one: its ring), no two share memory, and
// none lies outside its page. Shapes with and without sliding layers, rings of whole pages and ragged ones.
TEST(KvLayout, EveryLiveRowHasItsOwnPlace) {
  for (KvShape shape : {KvShape{3, 0, 0}, KvShape{0, 2, 128}, KvShape{2, 3, 1088}, KvShape{1, 1, 100}}) {
    for (int cap : {1, 63, 64, 65, 700, 2000}) {
      SCOPED_TRACE(::testing::Message() << shape.full_layers << " full, " << shape.sliding_layers << " sliding, ring "
                                        << shape.ring << ", capacity " << cap);
      const int kv_dim = 1;  // rows of one element: a row's index is its place
      std::vector<std::vector<int>> pages;
      std::vector<int*> table;
      for (int e = 0; e < shape.table_pages(cap); ++e)
        pages.emplace_back(size_t(shape.page_rows(e >= shape.full_pages(cap))), 0);
      for (auto& p : pages) table.push_back(p.data());
      std::set<const int*> seen;
      size_t rows = 0;
      for (int sliding = 0; sliding < 2; ++sliding)
        for (int i = 0; i < (sliding ? shape.sliding_layers : shape.full_layers); ++i) {
          const KvLayer l{shape, i, bool(sliding)};
          for (int p = 0; p < l.slots(cap); ++p) {  // positions 0 .. slots - 1 take every slot once
            const int* k = kv_key(table.data(), l, p, cap, kv_dim);
            const int* v = kv_value(table.data(), l, p, cap, kv_dim);
            const int e = l.table_index(l.slot(p, cap), cap);
            for (const int* row : {k, v}) {
              ASSERT_GE(row, pages[size_t(e)].data());
              ASSERT_LT(row, pages[size_t(e)].data() + pages[size_t(e)].size());
              seen.insert(row), ++rows;
            }
            // A later position in the same slot: a sliding layer's ring reuses it, a full layer has none.
            if (sliding && p + l.slots(cap) < 3 * cap) {
              EXPECT_EQ(kv_key(table.data(), l, p + l.slots(cap), cap, kv_dim), k);
            }
          }
        }
      EXPECT_EQ(seen.size(), rows) << "two rows in one place";
      EXPECT_EQ(int64_t(rows) / 2, shape.full_layers * int64_t(cap) +
                                       shape.sliding_layers * int64_t(shape.ring_slots(cap)));
      EXPECT_LE(shape.positions(cap) - int64_t(rows) / 2,
                int64_t(shape.full_layers + shape.sliding_layers) * (kKvPageSlots - 1))
          << "pages leave at most 63 slots of a layer unused";
    }
  }
}

// The pages a written position needs: one per kind, in the table's order (full pages, then sliding ones).
TEST(KvLayout, PagesWrittenByAPosition) {
  const KvShape both{2, 3, 128};
  EXPECT_EQ(kv_pages_written(both, 0, 1000), (std::vector<int>{0, 16}));
  EXPECT_EQ(kv_pages_written(both, 64, 1000), (std::vector<int>{1, 17}));
  EXPECT_EQ(kv_pages_written(both, 130, 1000), (std::vector<int>{2, 16})) << "the ring wraps at 128";
  EXPECT_EQ(kv_pages_written(both, 90, 100), (std::vector<int>{1, 3})) << "a capacity under the ring";
  EXPECT_EQ(kv_pages_written(KvShape{4, 0, 0}, 200, 300), (std::vector<int>{3}));
  EXPECT_EQ(kv_pages_written(KvShape{0, 1, 128}, 200, 300), (std::vector<int>{1}));
  ModelConfig gemma = preset_config("medgemma-4b");
  EXPECT_EQ(kv_shape(gemma, 0, gemma.n_layers).ring % kKvPageSlots, 0) << "rings are whole pages";
  EXPECT_GE(kv_shape(gemma, 0, gemma.n_layers).ring, gemma.sliding_window + kSlidingPassRows);
}

// A prefix copy shares the full layers' pages wholly inside the prefix and copies the page holding its rest; a
// sliding layer's pages holding the prefix's last window are copied, between tables that differ by their full
// pages, or it cannot be done where the source's ring has moved on.
TEST(KvLayout, PrefixPagesSharedAndCopied) {
  ModelConfig plain = preset_config("tiny");
  const KvShape full = kv_shape(plain, 0, plain.n_layers);
  KvPrefixPages p = kv_prefix_pages(plain, full, 300, 400, 500, 200);
  EXPECT_TRUE(p.possible);
  EXPECT_EQ(p.shared, 3);
  EXPECT_EQ(p.src_copied, (std::vector<int>{3}));
  EXPECT_EQ(p.dst_copied, (std::vector<int>{3}));
  p = kv_prefix_pages(plain, full, 300, 400, 500, 128);
  EXPECT_EQ(p.shared, 2);
  EXPECT_TRUE(p.src_copied.empty()) << "a prefix of whole pages is all shared";
  p = kv_prefix_pages(plain, full, 40, 64, 64, 17);
  EXPECT_EQ(p.shared, 0);
  EXPECT_EQ(p.src_copied, (std::vector<int>{0}));

  ModelConfig gemma = preset_config("medgemma-4b");
  gemma.n_layers = 3, gemma.sliding_layers = {true, false, true}, gemma.sliding_window = 100;
  const KvShape s = kv_shape(gemma, 0, 3);  // ring 1152: 18 pages
  ASSERT_EQ(s.ring, 1152);
  // Source of capacity 3000 (47 full pages), destination 2000 (32): the window [1900, 2000) of a 2000-position
  // prefix is in ring slots 748..847, pages 11..13 of the sliding kind.
  p = kv_prefix_pages(gemma, s, 2000, 3000, 2000, 2000);
  EXPECT_TRUE(p.possible);
  EXPECT_EQ(p.shared, 31);
  EXPECT_EQ(p.src_copied, (std::vector<int>{31, 47 + 11, 47 + 12, 47 + 13}));
  EXPECT_EQ(p.dst_copied, (std::vector<int>{31, 32 + 11, 32 + 12, 32 + 13}));
  // Once the source has written position 1900 + 1152, slot 748 holds that one instead of 1900.
  EXPECT_TRUE(kv_prefix_pages(gemma, s, 1900 + 1152, 3200, 2100, 2000).possible);
  EXPECT_FALSE(kv_prefix_pages(gemma, s, 1901 + 1152, 3200, 2100, 2000).possible);
}

Model tiny_model() { return synthesize_model(preset_config("tiny"), 5, 0.3f); }

size_t page_bytes(const ModelConfig& c) { return size_t(2) * size_t(c.n_layers) * kKvPageSlots * size_t(c.kv_dim()) * 4; }

// A sequence holds the pages of the positions it has written, not of its capacity, and gives them back as it ends.
TEST(KvPages, CpuSequencesHoldWhatTheyWrote) {
  Model m = tiny_model();
  CpuForward f(m);
  const size_t page = page_bytes(m.cfg);
  const int a = f.open_sequence(1000);
  EXPECT_EQ(f.memory().kv_cache_bytes, 0u);
  std::vector<float> logits(size_t(m.cfg.vocab));
  f.run({std::vector<int32_t>(10, 3), std::vector<int>(10, a), {9}}, logits.data());
  EXPECT_EQ(f.memory().kv_cache_bytes, page);
  f.run({std::vector<int32_t>(54, 4), std::vector<int>(54, a), {53}}, logits.data());
  EXPECT_EQ(f.memory().kv_cache_bytes, page) << "64 positions: one page";
  f.run({{5}, {a}, {0}}, logits.data());
  EXPECT_EQ(f.memory().kv_cache_bytes, 2 * page);
  const int b = f.open_sequence(100);
  f.run({std::vector<int32_t>(70, 6), std::vector<int>(70, b), {69}}, logits.data());
  EXPECT_EQ(f.memory().kv_cache_bytes, 4 * page);
  f.close_sequence(a);
  EXPECT_EQ(f.memory().kv_cache_bytes, 2 * page);
  f.close_sequence(b);
  EXPECT_EQ(f.memory().kv_cache_bytes, 0u);
  EXPECT_EQ(f.memory().kv_cache_peak_bytes, 4 * page);
}

// Sequences that copied a prefix hold its whole pages once: 20 sequences sharing a 200-position prefix hold its
// 3 whole pages once, and each its own copy of the page with the prefix's last 8 positions and what follows.
// Closing the donor leaves the shared pages to the others; the last to close frees them.
TEST(KvPages, CpuSharedPrefixPagesHeldOnce) {
  Model m = tiny_model();
  CpuForward f(m);
  const size_t page = page_bytes(m.cfg);
  std::vector<int32_t> prompt(200);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 13 + 1) % size_t(m.cfg.vocab));
  std::vector<float> logits(size_t(m.cfg.vocab));
  const int donor = f.open_sequence(220);
  f.run({prompt, std::vector<int>(prompt.size(), donor), {199}}, logits.data());
  EXPECT_EQ(f.memory().kv_cache_bytes, 4 * page);
  std::vector<int> copies;
  for (int i = 0; i < 20; ++i) {
    copies.push_back(f.open_sequence(220));
    ASSERT_TRUE(f.copy_prefix(donor, copies.back(), 200));
  }
  EXPECT_EQ(f.memory().kv_cache_bytes, 4 * page + 20 * page) << "3 shared pages, 21 pages of the prefix's rest";
  f.close_sequence(donor);
  EXPECT_EQ(f.memory().kv_cache_bytes, 3 * page + 20 * page);
  for (int s : copies) f.close_sequence(s);
  EXPECT_EQ(f.memory().kv_cache_bytes, 0u);
}

// Through the decode loop: prompts that share an instruction (a task's) give the same greedy answers with prefix
// reuse on and off, and reuse holds fewer KV bytes at its peak (the shared pages once).
TEST(KvPages, DecodeLoopSharesPrefixPages) {
  Model m = tiny_model();
  std::vector<int32_t> instruction(150);
  for (size_t i = 0; i < instruction.size(); ++i) instruction[i] = int32_t((i * 7 + 2) % size_t(m.cfg.vocab));
  std::vector<TokenRequest> reqs;
  std::mt19937 rng(3);
  for (int i = 0; i < 12; ++i) {
    TokenRequest r;
    r.prompt = instruction;
    for (int j = 0; j < 20 + i; ++j) r.prompt.push_back(int32_t(rng() % uint32_t(m.cfg.vocab)));
    r.opt.max_new_tokens = 6;
    reqs.push_back(r);
  }
  auto run = [&](bool reuse, size_t* peak) {
    CpuForward f(m);
    auto out = generate_tokens(f, reqs, {}, nullptr, {.max_in_flight = 6, .reuse_prefixes = reuse});
    *peak = f.memory().kv_cache_peak_bytes;
    return out;
  };
  size_t peak_reuse = 0, peak_plain = 0;
  const auto with = run(true, &peak_reuse), without = run(false, &peak_plain);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(with[i].tokens, without[i].tokens) << "request " << i;
  // 6 live sequences of 3 pages each without reuse; with it, 2 of each one's pages are the donor's.
  EXPECT_EQ(peak_plain, 18 * page_bytes(m.cfg));
  EXPECT_LT(peak_reuse, peak_plain);
}

}  // namespace
}  // namespace bq
