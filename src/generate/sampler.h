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
  int32_t next(std::span<const float> logits);

 private:
  SamplingOptions opt_;
  std::mt19937_64 rng_;
};

int32_t argmax(std::span<const float> v);

}  // namespace bq
