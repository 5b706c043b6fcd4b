#include "backend/cuda/pipeline.h"

#include <algorithm>

#include "backend/cuda/check.h"
#include "backend/cuda/layout.h"
#include "core/error.h"

namespace bq::cuda {

namespace {

constexpr int kMaxGraphRows = 64;  // decode steps up to this many rows are replayed as CUDA graphs
static_assert(sizeof(RowInfo) == kRowInfoBytes, "layout.h sizes the row table");

}  // namespace

void Pipeline::init(const ModelConfig& c, std::vector<PipelineStage> layout) {
  cfg = c;
  const int devices = device_count();
  if (devices == 0) fail("--device cuda: no CUDA device is available");
  if (layout.empty()) layout.push_back(PipelineStage{current_device(), 0, c.n_layers});
  validate_stages(c.n_layers, devices, layout);
  for (const PipelineStage& s : layout) {
    stages.push_back(std::make_unique<Stage>(cfg, s));
    stages.back()->init();
  }
  enable_peer_access();
}

// Direct copies between neighbouring stages on different GPUs where the hardware allows it (otherwise the copy
// goes through the host, slower but the same bytes).
void Pipeline::enable_peer_access() {
  for (size_t i = 1; i < stages.size(); ++i) {
    const int a = stages[i - 1]->device, b = stages[i]->device;
    if (a == b) continue;
    for (auto [from, to] : {std::pair{a, b}, std::pair{b, a}}) {
      int can = 0;
      BQ_CUDA(cudaDeviceCanAccessPeer(&can, from, to));
      if (!can) continue;
      DeviceGuard on(from);
      const cudaError_t e = cudaDeviceEnablePeerAccess(to, 0);
      if (e == cudaErrorPeerAccessAlreadyEnabled) cudaGetLastError();  // by an earlier pipeline of this process
      else BQ_CUDA(e);
    }
  }
}

void Pipeline::synchronize() {
  for (auto& s : stages) {
    DeviceGuard on(s->device);
    BQ_CUDA(cudaStreamSynchronize(s->st));
  }
}

void Pipeline::make_page(Sequence& s, size_t si, int entry) {
  Stage& stage = *stages[si];
  const size_t n = size_t(stage.kv.entry_rows(entry, s.capacity)) * size_t(cfg.kv_dim());
  if (kv_limit && kv_cache_bytes() + n * sizeof(uint16_t) > kv_limit)
    kv_limit_reached(kv_limit, kv_cache_bytes(), n * sizeof(uint16_t));
  DeviceArray<uint16_t> mem(n, "KV cache page", stage.st);
  uint16_t* first = mem.get();
  s.pages[si].set(entry, std::make_shared<Sequence::Table::Page>(std::move(mem), n * sizeof(uint16_t), stage.kv_pages),
                  first);
}

void Pipeline::upload_table(Sequence& s, size_t si) {
  const Sequence::Table& t = s.pages[si];
  BQ_CUDA(cudaMemcpyAsync(s.device_table[si].get(), t.data(), size_t(t.size()) * sizeof(uint16_t*),
                          cudaMemcpyHostToDevice, stages[si]->st));
}

size_t Pipeline::kv_cache_bytes() const {
  size_t n = 0;
  for (auto& s : stages) n += s->kv_pages->held;
  return n;
}

const float* Pipeline::run(const ForwardBatch& b) {
  const ModelConfig& c = cfg;
  const int R = int(b.tokens.size());
  const std::vector<int> pos = row_positions(b, seqs, c.vocab);
  // The pages the rows' keys and values go to, made before any pass reads the tables. A page past the memory
  // (OutOfMemory) leaves the tables as they are on the host, on the device too, and no position written.
  for (size_t si = 0; si < stages.size(); ++si) {
    DeviceGuard on(stages[si]->device);
    std::vector<int> changed;
    auto upload_changed = [&] {
      for (int id : changed) upload_table(*seqs[size_t(id)], si);
    };
    try {
      for (int r = 0; r < R; ++r) {
        const int id = b.seq[size_t(r)];
        Sequence& s = *seqs[size_t(id)];
        for (int entry : kv_pages_written(stages[si]->kv, pos[size_t(r)], s.capacity)) {
          if (s.pages[si].has(entry)) continue;
          if (std::find(changed.begin(), changed.end(), id) == changed.end()) changed.push_back(id);
          make_page(s, si, entry);
        }
      }
    } catch (const OutOfMemory&) {
      upload_changed();
      throw;
    }
    upload_changed();
  }
  kv_cache_peak = std::max(kv_cache_peak, kv_cache_bytes());
  const int NL = int(b.logit_rows.size());
  bool in_order = true;
  for (int i = 1; i < NL; ++i) in_order &= b.logit_rows[size_t(i)] == b.logit_rows[size_t(i - 1)] + 1;
  const size_t S = stages.size();
  // Growing a stage's scratch frees buffers that queued work of another stage may still copy from.
  auto settle = [&] {
    if (S > 1) synchronize();
  };

  // Prompt rows (a sequence's rows when it has more than one in the batch) take the tensor-core attention; every
  // row does in batch-invariant mode, so that a row's attention does not depend on how its prompt was cut.
  std::vector<int> rows_of_seq(seqs.size());
  for (int sq : b.seq) ++rows_of_seq[size_t(sq)];
  const bool tiles_possible = prefill_attention_supported(c.head_dim), all_tiles = tiles_possible && batch_invariant();

  const int per_sequence = max_sequence_rows_per_pass(c), max_rows = max_rows_per_pass(c);
  for (int r0 = 0, n = 0; r0 < R; r0 += n) {
    n = pass_end(b, r0, max_rows, per_sequence) - r0;
    const std::vector<int> pass_seq(b.seq.begin() + r0, b.seq.begin() + r0 + n);
    std::vector<bool> prompt_row(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
      prompt_row[size_t(i)] = all_tiles || (tiles_possible && rows_of_seq[size_t(pass_seq[size_t(i)])] > 1);
    const std::vector<AttentionTile> tiles = attention_tiles(pass_seq, prompt_row);
    const AttentionWork work{int(tiles.size()),
                             std::find(prompt_row.begin(), prompt_row.end(), false) != prompt_row.end()};
    // Splits from the sequences' capacities (not current lengths), so that decode steps share one graph; partials
    // only for the rows of the decode kernel.
    int max_cap = 1, attention_rows = 0;
    std::vector<int> partial_row(static_cast<size_t>(n), -1);
    for (int i = 0; i < n; ++i) {
      max_cap = std::max(max_cap, seqs[size_t(b.seq[size_t(r0 + i)])]->capacity);
      if (!prompt_row[size_t(i)]) partial_row[size_t(i)] = attention_rows++;
    }
    const int splits = attention_splits(max_cap);
    // Logit rows are listed in any order: keep theirs by computing each at its own index.
    std::vector<int> lrows;
    int first_logit = 0;
    for (int i = 0; i < NL; ++i) {
      int r = b.logit_rows[size_t(i)];
      if (r < r0) ++first_logit;
      if (r >= r0 && r < r0 + n) lrows.push_back(r - r0);
    }
    // Decode steps (every row a logit row) replay graphs, on every stage.
    const bool graph = use_graphs && n <= kMaxGraphRows && int(lrows.size()) == n && in_order;
    for (size_t si = 0; si < S; ++si) {
      Stage& stage = *stages[si];
      DeviceGuard on(stage.device);
      stage.ensure_scratch(n, attention_rows, splits, si + 1 == S ? NL : 0, settle);
      std::vector<RowInfo> info(static_cast<size_t>(n));  // this stage's caches
      for (int i = 0; i < n; ++i) {
        Sequence& s = *seqs[size_t(b.seq[size_t(r0 + i)])];
        info[size_t(i)] = RowInfo{pos[size_t(r0 + i)], s.capacity, s.device_table[si].get(),
                                  int(prompt_row[size_t(i)]), partial_row[size_t(i)]};
      }
      BQ_CUDA(cudaMemcpyAsync(stage.rows.get(), info.data(), info.size() * sizeof(RowInfo), cudaMemcpyHostToDevice,
                              stage.st));
      if (!tiles.empty())
        BQ_CUDA(cudaMemcpyAsync(stage.tiles.get(), tiles.data(), tiles.size() * sizeof(AttentionTile),
                                cudaMemcpyHostToDevice, stage.st));
      if (si + 1 < S) BQ_CUDA(cudaStreamWaitEvent(stage.st, stages[si + 1]->taken, 0));  // x copied on: free again
      if (si == 0) {
        BQ_CUDA(cudaMemcpyAsync(stage.tokens.get(), b.tokens.data() + r0, size_t(n) * sizeof(int),
                                cudaMemcpyHostToDevice, stage.st));
        if (host) {
          std::vector<float> e(size_t(n) * size_t(c.hidden));
          for (int i = 0; i < n; ++i)
            host->embed_row(b.tokens[size_t(r0 + i)], e.data() + size_t(i) * size_t(c.hidden));
          BQ_CUDA(cudaMemcpyAsync(stage.x.get(), e.data(), e.size() * sizeof(float), cudaMemcpyHostToDevice,
                                  stage.st));
          BQ_CUDA(cudaStreamSynchronize(stage.st));  // e is pageable and goes out of scope
        }
      } else {
        Stage& prev = *stages[si - 1];
        const size_t bytes = size_t(n) * size_t(c.hidden) * sizeof(float);
        BQ_CUDA(cudaStreamWaitEvent(stage.st, prev.ready, 0));
        if (prev.device == stage.device)
          BQ_CUDA(cudaMemcpyAsync(stage.x.get(), prev.x.get(), bytes, cudaMemcpyDeviceToDevice, stage.st));
        else
          BQ_CUDA(cudaMemcpyPeerAsync(stage.x.get(), stage.device, prev.x.get(), prev.device, bytes, stage.st));
        BQ_CUDA(cudaEventRecord(stage.taken, stage.st));
      }
      if (si + 1 < S) {
        stage.run_pass(n, splits, work, {}, 0, graph);
        BQ_CUDA(cudaEventRecord(stage.ready, stage.st));
      } else if (in_order) {
        stage.run_pass(n, splits, work, lrows, first_logit, graph);
      } else {
        stage.run_pass(n, splits, work, {}, 0, false);
        for (int i = 0; i < NL; ++i) {
          int r = b.logit_rows[size_t(i)];
          if (r >= r0 && r < r0 + n)
            rmsnorm(stage.x.get() + int64_t(r - r0) * c.hidden, stage.final_norm.get(),
                    stage.last.get() + int64_t(i) * c.hidden, 1, c.hidden, c.rms_eps, stage.st);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) seqs[size_t(b.seq[size_t(r)])]->length = pos[size_t(r)] + 1;
  Stage& tail = last_stage();
  DeviceGuard on(tail.device);
  if (NL > 0) tail.linear(tail.lm_head, tail.last.get(), NL, tail.logits.get(), false);  // sized by ensure_scratch
  last_logit_rows = NL;
  sample_device_memory();
  return tail.logits.get();
}

}  // namespace bq::cuda
