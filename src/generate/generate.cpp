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
                                         const std::vector<int32_t>& eos_ids, const StopCheck& stop) {
  const ModelConfig& cfg = fwd.config();
  const size_t n = reqs.size();
  std::vector<TokenResult> out(n);
  if (n == 0) return out;
  std::vector<int> seq_ids;
  struct CloseAll {  // sequences are closed however this function ends
    ForwardBackend& f;
    std::vector<int>& ids;
    ~CloseAll() {
      for (int id : ids) f.close_sequence(id);
    }
  } close_all{fwd, seq_ids};
  std::vector<Sampler> samplers;
  ForwardBatch prefill;
  for (size_t i = 0; i < n; ++i) {
    const auto& r = reqs[i];
    if (r.prompt.empty()) fail("generate: prompt {} is empty", i);
    int cap = int(r.prompt.size()) + std::max(0, r.opt.max_new_tokens);
    if (cap > cfg.max_positions)
      fail("generate: prompt {} needs {} positions, the model allows {}", i, cap, cfg.max_positions);
    seq_ids.push_back(fwd.open_sequence(cap));
    samplers.emplace_back(r.opt);
    for (int32_t t : r.prompt) {
      prefill.tokens.push_back(t);
      prefill.seq.push_back(seq_ids.back());
    }
    prefill.logit_rows.push_back(int(prefill.tokens.size()) - 1);
  }
  const size_t V = size_t(cfg.vocab);
  tracked_vector<float> logits(n * V);
  auto t0 = std::chrono::steady_clock::now();
  fwd.run(prefill, logits.data());
  double prefill_ms = ms_since(t0);

  std::vector<int> live;  // sequences still generating
  std::vector<int32_t> next(n);
  auto take = [&](size_t i, const float* lg) {
    // Decides token i's next step; returns whether the sequence goes on.
    TokenResult& res = out[i];
    if (int(res.tokens.size()) >= reqs[i].opt.max_new_tokens) {
      res.finish_reason = "length";
      return false;
    }
    int32_t tok = samplers[i].next(std::span<const float>(lg, V));
    if (std::find(eos_ids.begin(), eos_ids.end(), tok) != eos_ids.end()) {
      res.finish_reason = "eos";
      return false;
    }
    res.tokens.push_back(tok);
    if (stop && stop(i, res.tokens)) {
      res.finish_reason = "stop";
      return false;
    }
    if (int(res.tokens.size()) >= reqs[i].opt.max_new_tokens) {
      res.finish_reason = "length";
      return false;
    }
    next[i] = tok;
    return true;
  };
  for (size_t i = 0; i < n; ++i)
    if (take(i, logits.data() + i * V)) live.push_back(int(i));

  t0 = std::chrono::steady_clock::now();
  while (!live.empty()) {
    ForwardBatch step;
    for (size_t j = 0; j < live.size(); ++j) {
      step.tokens.push_back(next[size_t(live[j])]);
      step.seq.push_back(seq_ids[size_t(live[j])]);
      step.logit_rows.push_back(int(j));
    }
    fwd.run(step, logits.data());
    std::vector<int> still;
    for (size_t j = 0; j < live.size(); ++j)
      if (take(size_t(live[j]), logits.data() + j * V)) still.push_back(live[j]);
    live.swap(still);
  }
  double decode_ms = ms_since(t0);
  for (auto& r : out) {
    r.prefill_ms = prefill_ms;
    r.decode_ms = decode_ms;
  }
  return out;
}

}  // namespace bq
