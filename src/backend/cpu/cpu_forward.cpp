// The whole forward pass of every supported architecture: read this file top to bottom.
#include "backend/cpu/cpu_forward.h"

#include <algorithm>
#include <cmath>

#include "backend/cpu/ops.h"
#include "backend/cpu/qmatmul.h"
#include "core/error.h"

namespace bq {

KVCache::KVCache(const ModelConfig& c, int cap)
    : capacity(cap), kv_dim(c.kv_dim()), shape(kv_shape(c, 0, c.n_layers)), pages(shape, cap) {
  for (int l = 0; l < c.n_layers; ++l) layers.push_back(kv_layer(c, 0, c.n_layers, l));
}

CpuStepSizes cpu_step_sizes(const ModelConfig& c, int64_t rows, int64_t logit_rows) {
  const size_t R = size_t(rows), H = size_t(c.hidden), Q = size_t(c.q_dim()), KV = size_t(c.kv_dim()),
               I = size_t(c.intermediate), half = size_t(c.head_dim / 2);
  CpuStepSizes s;
  s.cos = s.sin = R * half;
  if (c.local_rope) s.local_cos = s.local_sin = R * half;
  s.x = s.xn = s.proj = R * H;
  s.q = s.att = R * Q;
  s.k = s.v = R * KV;
  s.gate = s.up = R * I;
  s.last = size_t(logit_rows) * H;
  return s;
}

size_t cpu_attention_scratch_bytes(const ModelConfig& c, int n_positions) {
  return size_t(n_positions) * (size_t(c.n_heads) * sizeof(float) + 2 * sizeof(const float*));
}

size_t model_host_bytes(const Model& m) {
  auto floats = [](const std::vector<float>& v) { return v.capacity() * sizeof(float); };
  auto linear = [&](const Linear& l) {
    size_t b = floats(l.bias);
    if (l.q)
      b += l.q->packed.capacity() + floats(l.q->absmax) + l.q->absmax_q.capacity() + floats(l.q->absmax2) +
           l.q->cb.capacity() + floats(l.q->scb);
    else
      b += l.weight_bytes();
    return b;
  };
  size_t n = size_t(m.cfg.vocab) * size_t(m.cfg.hidden) * dtype_size(m.embed_dtype);
  for (auto& L : m.layers) {
    n += floats(L.attn_norm) + floats(L.mlp_norm) + floats(L.q_norm) + floats(L.k_norm) + floats(L.post_attn_norm) +
         floats(L.post_mlp_norm);
    for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) n += linear(*l);
  }
  const bool head_shares_embeddings = m.cfg.tie_embeddings && !m.lm_head.q;
  return n + floats(m.final_norm) + (head_shares_embeddings ? 0 : linear(m.lm_head));
}

CpuForward::CpuForward(const Model& m) : m_(m), weights_(model_host_bytes(m)) {
  for (double f : rope_inv_freq(m.cfg)) inv_freq_.push_back(float(f));
  for (double f : rope_inv_freq(m.cfg, true)) local_inv_freq_.push_back(float(f));
}

int CpuForward::open_sequence(int capacity) {
  if (capacity <= 0 || capacity > m_.cfg.max_positions)
    fail("a sequence of {} positions exceeds the model's limit of {}", capacity, m_.cfg.max_positions);
  auto cache = std::make_unique<KVCache>(m_.cfg, capacity);
  int id = 0;
  while (id < int(caches_.size()) && caches_[size_t(id)]) ++id;
  if (id == int(caches_.size())) caches_.emplace_back();
  caches_[size_t(id)] = std::move(cache);
  return id;
}

void CpuForward::make_page(KVCache& cache, int entry) {
  const size_t n = size_t(cache.shape.entry_rows(entry, cache.capacity)) * size_t(cache.kv_dim);
  if (kv_limit_ && kv_account_->held + n * sizeof(float) > kv_limit_)
    kv_limit_reached(kv_limit_, kv_account_->held, n * sizeof(float));
  tracked_vector<float> mem(n);
  float* first = mem.data();
  const size_t bytes = mem.size() * sizeof(float);
  cache.pages.set(entry, std::make_shared<KVCache::Page>(std::move(mem), bytes, kv_account_), first);
}

void CpuForward::close_sequence(int id) { caches_.at(size_t(id)).reset(); }

int CpuForward::sequence_length(int id) const { return caches_.at(size_t(id))->length; }

