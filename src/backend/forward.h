// What every forward backend offers generation (backend/cpu/cpu_forward.h, backend/cuda/cuda_forward.h): sequences
// with their own KV cache, and batched steps over them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/host_memory.h"
#include "model/config.h"

namespace bq {

// One step of work: row i feeds tokens[i] to sequence seq[i] at that sequence's next free position. Rows of one
// sequence must be consecutive and in order. Logits (fp32, [logit_rows.size(), vocab], host memory) are computed
// for the rows listed in logit_rows only.
struct ForwardBatch {
  std::vector<int32_t> tokens;
  std::vector<int> seq;
  std::vector<int> logit_rows;
};

// A sequence's cache as the batch checks see it: positions filled and room; closed sequences are absent.
struct CacheFill {
  bool open = false;
  int length = 0, capacity = 0;
};

// The position of each row of b: the next free slot of its sequence's cache, a sequence's rows taking consecutive
// slots. Checks what every forward relies on, each failure a bq::Error naming the row: tokens and seq of one length,
// every row names an open sequence with room left, every token in the vocabulary, every logit row in the batch.
std::vector<int> row_positions(const ForwardBatch& b, const std::vector<CacheFill>& caches, int vocab);

// The end of the pass of a batch that starts at row r0: at most max_rows rows, and at most max_per_sequence rows of
// any one sequence (a sequence's rows are consecutive; max_sequence_rows_per_pass of kv_layout.h).
int pass_end(const ForwardBatch& b, int r0, int max_rows, int max_per_sequence);

// copy_prefix's checks over two caches' fill (a bq::Error naming the sequences).
void check_prefix_copy(const CacheFill& from, const CacheFill& to, int from_id, int to_id, int positions);

// The fill of sequence `id` among a backend's own caches (anything with `length` and `capacity`, null where
// closed); not open where the id names none.
template <class CachePtr>
CacheFill cache_fill(const std::vector<CachePtr>& caches, int id) {
  if (id < 0 || size_t(id) >= caches.size() || !caches[size_t(id)]) return {};
  return {true, caches[size_t(id)]->length, caches[size_t(id)]->capacity};
}

// The same over a backend's own caches.
template <class CachePtr>
std::vector<int> row_positions(const ForwardBatch& b, const std::vector<CachePtr>& caches, int vocab) {
  std::vector<CacheFill> fill(caches.size());
  for (size_t s = 0; s < caches.size(); ++s) fill[s] = cache_fill(caches, int(s));
  return row_positions(b, fill, vocab);
}

// One device's share of a backend's memory (a pipeline over several GPUs has one per stage).
struct DeviceMemory {
  int device = 0;
  std::string name;
  int first_layer = 0, end_layer = 0;  // the stage's layers [first_layer, end_layer)
  size_t weight_bytes = 0, kv_cache_bytes = 0;
  size_t allocator_peak_bytes = 0, device_peak_bytes = 0, device_total_bytes = 0;  // of the whole device
};

// What a backend holds, for reports and benchmarks. Peaks count from the start of the process (or the last
// reset_peak_memory of backend.h).
struct MemoryFigures {
  std::string device_name;        // "cpu", or the GPU's name
  size_t weight_bytes = 0;        // everything the weights occupy where the backend reads them
  size_t step_weight_bytes = 0;   // what one decode step reads of them: the decoder linears and lm_head
  size_t kv_cache_bytes = 0;      // held now by open sequences' pages (a page shared by several counts once)
  size_t kv_cache_peak_bytes = 0;
  size_t kv_position_bytes = 0;   // one position's keys and values over all layers, as the cache stores them
  size_t allocator_peak_bytes = 0;  // the tracked allocator (host memory on the CPU, device memory on a GPU)
  size_t device_peak_bytes = 0, device_total_bytes = 0;  // a GPU's own view, its context included; 0 on the CPU
  std::vector<DeviceMemory> per_device;  // a GPU pipeline: one entry per stage
};

class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;
  // A new sequence with room for `capacity` positions; returns its id (ids of closed sequences are reused).
  virtual int open_sequence(int capacity) = 0;
  virtual void close_sequence(int id) = 0;
  virtual int sequence_length(int id) const = 0;
  virtual void run(const ForwardBatch& b, float* logits) = 0;
  // The greedy next token (the first maximum) of each logit row, computed where the logits are, so that only the
  // ids reach the host; -1 for a row holding NaN or inf.
  virtual void run_greedy(const ForwardBatch& b, int32_t* next);
  // Fills the empty sequence `to` with the keys and values of the first `positions` positions of `from` (a prompt
  // prefix the two share, computed once); `to` then continues at that position. False where a backend cannot (the
  // caller computes the prefix instead). Errors: closed sequences, `to` not empty, more positions than `from` holds
  // or `to` has room for.
  virtual bool copy_prefix(int from, int to, int positions);
  // The most bytes the KV pages may hold (0: no limit but the device's): a page past it is an OutOfMemory, as a
  // full device is, and the run or copy that needed it changes nothing (DecodeLoop then preempts a sequence).
  virtual void set_kv_cache_limit(size_t bytes) = 0;
  virtual const ModelConfig& config() const = 0;
  virtual MemoryFigures memory() const = 0;

 private:
  tracked_vector<float> greedy_logits_;  // run_greedy's logits where a backend computes them on the host
};

}  // namespace bq
