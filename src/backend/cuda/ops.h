// CUDA kernels of the forward pass, declared once; host-callable launchers over device pointers on one stream.
// Activations are fp32 [rows, width] unless said otherwise; 16-bit weights and the KV cache are bf16 (uint16_t
// bit patterns here, so that plain C++ can include this header).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/cuda/layout.h"
#include "backend/kv_layout.h"
#include "model/config.h"

namespace bq::cuda {

enum class WeightKind { BF16, Q4, Int8, LLMInt8 };

// Kernels of a pass start with programmatic dependent launch (kernel_util.cuh) unless this is switched off
// (bench --no-pdl: the comparison; on the H200 decode steps are 4-10% faster with it).
void set_programmatic_launch(bool on);
bool programmatic_launch();
// Dtype the activations and dequantized weights of a product are rounded to (bitsandbytes' compute dtype).
// F32: the CUDA-core kernels, exact fp32 products of the stored weights (and bf16 weights, always); F16 / BF16:
// the tensor-core kernels.
enum class Compute { F32, F16, BF16 };

// A [out, in] weight on the device, in one of the formats (views; the owner is the caller).
struct DeviceWeight {
  WeightKind kind = WeightKind::BF16;
  int64_t out = 0, in = 0;
  const uint16_t* bf16 = nullptr;  // BF16
  // Q4 (bitsandbytes NF4/FP4): packed nibbles over the flat element index, even element in the high nibble.
  const uint8_t* packed = nullptr;
  const float* code = nullptr;      // 16 fp32 code values (device)
  int blocksize = 64;
  int block_shift = -1;             // log2(blocksize) when a power of two (set by matvec)
  const float* absmax = nullptr;    // without double quant
  const uint8_t* absmax_q = nullptr;  // with double quant: dynamic-map index per block
  const float* absmax2 = nullptr;   // per 256 blocks
  const float* dyn_map = nullptr;   // 256 fp32 (device)
  float offset = 0;
  // Int8 / LLMInt8: row-major codes and per-row max |W|.
  const int8_t* cb = nullptr;
  const float* scb = nullptr;
  float threshold = 0;              // LLMInt8 outlier threshold (0: plain W8A8)
  Compute compute = Compute::F32;
  size_t bytes() const;             // bytes a pass over the weight reads
};

// Workspace for the LLM.int8 activation decomposition (sized for rows × cols).
struct Int8Scratch {
  int8_t* xq = nullptr;   // [rows, cols] int8 activations, outlier columns zeroed
  float* sca = nullptr;   // [rows] per-token scale
  int* outliers = nullptr;  // [cols] ascending outlier column indices
  int* n_outliers = nullptr;  // [1]
  uint8_t* flags = nullptr;   // [cols]
};

// y[n, out] (=|+=) x[n, in] · Wᵀ (+ bias), n <= kMatvecMaxRows, each weight byte read once, on the CUDA cores in
// fp32 (any shape, every format; the compute dtype is ignored).
void matvec(const DeviceWeight& w, const float* x, int n, const float* bias, float* y, bool accumulate,
            const Int8Scratch* s8, cudaStream_t st);

// y_i = x · W_iᵀ (+ bias_i) for up to three weights with the same input, one launch of the CUDA-core kernel. False
// (nothing done) where they cannot share it (LLM.int8, different kinds or widths, shapes of the scalar path) or
// n > 16.
struct MatvecTarget {
  const DeviceWeight* w;
  float* y;
  const float* bias;
};
bool matvec_grouped(const MatvecTarget* targets, int count, const float* x, int n, cudaStream_t st);

// The same product on the tensor cores (matvec_tc.cu): x and the dequantized weights rounded to w.compute (F16 or
// BF16), fp32 accumulation, the result rounded to w.compute as bitsandbytes returns it. 4-bit and int8 weights
// with k a multiple of 128; up to three weights with the same input in one launch.
bool matvec_tc_supported(const DeviceWeight& w, int n);
// From kTcStreamMaxRows + 1 to kTcGemmMaxRows (64) tokens the product runs as a tiled kernel (tc_gemm.cu) where this
// is on; off, the tensor-core products take up to kMatvecMaxRows tokens and cuBLAS the rest. On by default; the
// environment variable BIOMEDQ_TC_GEMM=0 turns it off (benchmarks compare the two).
void set_tc_gemm(bool on);
bool tc_gemm_enabled();
// Blocks of 8 warps a multiprocessor keeps in the tiled kernel's launches of up to 32 tokens. 1 (the default): two
// rounds of weights in registers per warp, 192 registers a thread; ncu at batch 32 found it bound by latency (12.5%
// occupancy, no warp eligible in 67-76% of cycles, 0.4-0.9 TB/s). 2: one round, at most 128 registers a thread, so
// twice the warps in flight. Both sum in the same order, so their results are the same bits.
// BIOMEDQ_TC_GEMM_BLOCKS=2 sets 2 from the start; set_tc_gemm_blocks with anything but 1 or 2 is an Error.
void set_tc_gemm_blocks(int blocks);
int tc_gemm_blocks();
// Batch-invariant products and attention (--batch-invariant): a row's results, and so greedy answers, do not depend
// on the other rows of its step (the batch, prefix reuse, chunked prefill). Every product runs as the tiled
// tensor-core kernel in launches of up to kTcGemmTokens rows, whose sums follow the weights' shape only (split.h),
// bf16 weights too (activations rounded to bf16, fp32 sums, as cuBLAS); widths it does not take (not a multiple of
// 128, fp32 compute) run as the CUDA-core kernel in launches of up to 16 rows, whose sums do not depend on the rows
// either. Every row's attention is the prompt kernel's (tiles of one sequence's rows, keys walked in order). LLM.int8
// is refused: bitsandbytes picks its outlier columns over the whole batch. Off by default: prefill of large batches
// is slower than through cuBLAS. Process-wide, like set_tc_gemm.
void set_batch_invariant(bool on);
bool batch_invariant();
// The 16-bit dtype a tensor-core product of w rounds to: w.compute, or bf16 for bf16 weights in batch-invariant mode.
Compute product_compute(const DeviceWeight& w);
// Whether these weights (same input) can share one matvec_tc launch: all supported, same kind, width, compute
// dtype and code tables, at most three.
bool matvec_tc_can_share(const MatvecTarget* targets, int count, int n);
// Scratch of the tensor-core products: xh holds x in the compute dtype (n * in values); partial and counters
// hold the k-split partial sums and the per-tile arrival counts (sizes in layout.h; counters start at zero
// and are left at zero).
struct TcScratch {
  uint16_t* xh = nullptr;
  float* partial = nullptr;
  size_t partial_floats = 0;
  int* counters = nullptr;
  size_t counter_count = 0;
};
// x == nullptr: s.xh already holds the input in the weights' compute dtype (written by the kernel before).
// max_blocks > 0 caps the grid (tests: more k splits per tile).
void matvec_tc(const MatvecTarget* targets, int count, const float* x, int n, bool accumulate, const TcScratch& s,
               cudaStream_t st, int max_blocks = 0);

// LLM.int8 activation decomposition of x[n, cols] into s (outlier columns over the whole batch, per-token SCA,
// int8 codes), as bitsandbytes does before its int8 product.
void llm_int8_prepare(const float* x, int n, int cols, float threshold, const Int8Scratch& s, cudaStream_t st);

// LLM.int8 for many rows after llm_int8_prepare: the int8 product as a cuBLAS int8 GEMM (exact int32), a chunk of
// output rows at a time into acc (acc_elems int32), then the rescaling, and the outlier columns as an fp32 GEMM of
// the gathered columns (also in acc). Where those do not fit acc, or `st` is being captured (the outlier count is
// read on the host), the epilogue adds the outlier columns one by one. False (nothing done) where cuBLAS has no
// int8 product for the shape.
bool llm_int8_gemm(cublasHandle_t h, const DeviceWeight& w, const float* x, int n, const Int8Scratch& s,
                   int32_t* acc, size_t acc_elems, const float* bias, float* y, bool accumulate, cudaStream_t st);

// Dequantizes weight rows [row0, row0 + nrows) to bf16 (row-major) into out.
void dequantize_rows(const DeviceWeight& w, int64_t row0, int64_t nrows, uint16_t* out, cudaStream_t st);

// y[n, m] (=|+=) x[n, k] · W[m, k]ᵀ, bf16 operands, fp32 output and accumulation, through cuBLAS.
// y has row stride ldy (>= m), so that tiles of output columns can be written in place.
void gemm_bf16(cublasHandle_t h, const uint16_t* x, const uint16_t* w, int n, int m, int k, float* y, int ldy,
               bool accumulate);

void to_bf16(const float* x, int64_t n, uint16_t* out, cudaStream_t st);
void add_bias(float* y, const float* bias, int n, int m, cudaStream_t st);  // y[i, :] += bias
// Kernels whose output feeds a tensor-core product also write it rounded to the product's 16-bit compute dtype
// into out16 (when not null), which saves a conversion pass.
// out[i] = weight * x[i] / rms(x[i]) for rows of width d.
void rmsnorm(const float* x, const float* weight, float* out, int n, int d, float eps, cudaStream_t st,
             uint16_t* out16 = nullptr, Compute c16 = Compute::F16);
// out[i] += weight * x[i] / rms(x[i]): a block's output normed onto the residual (gemma's sandwich norms).
void rmsnorm_add(const float* x, const float* weight, float* out, int n, int d, float eps, cudaStream_t st);
// gate = act(gate) * up over n values (silu, or gelu with the tanh approximation).
void gated_act(Activation act, float* gate, const float* up, int64_t n, cudaStream_t st, uint16_t* out16 = nullptr,
               Compute c16 = Compute::F16);

// Where each row of a step reads and writes its sequence's cache: its page table on the device, position p of a
// layer's key at kv_key(pages, layer, p, capacity, kv_dim) (kv_layout.h).
// in_tile: the row's attention is computed by attention_prefill (an AttentionTile, layout.h), which the decode
// kernel of attention() skips. partial_row: the row's index among the rows that take the decode kernel (where its
// partials are).
struct RowInfo {
  int pos;
  int capacity;
  uint16_t* const* pages;
  int in_tile;
  int partial_row;
};

// Rotates q [n, n_heads*hd] in place and k [n, kv_dim] (HF rotate_half, angle = pos * inv_freq in fp32), then
// stores k and v as bf16 into each row's cache at (layer, pos).
void rope_store(float* q, const float* k, const float* v, const RowInfo* rows, int n, KvLayer layer, int n_heads,
                int n_kv_heads, int hd, const float* inv_freq, cudaStream_t st);

// Causal attention of each row over positions 0..pos of its cache (window > 0: the last `window` of them), GQA,
// scores q·k × scale. out: [n, n_heads*hd]. The positions are cut into chunks of attention_split_len(capacity),
// processed in parallel then combined in order (layout.h); `splits` is at least every row's attention_row_splits,
// and partial holds attention_partial_floats() floats for the rows' partial_row indices. Rows with in_tile set are
// left alone.
void attention(const float* q, const RowInfo* rows, int n, KvLayer layer, int n_heads, int n_kv_heads, int hd, float scale,
               int window, int splits, float* partial, float* out, cudaStream_t st, uint16_t* out16 = nullptr,
               Compute c16 = Compute::F16);

// The same attention for the rows of `tiles` on the tensor cores: q and p rounded to bf16 (as FlashAttention
// does), fp32 scores, softmax and sums; head_dim 16, 32, 64 or 128 (prefill_attention_supported, layout.h). out16
// as attention().
void attention_prefill(const float* q, const RowInfo* rows, const AttentionTile* tiles, int n_tiles, KvLayer layer,
                       int n_heads, int n_kv_heads, int hd, float scale, int window, float* out, cudaStream_t st,
                       uint16_t* out16 = nullptr, Compute c16 = Compute::F16);

// Index of the largest value of each of n rows of width v (first on ties); -1 for a row holding NaN or inf.
void argmax_rows(const float* x, int n, int v, int* out, cudaStream_t st);

// Synthetic weights drawn on the device from a counter-based hash of (seed, index): normal(0, std) approx. bf16,
// uniform bytes, uniform floats in [lo, hi).
void fill_normal_bf16(uint16_t* p, size_t n, uint64_t seed, float std, cudaStream_t st);
void fill_bytes(uint8_t* p, size_t n, uint64_t seed, uint8_t lo, uint8_t hi, cudaStream_t st);
void fill_uniform(float* p, size_t n, uint64_t seed, float lo, float hi, cudaStream_t st);
// Embedding rows of a synthetic model, computed from (seed, token, i) instead of stored.
void synthetic_embed(const int* tokens, int n, int hidden, uint64_t seed, float std, float* out, cudaStream_t st);

}  // namespace bq::cuda
