// Next-token choice from logits: greedy, or temperature / top-k / top-p sampling from a seeded generator.
#pragma once
#include <cstdint>
#include <random>
#include <span>

#include "generate/text_generator.h"

namespace bq {

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& opt) : opt_(opt), rng_(opt.seed) {}
  int32_t next(std::span<const float> logits);  // throws bq::Error on a NaN or infinite logit, as argmax

 private:
  SamplingOptions opt_;
  std::mt19937_64 rng_;
};

// The first maximum. A NaN or infinite logit throws bq::Error naming its index: weights or a config that make the
// model's output non-finite must stop a run, not turn every answer into token 0.
int32_t argmax(std::span<const float> v);

}  // namespace bq
