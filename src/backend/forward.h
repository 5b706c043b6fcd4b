// What every forward backend offers generation (backend/cpu/cpu_forward.h, backend/cuda/cuda_forward.h): sequences
// with their own KV cache, and batched steps over them.
#pragma once
#include <cstdint>
#include <vector>

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

class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;
  // A new sequence with room for `capacity` positions; returns its id (ids of closed sequences are reused).
  virtual int open_sequence(int capacity) = 0;
  virtual void close_sequence(int id) = 0;
  virtual int sequence_length(int id) const = 0;
  virtual void run(const ForwardBatch& b, float* logits) = 0;
  virtual const ModelConfig& config() const = 0;
};

}  // namespace bq
