#include "generate/generate.h"

#include <algorithm>
#include <chrono>

namespace bq {

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// A request the model cannot take: an empty prompt, or one that with max_new_tokens exceeds its positions.
void check_request(const ModelConfig& c, const TokenRequest& r, size_t id) {
  if (r.prompt.empty()) fail("generate: prompt {} is empty", id);
  int cap = int(r.prompt.size()) + std::max(0, r.opt.max_new_tokens);
  if (cap > c.max_positions)
    throw PromptTooLong(id, fmt::format("generate: prompt {} needs {} positions, the model allows {}", id, cap,
                                        c.max_positions));
}
}  // namespace

DecodeLoop::DecodeLoop(ForwardBackend& fwd, std::vector<int32_t> eos_ids, const LoopOptions& opt, StopCheck stop)
    : fwd_(fwd), eos_(std::move(eos_ids)), width_(opt.max_in_flight > 0 ? size_t(opt.max_in_flight) : SIZE_MAX),
      step_rows_(opt.max_step_tokens > 0 ? size_t(opt.max_step_tokens) : SIZE_MAX), fits_(width_),
      stop_(std::move(stop)),
      reuse_prefixes_(opt.reuse_prefixes) {
  if (opt.max_in_flight < 0) fail("generate: max_in_flight {} is negative", opt.max_in_flight);
  if (opt.max_step_tokens < 0) fail("generate: max_step_tokens {} is negative", opt.max_step_tokens);
}

DecodeLoop::~DecodeLoop() {
  for (auto& [id, s] : live_) fwd_.close_sequence(s.seq);
}

size_t DecodeLoop::submit(TokenRequest r) {
  const size_t id = next_id_;
  check_request(fwd_.config(), r, id);
  Sampler sampler(r.opt);
  const size_t context = r.prompt.size();
  queue_.emplace(id, Live{std::move(r), std::move(sampler), -1, context, 0, false, false, 0, {}, {}});
  next_id_++;
  return id;
}

void DecodeLoop::cancel(size_t id) {
  Step ignored;
  if (auto q = queue_.find(id); q != queue_.end()) {
    q->second.res.finish_reason = "cancelled";
    ended_.emplace(id, std::move(q->second.res));
    queue_.erase(q);
    cancelled_.push_back(id);
  } else if (auto l = live_.find(id); l != live_.end()) {
    end(id, l->second, "cancelled", ignored);
    live_.erase(l);
    cancelled_.push_back(id);
  }
}

void DecodeLoop::end(size_t id, Live& s, const char* reason, Step& out) {
  s.res.finish_reason = reason;
  if (s.prefilled) s.res.decode_ms += ms_since(s.prefilled_at);  // cancelled mid-prefill: it never decoded
  const auto t0 = std::chrono::steady_clock::now();
  fwd_.close_sequence(s.seq);
  stats_.cache_ms += ms_since(t0);
  s.seq = -1;
  fits_ = std::min(width_, fits_ + 1);
  ended_.emplace(id, std::move(s.res));
  out.finished.push_back(id);
}

// Request id's next token sampled from its logits (bq::Error naming the request on non-finite logits).
int32_t DecodeLoop::sample(size_t id, Live& s, const float* logits) {
  try {
    return s.sampler.next(std::span<const float>(logits, size_t(fwd_.config().vocab)));
  } catch (const Error& e) {  // where: which request, and how far into it
    fail("request {} ({}-token prompt), new token {}: {}", id + 1, s.req.prompt.size(), s.res.tokens.size() + 1,
         e.what());
  }
}

// Takes request id's next token (-1: its logits were not finite); false when the request has ended.
bool DecodeLoop::advance(size_t id, Live& s, int32_t tok, Step& out) {
  TokenResult& res = s.res;
  if (tok < 0)
    fail("request {} ({}-token prompt), new token {}: a logit is NaN or inf: the model's output is not finite (NaN "
         "or inf in the checkpoint's weights, or a config.json value such as rope_theta or rms_norm_eps that makes "
         "it so)",
         id + 1, s.req.prompt.size(), res.tokens.size() + 1);
  if (std::find(eos_.begin(), eos_.end(), tok) != eos_.end()) return end(id, s, "eos", out), false;
  res.tokens.push_back(tok);
  out.tokens.emplace_back(id, tok);
  if (stop_ && stop_(id, res.tokens)) return end(id, s, "stop", out), false;
  if (int(res.tokens.size()) >= s.req.opt.max_new_tokens) return end(id, s, "length", out), false;
  s.next = tok;
  return true;
}

