// Batched generation at the token level: many sequences of independent lengths, each with its own sampling.
#pragma once
#include <functional>
#include <vector>

#include "generate/text_generator.h"
#include "model/forward.h"

namespace bq {

struct TokenRequest {
  std::vector<int32_t> prompt;
  SamplingOptions opt;
};

struct TokenResult {
  std::vector<int32_t> tokens;  // generated only (an EOS that ended it is not included)
  std::string finish_reason;    // "eos" | "stop" | "length"
  double prefill_ms = 0, decode_ms = 0;
};

// Called after each new token; returning true ends that sequence with finish_reason "stop" (stop strings).
using StopCheck = std::function<bool(size_t request, const std::vector<int32_t>& generated)>;

// Prefills all prompts in one batch, then decodes the live sequences together until each ends.
std::vector<TokenResult> generate_tokens(ForwardBackend& fwd, const std::vector<TokenRequest>& reqs,
                                         const std::vector<int32_t>& eos_ids, const StopCheck& stop = nullptr);

}  // namespace bq
