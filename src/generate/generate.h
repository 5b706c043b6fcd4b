// Batched generation at the token level: many sequences of independent lengths, each with its own sampling.
#pragma once
#include <functional>
#include <vector>

#include "backend/forward.h"
#include "core/error.h"
#include "generate/text_generator.h"

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

// Called once per request as it ends, with its result (before generate_tokens returns).
using FinishCallback = std::function<void(size_t request, const TokenResult&)>;

// Called after every forward step with the number of tokens it generated.
using StepCallback = std::function<void(size_t new_tokens)>;

// A request whose prompt plus max_new_tokens exceeds the model's positions; `request` says which.
struct PromptTooLong : Error {
  size_t request;
  PromptTooLong(size_t i, const std::string& what) : Error(what), request(i) {}
};

// Continuous batching: up to max_in_flight sequences (0: all requests) decode together, one step at a time; each
// step also prefills the prompts admitted into freed places, and a sequence's cache is released as it ends.
// prefill_ms is the step that prefilled a request, decode_ms the time from then until it ended. Every prompt is
// checked against the model's positions before any work (PromptTooLong).
std::vector<TokenResult> generate_tokens(ForwardBackend& fwd, const std::vector<TokenRequest>& reqs,
                                         const std::vector<int32_t>& eos_ids, const StopCheck& stop = nullptr,
                                         int max_in_flight = 0, const FinishCallback& on_finish = nullptr,
                                         const StepCallback& on_step = nullptr);

}  // namespace bq
