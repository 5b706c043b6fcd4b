// What CudaForward allocates on the device, in plain C++: the backend sizes its buffers with these functions and
// the memory planner adds them up without a GPU, so the two cannot drift apart.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/cuda/split.h"
#include "backend/kv_layout.h"
#include "core/host_device.h"
#include "model/config.h"

namespace bq::cuda {

constexpr int kMatvecMaxRows = 32;       // rows up to which a linear runs as matrix-vector kernels, above as a GEMM
// bf16 weights: one row on the CUDA cores, from two rows cuBLAS. The CUDA-core kernel reads every row's fp32
// activations per 16 weight bytes and is L1-bound from two rows (H200, 8B shapes: 8 rows 14.97 vs 5.83 ms a step).
constexpr int kBf16MatvecMaxRows = 1;
// Prefill rows processed together (max_rows_per_pass): from kMinRowsPerPass, doubled up to kMostRowsPerPass while the
// pass's activation buffers stay within kPassActivationBytes. Every pass reads every weight again, and a quantized
// model dequantizes each into bf16 tiles again (about 6 ms a pass on llama-3.1-8b nf4, H200): the suite at batch 64
// took 6,501 passes at 1,024 rows, and takes 4,963 at 2,048 (bench/schedule_replay). The budget keeps
// llama-3.3-70b at 1,024 rows (477 MiB, its nf4 + 4k-context peak under 37 GiB); llama-3.1-8b takes 2,048 (about
// 460 MB); models with sliding layers stay at kSlidingPassRows.
constexpr int kMinRowsPerPass = 1024;
constexpr int kMostRowsPerPass = 4096;
constexpr size_t kPassActivationBytes = size_t(512) << 20;
static_assert(kSlidingPassRows >= kMinRowsPerPass, "sliding layers would cut passes short (kv_layout.h)");
constexpr size_t kDequantTileElems = size_t(32) << 20;  // bf16 scratch for dequantized weight tiles: 64 MiB
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;
constexpr int kAttentionMinSplitLen = 64;  // fewest cache positions one attention block handles
constexpr int kAttentionMaxSplits = 16;    // most chunks one decode row's positions are cut into
constexpr size_t kCodeTableFloats = 16;    // NF4 / FP4 code values
constexpr size_t kDynamicMapFloats = 256;  // bitsandbytes' signed dynamic map (double quant)
constexpr size_t kRowInfoBytes = 24;       // sizeof(RowInfo): two ints, a pointer, two ints
// Tensor-core decode products (matvec_tc.cu, split.h): 16-row tiles, at most this many blocks of 8 warps,
// each warp leaving at most two partial tiles of 32 lanes x 4 accumulators x (up to) 4 token tiles.
constexpr int kTcTileRows = 16;
// Tokens up to which the stream-k kernel takes a product, and up to which the tiled kernel does (set_tc_gemm): one
// launch of kTcGemmTokens. The tiled kernel's time grows with its tokens (H200, llama-3.1-8b nf4 decode steps: 8.3
// ms at 32 tokens, 13.3 at 64, against 9.5 and 15.6 through dequantized tiles and cuBLAS) and each further launch
// reads every weight again, so past one launch cuBLAS is the better choice: the suite's prefill, mostly steps of
// 65-256 rows, ran 12% slower while the tiled kernel took up to 256.
constexpr int kTcStreamMaxRows = 16;
constexpr int kTcGemmMaxRows = kTcGemmTokens;
constexpr int kTcMaxBlocks = 2 * 132;
constexpr size_t kTcPartialFloats = size_t(kTcMaxBlocks) * kTcWarpsPerBlock * 2 * 32 * 4 * 4;

// The most k-split partial sums one tiled tensor-core launch of the model needs (q, k, v together; o; gate, up
// together; down; a quantized lm_head), split.h.
size_t tc_gemm_partial_floats_most(const ModelConfig& c);

// The decode attention cuts a row's cache positions into chunks processed in parallel and combined after (partials
// hold each chunk's output and softmax statistics). The chunks come from the capacity of the row's own sequence,
// never from the batch: so a row's sums, and its result, are the same whatever rows share its pass. Chunks of
// attention_split_len(capacity) positions (a multiple of kAttentionMinSplitLen), at most kAttentionMaxSplits.
BQ_HOST_DEVICE inline int attention_split_len(int capacity) {
  const int per = (capacity + kAttentionMaxSplits - 1) / kAttentionMaxSplits;
  const int len = (per + kAttentionMinSplitLen - 1) / kAttentionMinSplitLen * kAttentionMinSplitLen;
  return len > kAttentionMinSplitLen ? len : kAttentionMinSplitLen;
}
BQ_HOST_DEVICE inline int attention_row_splits(int capacity) {
  const int len = attention_split_len(capacity);
  return (capacity + len - 1) / len;
}
// The most chunks of a row whose sequence holds at most max_capacity positions: the launch's third grid dimension
// and the partials' stride.
int attention_splits(int max_capacity);
// Partials of `rows` decode rows (attention_rows below).
size_t attention_partial_floats(int rows, int n_heads, int hd, int splits);

// Prompt rows take the tensor-core attention kernel (attention_prefill.cu) in tiles: each tile is up to
// kPrefillTileRows consecutive rows of one sequence, which has consecutive positions. A row's result does not depend
// on its tile (key tiles are aligned to absolute positions), so it does not depend on the batch either.
constexpr int kPrefillTileRows = 64;
inline bool prefill_attention_supported(int hd) { return hd == 16 || hd == 32 || hd == 64 || hd == 128; }
struct AttentionTile {
  int first_row = 0, rows = 0;
};
// The tiles of a pass: its rows' sequences in order, and whether each row is a prompt row (its sequence has more
// than one row in the batch, so that decode steps, one row per sequence, keep the decode kernel; every row in
// batch-invariant mode).
std::vector<AttentionTile> attention_tiles(const std::vector<int>& seq, const std::vector<bool>& prompt_row);

// Elements of each activation buffer of a pass of `rows` rows, of which `attention_rows` take the decode attention
// kernel (the others a prompt tile), with `splits` attention splits and `logit_rows` logit rows (0: a pipeline stage
// without lm_head); `quantized`: some decoder linear is not bf16 (prefill dequantizes weight tiles);
// `batch_invariant`: every product on the tiled kernel (ops.h), no dequantized tiles.
struct CudaScratchElems {
  size_t x = 0, xn = 0, q = 0, att = 0, k = 0, v = 0, gate = 0, up = 0, partial = 0, last = 0, logits = 0, sca = 0,
         tc_partial = 0;                                               // fp32
  size_t xb = 0, wtile = 0;                                            // bf16
  size_t xq = 0, flags = 0;                                            // int8 / uint8
  size_t outliers = 0, n_outliers = 0, tokens = 0, argmax = 0, tc_counters = 0;  // int
  size_t rows = 0;                                                     // RowInfo
  size_t tiles = 0;                                                    // AttentionTile
  void grow_to(const CudaScratchElems& o);  // element-wise max: buffers are only ever grown
  size_t bytes() const;
};
CudaScratchElems cuda_scratch_elems(const ModelConfig& c, int rows, int attention_rows, int splits, int logit_rows,
                                    bool quantized, bool batch_invariant = false);

// The most rows of one prefill pass of model c (kMinRowsPerPass .. kMostRowsPerPass, see there).
int max_rows_per_pass(const ModelConfig& c);

// fp32 values of the small tables uploaded once: RoPE inverse frequencies (two tables with local_rope), two 4-bit
// codes, the dynamic map.
size_t cuda_table_floats(const ModelConfig& c);

}  // namespace bq::cuda