DecodeLoop::SharedPrefix DecodeLoop::shared_prefix(const std::vector<int32_t>& prompt) const {
  SharedPrefix best;
  if (!reuse_prefixes_) return best;
  const size_t most = prompt.size() - 1;  // the last prompt token is computed anyway: its logits give the first token
  for (const auto& [id, l] : live_) {
    const std::vector<int32_t>& other = l.req.prompt;
    const auto end = prompt.begin() + long(std::min(most, other.size()));
    const size_t n = size_t(std::mismatch(prompt.begin(), end, other.begin()).first - prompt.begin());
    if (!l.prefilled) best.pending = std::max(best.pending, n);
    else if (n > best.positions) best.positions = n, best.donor = l.seq;
  }
  return best;
}

size_t DecodeLoop::add_prompt_rows(size_t id, Live& s, ForwardBatch& batch, std::vector<size_t>& row_request) {
  const size_t take = std::min(rows_left(batch), s.context - s.filled);
  for (size_t i = s.filled; i < s.filled + take; ++i) {
    batch.tokens.push_back(s.context_token(i));
    batch.seq.push_back(s.seq);
  }
  s.filled += take;
  if (take > 0 && s.filled == s.context) {  // the last chunk: its last row gives the (next) new token
    batch.logit_rows.push_back(int(batch.tokens.size()) - 1);
    row_request.push_back(id);
  }
  return take;
}

void DecodeLoop::admit(ForwardBatch& batch, std::vector<size_t>& row_request, std::vector<size_t>& prefilling) {
  const size_t places = std::min(width_, fits_);
  // A prompt that shares more with one admitted in this step than with any cache waits a step, to take it from that
  // one's cache; the prompts after it go on being admitted. At most as many wait as there are free places (the scan
  // of the queue stays short); then admission stops for this step rather than compute a shared prefix twice.
  size_t may_wait = places > live_.size() ? places - live_.size() : 0;
  for (auto it = queue_.begin(); it != queue_.end() && live_.size() < places && rows_left(batch) > 0;) {
    Live& candidate = it->second;
    const SharedPrefix shared = shared_prefix(candidate.req.prompt);
    if (shared.pending >= shared.positions + kMinSharedPrefix && !candidate.waited) {
      if (may_wait == 0) break;
      candidate.waited = true;  // once only: prompts that each share most with the next would wait in a chain
      --may_wait, ++it;
      continue;
    }
    Live& s = candidate;
    const auto t_cache = std::chrono::steady_clock::now();
    try {
      s.seq = fwd_.open_sequence(int(s.req.prompt.size()) + std::max(0, s.req.opt.max_new_tokens));
      if (shared.positions >= kMinSharedPrefix) {
        if (fwd_.copy_prefix(shared.donor, s.seq, int(shared.positions))) s.filled = shared.positions;
        else reuse_prefixes_ = false;  // the backend cannot: no more waiting for prefixes
      }
    } catch (const OutOfMemory& e) {
      if (s.seq >= 0) fwd_.close_sequence(s.seq);
      s.seq = -1, s.filled = 0;
      if (live_.empty()) throw;  // nothing to wait for: it does not fit alone
      fits_ = live_.size();
      stats_.cache_ms += ms_since(t_cache);
      return;
    }
    stats_.cache_ms += ms_since(t_cache);
    stats_.prompt_tokens_reused += s.filled;
    auto node = queue_.extract(it++);
    add_prompt_rows(node.key(), node.mapped(), batch, row_request);
    prefilling.push_back(node.key());
    live_.insert(std::move(node));
  }
}

void DecodeLoop::preempt(const OutOfMemory& why) {
  if (live_.size() <= 1)
    throw OutOfMemory(fmt::format("generate: one request alone does not fit in memory: {}", why.what()));
  // The step changed nothing: each prompt's progress is what its cache holds.
  for (auto& [id, s] : live_)
    if (!s.prefilled) s.filled = size_t(fwd_.sequence_length(s.seq));
  auto node = live_.extract(std::prev(live_.end()));
  Live& s = node.mapped();
  if (s.prefilled) {
    s.res.decode_ms += ms_since(s.prefilled_at);
    s.context = s.req.prompt.size() + s.res.tokens.size();  // the last token is not in the cache yet either
  }
  fwd_.close_sequence(s.seq);
  s.seq = -1, s.filled = 0, s.prefilled = false, s.waited = false;
  queue_.insert(std::move(node));
  fits_ = live_.size();
  stats_.preemptions++;
}

