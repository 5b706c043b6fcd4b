// Generation at the token level: the one decode loop (continuous batching of requests with their own sampling),
// which evaluation, `generate` and a server drive, and generate_tokens, its batch form.
#pragma once
#include <chrono>
#include <functional>
#include <map>
#include <unordered_map>
#include <vector>

#include "backend/forward.h"
#include "core/error.h"
#include "core/host_memory.h"
#include "generate/sampler.h"
#include "generate/text_generator.h"

namespace bq {

struct TokenRequest {
  std::vector<int32_t> prompt;
  SamplingOptions opt;
};

struct TokenResult {
  std::vector<int32_t> tokens;  // generated only (an EOS that ended it is not included)
  std::string finish_reason;    // "eos" | "stop" | "length" | "cancelled"
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

// How a DecodeLoop batches its steps.
struct LoopOptions {
  int max_in_flight = 0;       // live sequences at most (0: no limit)
  bool reuse_prefixes = true;  // prompts that begin like a live one take its cache for the shared part
  // Rows of one step at most (0: no limit). Prompts are then prefilled in chunks over several steps, beside the
  // decoding sequences, so that a long prompt arriving does not hold up every live stream for its whole prefill.
  // A prompt is admitted only while a step has rows to spare, so at most this many sequences are live.
  int max_step_tokens = 0;
};

// Requests join a queue and leave as they end; each step() decodes one token for every live sequence and prefills
// the queued prompts admitted into free places (at most max_in_flight live), in submission order; with
// max_step_tokens, prompts that do not fit a step go on in the next (a prompt's first token comes with its last
// chunk). A sequence's cache is released as it ends or is cancelled. Prefix reuse (on unless set off): an admitted prompt that
// begins like the prompt of a live, prefilled request (a task's instruction and shots, a self-consistency sample's
// whole prompt) takes that request's keys and values for the shared tokens (ForwardBackend::copy_prefix) and
// prefills only the rest; a prompt that shares more with one admitted in the same step waits a step (once) for its
// cache, letting later prompts pass. prefill_ms is the steps that prefilled a request, decode_ms the time from then
// until it ended.
//
// Memory: the caches hold pages as their sequences grow (backend/kv_layout.h), so how many fit is found as they run.
// When a step, an admission or a prefix copy finds the KV cache full (OutOfMemory: the device's memory, or
// ForwardBackend::set_kv_cache_limit), the most recently submitted live request is preempted: its cache is closed
// and it goes back to the head of the queue, to prefill its prompt and the tokens it has generated so far when
// there is room again, and go on from there. The live requests are capped at those that fitted, the cap rising by
// one as each request ends. One request alone that does not fit is an OutOfMemory saying so.
class DecodeLoop {
 public:
  DecodeLoop(ForwardBackend& fwd, std::vector<int32_t> eos_ids, const LoopOptions& opt, StopCheck stop = nullptr);
  ~DecodeLoop();  // closes every open sequence
  DecodeLoop(const DecodeLoop&) = delete;
  DecodeLoop& operator=(const DecodeLoop&) = delete;

  // Queues a request and returns its id (0, 1, 2, ... in submission order). PromptTooLong (request = the id it
  // would have had) when its prompt plus max_new_tokens exceeds the model's positions; an empty prompt is an Error.
  size_t submit(TokenRequest r);
  // Ends a queued or live request now (finish_reason "cancelled"), freeing its cache; unknown or ended ids are ignored.
  void cancel(size_t id);
  bool idle() const { return queue_.empty() && live_.empty(); }

  struct Step {
    std::vector<std::pair<size_t, int32_t>> tokens;  // (request, new token) in row order
    std::vector<size_t> finished;                    // requests that ended in this step (or were cancelled before it)
  };
  // One forward step over the live and newly admitted requests. A step with nothing to do returns empty.
  Step step();
  // The result of an ended request, handed over once (an Error for ids that have not ended or were handed over).
  TokenResult take_result(size_t id);
  // The steps so far.
  const LoopStats& stats() const { return stats_; }

 private:
  struct Live {
    TokenRequest req;
    Sampler sampler;
    int seq = -1;
    size_t context = 0;      // tokens to prefill: the prompt, after a preemption also the tokens generated before it
    size_t filled = 0;       // of those, the positions in its cache (copied or computed)
    bool prefilled = false;  // all are (it decodes, and it is a donor of prefixes)
    bool waited = false;     // it waited a step for a prefix being computed
    int32_t next = 0;
    std::chrono::steady_clock::time_point prefilled_at;
    TokenResult res;
    int32_t context_token(size_t i) const {
      return i < req.prompt.size() ? req.prompt[i] : res.tokens[i - req.prompt.size()];
    }
  };
  // Rows the step may still take, past those already in the batch.
  size_t rows_left(const ForwardBatch& batch) const {
    return step_rows_ > batch.tokens.size() ? step_rows_ - batch.tokens.size() : 0;
  }
  // Appends s's next prompt chunk to the batch (as many rows as it has left; its logit row with the last one).
  size_t add_prompt_rows(size_t id, Live& s, ForwardBatch& batch, std::vector<size_t>& row_request);
  int32_t sample(size_t id, Live& s, const float* logits);
  // Admits the queue's first requests into the step while places, step rows and memory allow (one that does not
  // fit in memory goes back to the queue, its cache closed).
  void admit(ForwardBatch& batch, std::vector<size_t>& row_request, std::vector<size_t>& prefilling);
  // The newest live request back to the queue, its cache closed (the KV cache is full).
  void preempt(const OutOfMemory& why);
  bool advance(size_t id, Live& s, int32_t tok, Step& out);
  void end(size_t id, Live& s, const char* reason, Step& out);
  // Shorter shared prefixes cost more in copies and bookkeeping than their prefill.
  static constexpr size_t kMinSharedPrefix = 16;
  struct SharedPrefix {
    int donor = -1;         // the prefilled live sequence sharing the longest prefix
    size_t positions = 0;   // how long it is (at most the prompt's length - 1)
    size_t pending = 0;     // the longest shared with a prompt not prefilled yet (this step's admissions)
  };
  SharedPrefix shared_prefix(const std::vector<int32_t>& prompt) const;

  ForwardBackend& fwd_;
  std::vector<int32_t> eos_;
  size_t width_, step_rows_;
  size_t fits_;  // live requests at most while memory is short: those that fitted, one more as each ends
  StopCheck stop_;
  bool reuse_prefixes_;
  size_t next_id_ = 0;
  std::map<size_t, Live> queue_, live_;  // ordered by id: admission and rows follow submission order
  std::unordered_map<size_t, TokenResult> ended_;
  std::vector<size_t> cancelled_;  // reported as finished by the next step
  tracked_vector<float> logits_;  // sampled steps: the logits on the host
  std::vector<int32_t> next_;     // greedy steps: the backend's picks
  LoopStats stats_;
};

// Every request through one DecodeLoop until all have ended (max_in_flight 0: all at once); results in request
// order. Every prompt is checked against the model's positions before any work (PromptTooLong).
std::vector<TokenResult> generate_tokens(ForwardBackend& fwd, const std::vector<TokenRequest>& reqs,
                                         const std::vector<int32_t>& eos_ids, const StopCheck& stop = nullptr,
                                         const LoopOptions& opt = {}, const FinishCallback& on_finish = nullptr,
                                         const StepCallback& on_step = nullptr, LoopStats* stats = nullptr);

}  // namespace bq