bool CpuForward::copy_prefix(int from, int to, int positions) {
  check_prefix_copy(cache_fill(caches_, from), cache_fill(caches_, to), from, to, positions);
  KVCache &src = *caches_[size_t(from)], &dst = *caches_[size_t(to)];
  const KvPrefixPages plan = kv_prefix_pages(m_.cfg, src.shape, src.length, src.capacity, dst.capacity, positions);
  if (!plan.possible) return false;  // a sliding layer's ring has moved past the prefix
  for (int j = 0; j < plan.shared; ++j) dst.pages.share(j, src.pages, j);
  for (size_t i = 0; i < plan.src_copied.size(); ++i) {
    const int s = plan.src_copied[i], d = plan.dst_copied[i];
    if (!dst.pages.has(d)) make_page(dst, d);
    std::copy_n(src.pages.page(s), size_t(src.shape.entry_rows(s, src.capacity)) * size_t(src.kv_dim),
                dst.pages.page(d));
  }
  dst.length = positions;
  return true;
}

MemoryFigures CpuForward::memory() const {
  MemoryFigures f;
  f.device_name = "cpu";
  f.weight_bytes = model_host_bytes(m_);
  auto read = [](const Linear& l) { return l.q ? l.q->bytes() : l.weight_bytes(); };
  f.step_weight_bytes = read(m_.lm_head);
  for (auto& L : m_.layers)
    for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) f.step_weight_bytes += read(*l);
  f.kv_cache_bytes = kv_account_->held;
  f.kv_position_bytes = size_t(2) * size_t(m_.cfg.n_layers) * size_t(m_.cfg.kv_dim()) * sizeof(float);
  f.kv_cache_peak_bytes = kv_account_->peak;
  f.allocator_peak_bytes = host_memory::stats().peak;
  return f;
}

namespace {

void linear(const Linear& l, const float* x, int64_t n, float* y) {
  if (l.q) quant::matmul(*l.q, x, n, y);
  else cpu::matmul(x, n, l.w, l.dtype, l.out, l.in, y);
  if (!l.bias.empty())
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < l.out; ++j) y[i * l.out + j] += l.bias[size_t(j)];
}

// x += a block's output y, normed first where the architecture norms it (gemma's post-attention and
// post-feed-forward norms; y is overwritten).
void add_block_output(tracked_vector<float>& x, float* y, const std::vector<float>& post_norm,
                      int64_t rows, int64_t width, float eps) {
  if (!post_norm.empty()) cpu::rmsnorm(y, post_norm.data(), y, rows, width, eps);
  for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
}

// RoPE cos and sin per row (half a head each), angle = position × inv_freq in fp32 as the reference does.
void rope_table(const std::vector<int>& pos, const std::vector<float>& inv_freq, float* cos, float* sin) {
  const size_t half = inv_freq.size();
  for (size_t r = 0; r < pos.size(); ++r)
    for (size_t i = 0; i < half; ++i) {
      float angle = float(pos[r]) * inv_freq[i];
      cos[r * half + i] = float(std::cos(double(angle)));
      sin[r * half + i] = float(std::sin(double(angle)));
    }
}

}  // namespace

void CpuForward::make_pages(const ForwardBatch& b, const std::vector<int>& pos) {
  for (size_t r = 0; r < pos.size(); ++r) {
    KVCache& cache = *caches_[size_t(b.seq[r])];
    for (int entry : kv_pages_written(cache.shape, pos[r], cache.capacity))
      if (!cache.pages.has(entry)) make_page(cache, entry);
  }
}

void CpuForward::run(const ForwardBatch& b, float* logits) {
  const int R = int(b.tokens.size()), per_sequence = max_sequence_rows_per_pass(m_.cfg);
  // The batch is checked whole and its pages made first: a sliding-window model takes a sequence's rows a pass at a
  // time (kv_layout.h).
  make_pages(b, row_positions(b, caches_, m_.cfg.vocab));
  if (pass_end(b, 0, R, per_sequence) == R) return run_pass(b, logits);
  const size_t V = size_t(m_.cfg.vocab);
  for (int r0 = 0; r0 < R;) {
    const int r1 = pass_end(b, r0, R, per_sequence);
    ForwardBatch part{{b.tokens.begin() + r0, b.tokens.begin() + r1}, {b.seq.begin() + r0, b.seq.begin() + r1}, {}};
    std::vector<size_t> out_row;  // where each of the part's logit rows goes in `logits`
    for (size_t i = 0; i < b.logit_rows.size(); ++i)
      if (b.logit_rows[i] >= r0 && b.logit_rows[i] < r1) part.logit_rows.push_back(b.logit_rows[i] - r0), out_row.push_back(i);
    tracked_vector<float> part_logits(out_row.size() * V);
    run_pass(part, part_logits.data());
    for (size_t i = 0; i < out_row.size(); ++i)
      std::copy_n(part_logits.data() + i * V, V, logits + out_row[i] * V);
    r0 = r1;
  }
}