DecodeLoop::Step DecodeLoop::step() {
  Step out;
  out.finished.swap(cancelled_);
  // A token for every decoding sequence, the next chunk of the prompts under way, then the prompts of the requests
  // admitted into free places, as far as the step's rows allow.
  ForwardBatch batch;
  std::vector<size_t> row_request;  // request of each logit row
  for (auto& [id, s] : live_) {
    if (!s.prefilled) continue;
    batch.tokens.push_back(s.next);
    batch.seq.push_back(s.seq);
    batch.logit_rows.push_back(int(batch.tokens.size()) - 1);
    row_request.push_back(id);
  }
  const size_t decode_rows = batch.tokens.size();
  std::vector<size_t> prefilling;  // requests with prompt rows in this step
  for (auto& [id, s] : live_)
    if (!s.prefilled && add_prompt_rows(id, s, batch, row_request) > 0) prefilling.push_back(id);
  admit(batch, row_request, prefilling);
  if (batch.tokens.empty()) return out;
  // Greedy rows only (evaluation, bench): the backend picks the tokens where the logits are, and only the ids come
  // back; otherwise the logits come to the host for the samplers.
  const bool greedy = std::all_of(row_request.begin(), row_request.end(),
                                  [&](size_t id) { return live_.at(id).req.opt.temperature <= 0.0f; });
  const size_t V = size_t(fwd_.config().vocab);
  auto t0 = std::chrono::steady_clock::now();
  try {
    if (greedy) {
      next_.resize(row_request.size());
      fwd_.run_greedy(batch, next_.data());
    } else {
      if (logits_.size() < row_request.size() * V) logits_.resize(row_request.size() * V);
      fwd_.run(batch, logits_.data());
    }
  } catch (const OutOfMemory& e) {
    preempt(e);
    return out;
  }
  const double step_ms = ms_since(t0);
  for (size_t id : prefilling) {
    Live& s = live_.at(id);
    s.res.prefill_ms += step_ms;
    if (s.filled < s.context) continue;
    s.prefilled_at = std::chrono::steady_clock::now();
    s.prefilled = true;
  }
  if (prefilling.empty()) {
    stats_.decode_steps++;
    stats_.decode_rows += decode_rows;
    stats_.decode_ms += step_ms;
  } else {
    stats_.prefill_steps++;
    stats_.prompt_tokens += batch.tokens.size() - decode_rows;
    stats_.prefill_ms += step_ms;
  }
  for (size_t j = 0; j < row_request.size(); ++j) {
    auto it = live_.find(row_request[j]);
    Live& s = it->second;
    bool alive = false;
    if (int(s.res.tokens.size()) >= s.req.opt.max_new_tokens) end(it->first, s, "length", out);  // max_new_tokens 0
    else alive = advance(it->first, s, greedy ? next_[j] : sample(it->first, s, logits_.data() + j * V), out);
    if (!alive) live_.erase(it);
  }
  stats_.generated_tokens += out.tokens.size();
  return out;
}

TokenResult DecodeLoop::take_result(size_t id) {
  auto it = ended_.find(id);
  if (it == ended_.end()) fail("generate: request {} has not ended (or its result was taken)", id);
  TokenResult r = std::move(it->second);
  ended_.erase(it);
  return r;
}

std::vector<TokenResult> generate_tokens(ForwardBackend& fwd, const std::vector<TokenRequest>& reqs,
                                         const std::vector<int32_t>& eos_ids, const StopCheck& stop,
                                         const LoopOptions& opt, const FinishCallback& on_finish,
                                         const StepCallback& on_step, LoopStats* stats) {
  std::vector<TokenResult> out(reqs.size());
  if (reqs.empty()) return out;
  for (size_t i = 0; i < reqs.size(); ++i) check_request(fwd.config(), reqs[i], i);  // all before any work
  LoopOptions o = opt;
  o.max_in_flight = opt.max_in_flight > 0 ? std::min(opt.max_in_flight, int(reqs.size())) : int(reqs.size());
  DecodeLoop loop(fwd, eos_ids, o, stop);
  for (auto& r : reqs) loop.submit(r);  // ids equal indices
  while (!loop.idle()) {
    DecodeLoop::Step s = loop.step();
    for (size_t id : s.finished) {
      out[id] = loop.take_result(id);
      if (on_finish) on_finish(id, out[id]);
    }
    if (on_step) on_step(s.tokens.size());
  }
  if (stats) {
    const LoopStats& s = loop.stats();
    stats->prefill_steps += s.prefill_steps;
    stats->decode_steps += s.decode_steps;
    stats->prompt_tokens += s.prompt_tokens;
    stats->prompt_tokens_reused += s.prompt_tokens_reused;
    stats->decode_rows += s.decode_rows;
    stats->generated_tokens += s.generated_tokens;
    stats->prefill_ms += s.prefill_ms;
    stats->decode_ms += s.decode_ms;
    stats->cache_ms += s.cache_ms;
    stats->preemptions += s.preemptions;
  }
  return out;
}

}  // namespace bq
