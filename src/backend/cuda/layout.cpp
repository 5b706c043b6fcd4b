#include "backend/cuda/layout.h"

#include <algorithm>

namespace bq::cuda {

int attention_splits(int max_capacity) {
  // attention_row_splits(c) is at most ceil(c / kAttentionMinSplitLen), and that many up to 1,024 positions.
  return std::clamp((max_capacity + kAttentionMinSplitLen - 1) / kAttentionMinSplitLen, 1, kAttentionMaxSplits);
}

size_t attention_partial_floats(int rows, int n_heads, int hd, int splits) {
  return size_t(rows) * size_t(n_heads) * size_t(splits) * size_t(hd + 2);
}

std::vector<AttentionTile> attention_tiles(const std::vector<int>& seq, const std::vector<bool>& prompt_row) {
  std::vector<AttentionTile> tiles;
  for (int r = 0; r < int(seq.size()); ++r) {
    if (!prompt_row[size_t(r)]) continue;
    const bool extends = !tiles.empty() && tiles.back().first_row + tiles.back().rows == r &&
                         seq[size_t(tiles.back().first_row)] == seq[size_t(r)] && tiles.back().rows < kPrefillTileRows;
    if (extends) ++tiles.back().rows;
    else tiles.push_back(AttentionTile{r, 1});
  }
  return tiles;
}

void CudaScratchElems::grow_to(const CudaScratchElems& o) {
  for (auto [a, b] : {std::pair{&x, o.x}, {&xn, o.xn}, {&q, o.q}, {&att, o.att}, {&k, o.k}, {&v, o.v}, {&gate, o.gate},
                      {&up, o.up}, {&partial, o.partial}, {&last, o.last}, {&logits, o.logits}, {&sca, o.sca},
                      {&xb, o.xb}, {&wtile, o.wtile}, {&xq, o.xq}, {&flags, o.flags}, {&outliers, o.outliers},
                      {&n_outliers, o.n_outliers}, {&tokens, o.tokens}, {&argmax, o.argmax}, {&rows, o.rows}, {&tiles, o.tiles},
                      {&tc_partial, o.tc_partial}, {&tc_counters, o.tc_counters}})
    *a = std::max(*a, b);
}

size_t CudaScratchElems::bytes() const {
  return (x + xn + q + att + k + v + gate + up + partial + last + logits + sca + tc_partial) * 4 + (xb + wtile) * 2 +
         xq + flags + (outliers + n_outliers + tokens + argmax + tc_counters) * sizeof(int) + rows * kRowInfoBytes +
         tiles * sizeof(AttentionTile);
}

size_t tc_gemm_partial_floats_most(const ModelConfig& c) {
  const int64_t H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate, V = c.vocab;
  auto tiles = [](int64_t rows) { return (rows + kTcTileRows - 1) / kTcTileRows; };
  const int64_t rounds_h = H / kTcRoundElems, rounds_q = Q / kTcRoundElems, rounds_i = I / kTcRoundElems;
  return std::max({tc_gemm_partial_floats(tiles(Q) + 2 * tiles(KV), rounds_h), tc_gemm_partial_floats(tiles(H), rounds_q),
                   tc_gemm_partial_floats(2 * tiles(I), rounds_h), tc_gemm_partial_floats(tiles(H), rounds_i),
                   tc_gemm_partial_floats(tiles(V), rounds_h)});
}

CudaScratchElems cuda_scratch_elems(const ModelConfig& c, int rows, int attention_rows, int splits, int logit_rows,
                                    bool quantized, bool batch_invariant) {
  const size_t n = size_t(rows), H = size_t(c.hidden), Q = size_t(c.q_dim()), KV = size_t(c.kv_dim()),
               I = size_t(c.intermediate);
  const size_t widest = std::max({H, Q, I}), NL = size_t(logit_rows);
  CudaScratchElems s;
  s.x = s.xn = n * H;
  s.q = s.att = n * Q;
  s.k = s.v = n * KV;
  s.gate = s.up = n * I;
  // 16-bit copies of the activations feed the tensor cores (matrix-vector kernels and GEMMs); lm_head's input is NL
  // rows wide.
  s.xb = std::max(n * widest, NL * H);
  s.xq = n * widest;
  s.sca = n;
  s.outliers = widest;
  s.n_outliers = 1;
  s.flags = widest;
  s.tokens = n;
  s.rows = n;
  s.tiles = n;  // at most one per row
  s.partial = attention_partial_floats(attention_rows, c.n_heads, c.head_dim, splits);
  if (logit_rows > 0) {  // a pipeline stage before the last holds no logit buffers
    s.last = NL * H;
    s.logits = NL * size_t(c.vocab);
    s.argmax = NL;
  }
  // The tensor-core products' k-split partials, and one arrival counter per row tile of the widest launch (q, k, v
  // together; gate, up together; lm_head).
  const size_t widest_launch_counters = std::max({Q + 2 * KV, 2 * I, H, size_t(c.vocab)}) / kTcTileRows + 3;
  if (batch_invariant) {  // every product on the tiled kernel (ops.h: set_batch_invariant), bf16 ones too
    s.tc_partial = tc_gemm_partial_floats_most(c);
    s.tc_counters = widest_launch_counters;
    return s;
  }
  if (quantized && rows <= kTcGemmMaxRows) {
    s.tc_partial = kTcPartialFloats;
    s.tc_counters = widest_launch_counters;
    if (rows > kTcStreamMaxRows) s.tc_partial = std::max(s.tc_partial, tc_gemm_partial_floats_most(c));
  }
  if (quantized && rows > kMatvecMaxRows) s.wtile = std::min(kDequantTileElems, std::max(widest * widest, widest * I));
  return s;
}

int max_rows_per_pass(const ModelConfig& c) {
  auto activation_bytes = [&](int rows) {  // a quantized model's, without the dequantization tile
    const CudaScratchElems s = cuda_scratch_elems(c, rows, 0, 1, 0, true);
    return s.bytes() - s.wtile * 2;
  };
  int rows = kMinRowsPerPass;
  while (rows < kMostRowsPerPass && activation_bytes(2 * rows) <= kPassActivationBytes) rows *= 2;
  return c.sliding_layers.empty() ? rows : std::min(rows, kSlidingPassRows);
}

size_t cuda_table_floats(const ModelConfig& c) {
  return size_t(c.head_dim / 2) * (c.local_rope ? 2 : 1) + 2 * kCodeTableFloats + kDynamicMapFloats;
}

}  // namespace bq::cuda
