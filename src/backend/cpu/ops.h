// CPU kernels of the forward pass. fp32 activations; weights in their stored type, read in place.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "model/config.h"

namespace bq::cpu {

// Batch-invariant products (--batch-invariant): every output is summed alike whatever the number of rows n, so that a
// row's results, and greedy answers, do not depend on the rest of its batch: matmul dots each row for every n (no
// BLAS), quant::matmul takes its tiled path for every n, LLM.int8 is refused (quant::kLlmInt8DependsOnTheBatch).
// Process-wide; backend.h's set_batch_invariant sets it with the CUDA backend's.
void set_batch_invariant(bool on);
bool batch_invariant();

// y[n, rows] = x[n, cols] · Wᵀ, W row-major [rows, cols] of type `wt` (F32/F16/BF16), fp32 accumulation.
// n < 4 (any n in batch-invariant mode) runs as a multithreaded matrix-vector product; larger n widens blocks of W to
// fp32 for BLAS.
void matmul(const float* x, int64_t n, const void* w, DType wt, int64_t rows, int64_t cols, float* y);
// fp32 elements of the block buffer each OpenMP thread of that matmul holds (host-memory account, planner).
size_t matmul_thread_scratch_floats(int64_t n, DType wt, int64_t cols);

// out[i] = x[i] / rms(x) * weight[i], per row of length d (weight already fp32).
void rmsnorm(const float* x, const float* weight, float* out, int64_t n, int64_t d, float eps);

// Rotates pairs (i, i + head_dim/2) of each head in place (HF's rotate_half convention).
// cos_sin holds cos then sin, head_dim/2 each, for this token's position.
void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin);

// out = silu(gate) * up, elementwise over n values.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
// out = gelu_tanh(gate) * up (PyTorch's gelu with approximate="tanh").
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n);
// The gated MLP's activation of the config: one of the two above.
void gated_act(Activation act, const float* gate, const float* up, float* out, int64_t n);

// Causal attention of one query token over n_pos cached positions, all heads (GQA: head h reads kv head
// h / (n_heads / n_kv_heads)), scores q·k × scale. k_rows[i], v_rows[i]: the key and value of the i-th position
// attended (rows of n_kv_heads * head_dim, wherever the cache's pages keep them); q, out: [n_heads * head_dim].
// scratch needs n_heads * n_pos floats.
void attention(const float* q, const float* const* k_rows, const float* const* v_rows, int n_pos, int n_heads,
               int n_kv_heads, int head_dim, float scale, float* out, float* scratch);

}  // namespace bq::cpu
