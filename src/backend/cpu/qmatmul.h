// The CPU backend's matmul over bitsandbytes-format weights (quant/quant.h), read directly without dequantizing
// the whole matrix.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "quant/quant.h"

namespace bq::quant {

// y[n, rows] = x[n, cols] · Wᵀ (no bias), fp32 in and out, reading the quantized weights directly (decode n = 1
// is a matrix-vector product; larger n dequantizes a few rows at a time into a small per-thread buffer).
// OpenMP over output rows; AVX2/FMA kernels when the CPU has them, else portable loops.
// Compute dtype: bitsandbytes with fp16 compute casts the activations to fp16, dequantizes to fp16 and multiplies
// with fp32 accumulation into an fp16 result. Here, with w.compute F16 or BF16, the activations and the result are
// rounded to it as there, but the weights are dequantized exactly to fp32: the product is at least as close to the
// exact product of the quantized weights as bitsandbytes' own.
// LLMInt8 follows bitsandbytes' decomposition: outlier feature columns (any |x| >= threshold in the batch) in
// floating point, the rest as int8 x int8 -> int32 with per-token SCA and per-row SCB.
void matmul(const QuantizedMatrix& w, const float* x, int64_t n, float* y);
// Bytes of the row-sized scratch that matmul holds at once for n rows of width cols with `threads` OpenMP threads
// (the activations rounded to a 16-bit compute dtype; per-thread dequantized tiles; LLM.int8's int8 activations
// and scales), as the host-memory account sees it.
size_t matmul_scratch_bytes(Scheme s, DType compute, int64_t n, int64_t cols, int threads);

// Forces the portable kernels even on AVX2 machines (tests compare both paths). Not for concurrent use.
void set_force_portable(bool on);
bool using_avx2();  // whether matmul currently takes the AVX2/FMA path

}  // namespace bq::quant
