// One check for every backend's copy_prefix: a prompt continued from a copied prefix computes what the whole prompt
// computes.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "backend/forward.h"

namespace bq::test {

struct PrefixCopyLogits {
  std::vector<float> whole, continued;  // the last prompt position's logits, then one decode step's
};

// The whole prompt prefilled in one sequence, against its first `shared` positions copied from a donor that
// prefilled them and then went its own way (two other tokens), and the rest prefilled after the copy. Then one
// decode step of both in one batch.
inline PrefixCopyLogits prefix_copy_logits(ForwardBackend& f, const std::vector<int32_t>& prompt, int shared) {
  const int V = f.config().vocab, n = int(prompt.size());
  PrefixCopyLogits out;
  out.whole.resize(2 * size_t(V));
  out.continued.resize(2 * size_t(V));
  std::vector<float> scratch(static_cast<size_t>(V));
  const int donor = f.open_sequence(shared + 2), whole = f.open_sequence(n + 1), cont = f.open_sequence(n + 1);
  ForwardBatch d{{prompt.begin(), prompt.begin() + shared}, std::vector<int>(size_t(shared), donor), {shared + 1}};
  d.tokens.push_back(int32_t((prompt[size_t(shared)] + 1) % V));
  d.tokens.push_back(7);
  d.seq.push_back(donor), d.seq.push_back(donor);
  f.run(d, scratch.data());
  f.run({prompt, std::vector<int>(size_t(n), whole), {n - 1}}, out.whole.data());
  EXPECT_TRUE(f.copy_prefix(donor, cont, shared));
  EXPECT_EQ(f.sequence_length(cont), shared);
  f.close_sequence(donor);  // the copy owes the donor nothing
  f.run({{prompt.begin() + shared, prompt.end()}, std::vector<int>(size_t(n - shared), cont), {n - shared - 1}},
        out.continued.data());
  std::vector<float> both(2 * size_t(V));
  f.run({{5, 5}, {whole, cont}, {0, 1}}, both.data());
  std::copy_n(both.begin(), V, out.whole.begin() + V);
  std::copy_n(both.begin() + V, V, out.continued.begin() + V);
  EXPECT_EQ(f.sequence_length(whole), n + 1);
  EXPECT_EQ(f.sequence_length(cont), n + 1);
  f.close_sequence(whole), f.close_sequence(cont);
  return out;
}

}  // namespace bq::test
