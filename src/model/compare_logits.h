// How far one set of logits is from another (llama.cpp's measure of a quantization's loss).
#pragma once
#include "core/npy.h"

namespace bq {

struct LogitComparison {
  int64_t rows = 0;
  double kl_mean = 0, kl_p99 = 0;  // per-row KL(softmax(A) || softmax(B)), in nats; p99 by nearest rank
  double top1_agreement = 0;       // fraction of rows whose argmax agrees (first maximum on ties)
  double max_abs_diff = 0;         // over every logit
};

// A and B: [rows, vocab] (1-D: one row) of equal shape; a clear error otherwise.
LogitComparison compare_logits(const NpyArray& a, const NpyArray& b);

}  // namespace bq
