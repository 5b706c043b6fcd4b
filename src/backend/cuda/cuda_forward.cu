// CudaForward, the public face of the CUDA backend: weights in (weights.h), sequences opened and closed, passes
// run (pipeline.h over the stages of stage.h), greedy tokens and sizes out.
#include "backend/cuda/cuda_forward.h"

#include <algorithm>

#include "backend/cuda/check.h"
#include "backend/cuda/pipeline.h"
#include "core/error.h"
#include "core/progress.h"

namespace bq {

using namespace cuda;

CudaForward::CudaForward() : p_(std::make_unique<Pipeline>()) {}
CudaForward::~CudaForward() = default;

CudaForward::CudaForward(const Model& m, std::vector<PipelineStage> stages) : p_(std::make_unique<Pipeline>()) {
  Pipeline& P = *p_;
  P.init(m.cfg, std::move(stages));
  P.host = &m;
  ProgressMeter progress("copying weights to the GPU", double(m.layers.size()), "layers");
  for (auto& stage : P.stages) {
    Stage& S = *stage;
    DeviceGuard on(S.device);
    for (int i = S.first; i < S.end; ++i, progress.advance(1))
      S.layers.push_back(upload_layer(m.layers[size_t(i)], S.tables, i));
  }
  Stage& tail = P.last_stage();
  DeviceGuard on(tail.device);
  tail.final_norm = upload(m.final_norm.data(), m.final_norm.size(), "final norm");
  tail.lm_head = upload_linear(m.lm_head, tail.tables, "lm_head");  // quantized only with --quantize-lm-head
}

std::unique_ptr<CudaForward> CudaForward::synthetic(const ModelConfig& c, const std::optional<quant::QuantOptions>& qo,
                                                    uint64_t seed, std::vector<PipelineStage> stages) {
  std::unique_ptr<CudaForward> f(new CudaForward());
  Pipeline& P = *f->p_;
  P.init(c, std::move(stages));
  P.stages.front()->embed_seed = seed;
  for (auto& stage : P.stages) {
    Stage& S = *stage;
    DeviceGuard on(S.device);
    for (int i = S.first; i < S.end; ++i) S.layers.push_back(synthetic_layer(c, qo, seed, S.tables, i, S.st));
  }
  Stage& tail = P.last_stage();
  {
    DeviceGuard on(tail.device);
    tail.final_norm = ones(size_t(c.hidden), "final norm");
    tail.lm_head = synthetic_lm_head(c, qo, seed, tail.tables, tail.st);
  }
  P.synchronize();
  return f;
}

int CudaForward::open_sequence(int capacity) {
  Pipeline& I = *p_;
  if (capacity <= 0 || capacity > I.cfg.max_positions)
    fail("a sequence of {} positions exceeds the model's limit of {}", capacity, I.cfg.max_positions);
  auto s = std::make_unique<Sequence>();
  s->capacity = capacity;
  for (auto& stage : I.stages) {
    DeviceGuard on(stage->device);
    // Pages come as positions are written (Pipeline::run). Stream-ordered: from the device's pool, without a
    // synchronization (a cache per example of an evaluation).
    s->pages.emplace_back(stage->kv, capacity);
    s->device_table.emplace_back(size_t(stage->kv.table_pages(capacity)), "KV page table", stage->st);
  }
  size_t id = 0;
  while (id < I.seqs.size() && I.seqs[id]) ++id;
  if (id == I.seqs.size()) I.seqs.emplace_back();
  I.seqs[id] = std::move(s);
  return int(id);
}

void CudaForward::close_sequence(int id) {
  // The cache may still be read by queued work: a stream-ordered free waits for the work queued on its stage's
  // stream; a plain one needs everything finished.
  bool ordered = true;
  for (auto& stage : p_->stages) {
    DeviceGuard on(stage->device);
    ordered &= stream_ordered_allocation();
  }
  if (!ordered) p_->synchronize();
  p_->seqs.at(size_t(id)).reset();
}

int CudaForward::sequence_length(int id) const { return p_->seqs.at(size_t(id))->length; }

bool CudaForward::copy_prefix(int from, int to, int positions) {
  Pipeline& P = *p_;
  check_prefix_copy(cache_fill(P.seqs, from), cache_fill(P.seqs, to), from, to, positions);
  const Sequence& src = *P.seqs[size_t(from)];
  Sequence& dst = *P.seqs[size_t(to)];
  std::vector<KvPrefixPages> plans;
  for (const auto& S : P.stages) {
    plans.push_back(kv_prefix_pages(P.cfg, S->kv, src.length, src.capacity, dst.capacity, positions));
    if (!plans.back().possible) return false;  // a sliding layer's ring has moved past the prefix
  }
  for (size_t i = 0; i < P.stages.size(); ++i) {  // on each stage's stream, ordered before its next pass
    Stage& S = *P.stages[i];
    DeviceGuard on(S.device);
    const KvPrefixPages& plan = plans[i];
    for (int j = 0; j < plan.shared; ++j) dst.pages[i].share(j, src.pages[i], j);
    for (size_t c = 0; c < plan.src_copied.size(); ++c) {
      const int s = plan.src_copied[c], d = plan.dst_copied[c];
      if (!dst.pages[i].has(d)) P.make_page(dst, i, d);
      const size_t bytes = size_t(S.kv.entry_rows(s, src.capacity)) * size_t(P.cfg.kv_dim()) * sizeof(uint16_t);
      BQ_CUDA(cudaMemcpyAsync(dst.pages[i].page(d), src.pages[i].page(s), bytes, cudaMemcpyDeviceToDevice, S.st));
    }
    P.upload_table(dst, i);
  }
  dst.length = positions;
  P.kv_cache_peak = std::max(P.kv_cache_peak, P.kv_cache_bytes());
  return true;
}

void CudaForward::set_kv_cache_limit(size_t bytes) { p_->kv_limit = bytes; }

const ModelConfig& CudaForward::config() const { return p_->cfg; }

const float* CudaForward::run_device(const ForwardBatch& b) { return p_->run(b); }

void CudaForward::run(const ForwardBatch& b, float* logits) {
  const float* d = p_->run(b);
  const size_t n = b.logit_rows.size() * size_t(p_->cfg.vocab);
  Stage& tail = p_->last_stage();
  DeviceGuard on(tail.device);
  if (n) BQ_CUDA(cudaMemcpyAsync(logits, d, n * sizeof(float), cudaMemcpyDeviceToHost, tail.st));
  synchronize();
}

void CudaForward::run_greedy(const ForwardBatch& b, int32_t* next) {
  Pipeline& P = *p_;
  P.run(b);
  if (P.last_logit_rows == 0) return;
  Stage& tail = P.last_stage();
  DeviceGuard on(tail.device);
  argmax_rows(tail.logits.get(), P.last_logit_rows, P.cfg.vocab, tail.argmax_out.get(), tail.st);
  BQ_CUDA(cudaMemcpyAsync(next, tail.argmax_out.get(), size_t(P.last_logit_rows) * sizeof(int32_t),
                          cudaMemcpyDeviceToHost, tail.st));
  synchronize();
}

void CudaForward::synchronize() { p_->synchronize(); }

void CudaForward::set_use_graphs(bool on) {
  p_->use_graphs = on;
  if (on) return;
  for (auto& s : p_->stages) {
    DeviceGuard guard(s->device);
    s->drop_graphs();
  }
}

size_t CudaForward::weight_bytes() const {
  size_t n = 0;
  for (auto& s : p_->stages) n += s->weight_bytes();
  return n;
}

size_t CudaForward::step_weight_bytes() const {
  size_t n = 0;
  for (auto& s : p_->stages) n += s->step_weight_bytes();
  return n;
}

size_t CudaForward::kv_cache_bytes() const { return p_->kv_cache_bytes(); }

MemoryFigures CudaForward::memory() const {
  sample_device_memory();
  const MemoryStats all = memory_stats();
  MemoryFigures f;
  f.weight_bytes = weight_bytes();
  f.step_weight_bytes = step_weight_bytes();
  f.kv_cache_bytes = kv_cache_bytes();
  f.kv_cache_peak_bytes = p_->kv_cache_peak;
  f.kv_position_bytes = size_t(2) * size_t(p_->cfg.n_layers) * size_t(p_->cfg.kv_dim()) * sizeof(uint16_t);
  f.allocator_peak_bytes = all.peak;
  f.device_peak_bytes = all.device_used_peak;
  f.device_total_bytes = all.device_total;
  for (const StageInfo& s : stages()) {
    const MemoryStats d = memory_stats(s.device);
    f.per_device.push_back(DeviceMemory{s.device, device_name(s.device), s.first_layer, s.end_layer, s.weight_bytes,
                                        s.kv_cache_bytes, d.peak, d.device_used_peak, d.device_total});
  }
  f.device_name = f.per_device.front().name;
  return f;
}

std::vector<CudaForward::StageInfo> CudaForward::stages() const {
  std::vector<StageInfo> out;
  for (size_t i = 0; i < p_->stages.size(); ++i) {
    const Stage& s = *p_->stages[i];
    out.push_back(StageInfo{s.device, s.first, s.end, s.weight_bytes(), s.kv_pages->held});
  }
  return out;
}

}  // namespace bq