void CpuForward::run_pass(const ForwardBatch& b, float* logits) {
  const ModelConfig& c = m_.cfg;
  const int64_t R = int64_t(b.tokens.size()), H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate;
  const int hd = c.head_dim, half = hd / 2;
  const std::vector<int> pos = row_positions(b, caches_, c.vocab);
  auto& caches = caches_;
  const CpuStepSizes sz = cpu_step_sizes(c, R, int64_t(b.logit_rows.size()));
  tracked_vector<float> cos(sz.cos), sin(sz.sin), local_cos(sz.local_cos), local_sin(sz.local_sin);
  rope_table(pos, inv_freq_, cos.data(), sin.data());
  if (c.local_rope) rope_table(pos, local_inv_freq_, local_cos.data(), local_sin.data());

  tracked_vector<float> x(sz.x), xn(sz.xn), q(sz.q), k(sz.k), v(sz.v), att(sz.att), proj(sz.proj), gate(sz.gate),
      up(sz.up);
  for (int64_t r = 0; r < R; ++r) m_.embed_row(b.tokens[size_t(r)], x.data() + r * H);

  for (int l = 0; l < c.n_layers; ++l) {
    const Layer& L = m_.layers[size_t(l)];
    // Attention block.
    cpu::rmsnorm(x.data(), L.attn_norm.data(), xn.data(), R, H, c.rms_eps);
    linear(L.q, xn.data(), R, q.data());
    linear(L.k, xn.data(), R, k.data());
    linear(L.v, xn.data(), R, v.data());
    if (c.qk_norm) {  // each head's q and k normed over its head_dim
      cpu::rmsnorm(q.data(), L.q_norm.data(), q.data(), R * c.n_heads, hd, c.rms_eps);
      cpu::rmsnorm(k.data(), L.k_norm.data(), k.data(), R * c.n_kv_heads, hd, c.rms_eps);
    }
    const bool local = c.uses_local_rope(l);
    for (int64_t r = 0; r < R; ++r) {
      const float* cs = (local ? local_cos : cos).data() + r * half;
      const float* sn = (local ? local_sin : sin).data() + r * half;
      cpu::rope(q.data() + r * Q, c.n_heads, hd, cs, sn);
      cpu::rope(k.data() + r * KV, c.n_kv_heads, hd, cs, sn);
      KVCache& cache = *caches[size_t(b.seq[size_t(r)])];
      std::copy_n(k.data() + r * KV, KV, cache.key(l, pos[size_t(r)]));
      std::copy_n(v.data() + r * KV, KV, cache.value(l, pos[size_t(r)]));
    }
    // Each row attends to its own sequence's positions up to its own (causal; a sliding layer: the last
    // sliding_window of them), now all written to the cache.
#pragma omp parallel for schedule(dynamic) if (R > 1)
    for (int64_t r = 0; r < R; ++r) {
      KVCache& cache = *caches[size_t(b.seq[size_t(r)])];
      const int n_pos = c.attended(l, pos[size_t(r)] + 1), first = pos[size_t(r)] + 1 - n_pos;
      tracked_vector<float> scratch(size_t(c.n_heads) * size_t(n_pos));
      tracked_vector<const float*> rows(2 * size_t(n_pos));
      for (int i = 0; i < n_pos; ++i)
        rows[size_t(i)] = cache.key(l, first + i), rows[size_t(n_pos + i)] = cache.value(l, first + i);
      cpu::attention(q.data() + r * Q, rows.data(), rows.data() + n_pos, n_pos, c.n_heads, c.n_kv_heads, hd,
                     c.attn_scale(), att.data() + r * Q, scratch.data());
    }
    linear(L.o, att.data(), R, proj.data());
    add_block_output(x, proj.data(), L.post_attn_norm, R, H, c.rms_eps);
    // MLP block: down(act(gate(x)) * up(x)).
    cpu::rmsnorm(x.data(), L.mlp_norm.data(), xn.data(), R, H, c.rms_eps);
    linear(L.gate, xn.data(), R, gate.data());
    linear(L.up, xn.data(), R, up.data());
    cpu::gated_act(c.act, gate.data(), up.data(), gate.data(), R * I);
    linear(L.down, gate.data(), R, proj.data());
    add_block_output(x, proj.data(), L.post_mlp_norm, R, H, c.rms_eps);
  }
  for (int64_t r = 0; r < R; ++r) caches[size_t(b.seq[size_t(r)])]->length = pos[size_t(r)] + 1;

  if (b.logit_rows.empty()) return;
  const int64_t NL = int64_t(b.logit_rows.size());
  tracked_vector<float> last(sz.last);
  for (int64_t i = 0; i < NL; ++i) {
    int r = b.logit_rows[size_t(i)];
    cpu::rmsnorm(x.data() + int64_t(r) * H, m_.final_norm.data(), last.data() + i * H, 1, H, c.rms_eps);
  }
  linear(m_.lm_head, last.data(), NL, logits);
}

}  // namespace bq
