#include "generate/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/host_memory.h"
#include "generate/sampler.h"

namespace bq {

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

std::vector<TokenResult> generate_tokens(ForwardBackend& fwd, const std::vector<TokenRequest>& reqs,
                                         const std::vector<int32_t>& eos_ids, const StopCheck& stop,
                                         int max_in_flight, const FinishCallback& on_finish,
                                         const StepCallback& on_step) {
  const ModelConfig& cfg = fwd.config();
  const size_t n = reqs.size();
  std::vector<TokenResult> out(n);
  if (n == 0) return out;
  for (size_t i = 0; i < n; ++i) {
    if (reqs[i].prompt.empty()) fail("generate: prompt {} is empty", i);
    int cap = int(reqs[i].prompt.size()) + std::max(0, reqs[i].opt.max_new_tokens);
    if (cap > cfg.max_positions)
      throw PromptTooLong(i, fmt::format("generate: prompt {} needs {} positions, the model allows {}", i, cap,
                                         cfg.max_positions));
  }
  const size_t width = max_in_flight > 0 ? std::min(n, size_t(max_in_flight)) : n;
  std::vector<int> seq_of(n, -1);  // open sequence of each request, -1 before admission and after its end
  struct CloseOpen {  // sequences still open are closed however this function ends
    ForwardBackend& f;
    std::vector<int>& ids;
    ~CloseOpen() {
      for (int id : ids)
        if (id >= 0) f.close_sequence(id);
    }
  } close_open{fwd, seq_of};
  std::vector<Sampler> samplers;
  for (auto& r : reqs) samplers.emplace_back(r.opt);
  std::vector<std::chrono::steady_clock::time_point> prefilled_at(n);
  std::vector<int32_t> next(n);

  // Decides request i's next step from its logits; false when it has ended (then reported and its cache freed).
  auto take = [&](size_t i, const float* lg) {
    TokenResult& res = out[i];
    auto end = [&](const char* reason) {
      res.finish_reason = reason;
      res.decode_ms = ms_since(prefilled_at[i]);
      fwd.close_sequence(seq_of[i]);
      seq_of[i] = -1;
      if (on_finish) on_finish(i, res);
      return false;
    };
    if (int(res.tokens.size()) >= reqs[i].opt.max_new_tokens) return end("length");
    int32_t tok;
    try {
      tok = samplers[i].next(std::span<const float>(lg, size_t(cfg.vocab)));
    } catch (const Error& e) {  // where: which request, and how far into it
      fail("request {} ({}-token prompt), new token {}: {}", i + 1, reqs[i].prompt.size(), res.tokens.size() + 1,
           e.what());
    }
    if (std::find(eos_ids.begin(), eos_ids.end(), tok) != eos_ids.end()) return end("eos");
    res.tokens.push_back(tok);
    if (stop && stop(i, res.tokens)) return end("stop");
    if (int(res.tokens.size()) >= reqs[i].opt.max_new_tokens) return end("length");
    next[i] = tok;
    return true;
  };

  const size_t V = size_t(cfg.vocab);
  tracked_vector<float> logits(width * V);
  std::vector<size_t> live;  // requests decoding, in admission order
  size_t admitted = 0;
  while (admitted < n || !live.empty()) {
    // One step: a token for every live sequence, then the whole prompts of the requests admitted into free places.
    ForwardBatch step;
    std::vector<size_t> row_request;  // request of each logit row
    for (size_t i : live) {
      step.tokens.push_back(next[i]);
      step.seq.push_back(seq_of[i]);
      step.logit_rows.push_back(int(step.tokens.size()) - 1);
      row_request.push_back(i);
    }
    std::vector<size_t> fresh;
    for (; admitted < n && live.size() + fresh.size() < width; ++admitted) {
      const auto& r = reqs[admitted];
      seq_of[admitted] = fwd.open_sequence(int(r.prompt.size()) + std::max(0, r.opt.max_new_tokens));
      for (int32_t t : r.prompt) {
        step.tokens.push_back(t);
        step.seq.push_back(seq_of[admitted]);
      }
      step.logit_rows.push_back(int(step.tokens.size()) - 1);
      row_request.push_back(admitted);
      fresh.push_back(admitted);
    }
    auto t0 = std::chrono::steady_clock::now();
    fwd.run(step, logits.data());
    for (size_t i : fresh) {
      out[i].prefill_ms = ms_since(t0);
      prefilled_at[i] = std::chrono::steady_clock::now();
    }
    std::vector<size_t> still;
    size_t generated = 0;
    for (size_t j = 0; j < row_request.size(); ++j) {
      size_t before = out[row_request[j]].tokens.size();
      if (take(row_request[j], logits.data() + j * V)) still.push_back(row_request[j]);
      generated += out[row_request[j]].tokens.size() - before;
    }
    live.swap(still);
    if (on_step) on_step(generated);
  }
  return out;
}

}  // namespace bq
