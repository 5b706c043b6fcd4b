// The forward pass of the Llama family on the CPU, over a batch of rows from one or more sequences.
#pragma once
#include <span>
#include <vector>

#include "model/model.h"

namespace bq {

// Keys and values of one sequence, fp32, [layer][position][kv_dim].
struct KVCache {
  int capacity = 0;
  int length = 0;  // positions filled
  int kv_dim = 0;
  std::vector<float> k, v;

  KVCache(const ModelConfig& c, int capacity);
  float* k_at(int layer, int pos) { return k.data() + (size_t(layer) * capacity + pos) * kv_dim; }
  float* v_at(int layer, int pos) { return v.data() + (size_t(layer) * capacity + pos) * kv_dim; }
  size_t bytes() const { return (k.size() + v.size()) * sizeof(float); }
};

// One step of work: row i feeds tokens[i] to sequence seq[i] at the next free position of caches[seq[i]].
// Rows of one sequence must be consecutive and in order. Logits (fp32, [logit_rows.size(), vocab]) are computed
// for the rows listed in logit_rows only.
struct ForwardBatch {
  std::vector<int32_t> tokens;
  std::vector<int> seq;
  std::vector<int> logit_rows;
};

class CpuForward {
 public:
  explicit CpuForward(const Model& m);
  void run(const ForwardBatch& b, std::span<KVCache*> caches, float* logits);

 private:
  const Model& m_;
  std::vector<float> inv_freq_;  // fp32, as the reference computes RoPE angles
};

}  // namespace bq
