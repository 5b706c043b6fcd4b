// A stage's layers: the forward math of backend/cpu/cpu_forward.cpp as a flat list of the kernels of ops.h, and the
// choice of kernel for each product (tensor-core matvec, CUDA-core matvec, LLM.int8's decomposition, cuBLAS GEMM;
// in batch-invariant mode only the first two, ops.h).
#include <algorithm>
#include <cstdlib>

#include "backend/cuda/layout.h"
#include "backend/cuda/stage.h"
#include "core/error.h"
#include "quant/quant.h"

namespace bq::cuda {

namespace {

uint16_t* out16_if(Compute c, uint16_t* p) { return c == Compute::F32 ? nullptr : p; }

// Whether linear() multiplies by w through cuBLAS from a bf16 copy of the input (a prefill pass).
bool cublas_product(const DeviceWeight& w, int n) {
  if (w.kind == WeightKind::LLMInt8 || batch_invariant() || matvec_tc_supported(w, n)) return false;
  return n > (w.kind == WeightKind::BF16 ? kBf16MatvecMaxRows : kMatvecMaxRows);
}

// Elements of one dequantized tile: the whole scratch (kDequantTileElems, 64 MiB), or less with
// BIOMEDQ_DEQUANT_TILE_MIB=N (1..64), for comparisons: a tile smaller than L2 (the H200's: 60 MB) may stay there
// between its dequantization and its product, where the whole scratch goes out to memory and back.
size_t dequant_tile_elems() {
  static const size_t elems = [] {
    const char* v = std::getenv("BIOMEDQ_DEQUANT_TILE_MIB");
    if (!v) return kDequantTileElems;
    char* end = nullptr;
    const long mib = std::strtol(v, &end, 10);
    const long most = long(kDequantTileElems * sizeof(uint16_t) >> 20);
    if (end == v || *end != '\0' || mib < 1 || mib > most)
      fail("BIOMEDQ_DEQUANT_TILE_MIB={}: give a whole number of MiB from 1 to {}", v, most);
    return size_t(mib) << 20 >> 1;  // bf16 elements
  }();
  return elems;
}

}  // namespace

TcScratch Stage::tc_scratch() {
  return TcScratch{xb.get(), tc_partial.get(), tc_partial.size(), tc_counters.get(), tc_counters.size()};
}

// The 16-bit dtype in which the kernel before a product writes the product's input into xb, or F32 where none
// does: the tensor-core kernels' compute dtype, or bf16 where the products (all of `ls`, which share one input) go
// through cuBLAS, which saves a conversion pass per product (7% of a bf16 prefill layer on the H200).
Compute Stage::product_input(std::initializer_list<const DevLinear*> ls, int n) const {
  if (std::all_of(ls.begin(), ls.end(), [&](const DevLinear* L) { return cublas_product(L->w, n); }))
    return Compute::BF16;
  const Compute c = product_compute((*ls.begin())->w);
  for (const DevLinear* L : ls)
    if (!matvec_tc_supported(L->w, n) || product_compute(L->w) != c) return Compute::F32;
  return c;
}

void Stage::linear(const DevLinear& L, const float* xin, int n, float* y, bool accumulate, bool have16) {
  const DeviceWeight& w = L.w;
  const float* bias = L.bias.get();
  Int8Scratch s8{xq.get(), sca.get(), outliers.get(), n_outliers.get(), flags.get()};
  if (matvec_tc_supported(w, n)) {
    MatvecTarget t{&w, y, bias};
    return matvec_tc(&t, 1, have16 ? nullptr : xin, n, accumulate, tc_scratch(), st);
  }
  if (w.kind == WeightKind::LLMInt8) {
    if (batch_invariant()) fail("{}", quant::kLlmInt8DependsOnTheBatch);
    // bitsandbytes' decomposition over the whole batch, then the int8 product a few rows at a time.
    llm_int8_prepare(xin, n, int(w.in), w.threshold, s8, st);
    // Prefill: the int32 products through cuBLAS into the (then idle) dequantization tile.
    if (n > kMatvecMaxRows && llm_int8_gemm(blas, w, xin, n, s8, reinterpret_cast<int32_t*>(wtile.get()),
                                            wtile.size() / 2, bias, y, accumulate, st))
      return;
    for (int r0 = 0; r0 < n; r0 += kMatvecMaxRows) {
      Int8Scratch part = s8;
      part.xq += int64_t(r0) * w.in;
      part.sca += r0;
      matvec(w, xin + int64_t(r0) * w.in, std::min(kMatvecMaxRows, n - r0), bias, y + int64_t(r0) * w.out,
             accumulate, &part, st);
    }
    return;
  }
  if (batch_invariant()) {  // widths the tensor-core kernel does not take: the CUDA-core kernel's sums ignore the rows
    for (int r0 = 0; r0 < n; r0 += kMatvecMaxRows)
      matvec(w, xin + int64_t(r0) * w.in, std::min(kMatvecMaxRows, n - r0), bias, y + int64_t(r0) * w.out, accumulate,
             nullptr, st);
    return;
  }
  if (!cublas_product(w, n)) return matvec(w, xin, n, bias, y, accumulate, nullptr, st);
  if (!have16) to_bf16(xin, int64_t(n) * w.in, xb.get(), st);  // else the kernel before wrote it (product_input)
  if (w.kind == WeightKind::BF16) {
    gemm_bf16(blas, xb.get(), w.bf16, n, int(w.out), int(w.in), y, int(w.out), accumulate);
  } else {
    // Dequantize a tile of rows to bf16, multiply on the tensor cores, next tile. Tiles of whole 64-row groups, so
    // that each tile's output columns start 256-byte aligned: MedGemma-27B's 6,241-row tiles of gate and up (5,376
    // wide) began misaligned and cuBLAS took a kernel that made nf4 prefill 3.6x slower than bf16 (H200, ncu).
    const int64_t fit = int64_t(dequant_tile_elems()) / w.in;
    const int64_t tile = std::min<int64_t>(w.out, fit >= 64 ? fit / 64 * 64 : std::max<int64_t>(1, fit));
    for (int64_t r0 = 0; r0 < w.out; r0 += tile) {
      const int64_t nr = std::min(tile, w.out - r0);
      dequantize_rows(w, r0, nr, wtile.get(), st);
      gemm_bf16(blas, xb.get(), wtile.get(), n, int(nr), int(w.in), y + r0, int(w.out), accumulate);
    }
  }
  if (bias) add_bias(y, bias, n, int(w.out), st);
}

void Stage::linears(std::initializer_list<std::pair<const DevLinear*, float*>> ls, const float* xin, int n,
                    bool have16) {
  MatvecTarget t[3];
  int count = 0;
  for (auto& [L, y] : ls)
    if (count < 3) t[count++] = MatvecTarget{&L->w, y, L->bias.get()};
  const bool whole = count == int(ls.size());
  if (whole && matvec_tc_can_share(t, count, n))
    return matvec_tc(t, count, have16 ? nullptr : xin, n, false, tc_scratch(), st);
  // The CUDA-core kernel for the shapes the tensor-core one does not take (bf16 weights, fp32 compute).
  const bool none_tc = std::none_of(t, t + count, [&](const MatvecTarget& m) { return matvec_tc_supported(*m.w, n); });
  const bool bf16_gemm = t[0].w->kind == WeightKind::BF16 && n > kBf16MatvecMaxRows;  // cuBLAS, in linear()
  if (whole && none_tc && !bf16_gemm && matvec_grouped(t, count, xin, n, st)) return;
  for (auto& [L, y] : ls) linear(*L, xin, n, y, false, have16);
}

void Stage::add_block_output(const DevLinear& L, const float* xin, int n, const float* post_norm, bool have16) {
  if (!post_norm) return linear(L, xin, n, x.get(), true, have16);
  // gemma: the block's output is normed before the residual; xn is free once the block's products have read it.
  linear(L, xin, n, xn.get(), false, have16);
  rmsnorm_add(xn.get(), post_norm, x.get(), n, cfg.hidden, cfg.rms_eps, st);
}

void Stage::layers_pass(int n, int splits, AttentionWork work, const std::vector<int>& logit_rows, int first_logit) {
  const ModelConfig& c = cfg;
  const int H = c.hidden, I = c.intermediate;
  if (embed_seed) synthetic_embed(tokens.get(), n, H, *embed_seed, 1.0f, x.get(), st);
  for (int l = 0; l < int(layers.size()); ++l) {  // l: the stage's own index
    DevLayer& L = layers[size_t(l)];
    // Each product's input is also written in its 16-bit compute dtype where it runs on the tensor cores.
    const Compute cq = product_input({&L.q, &L.k, &L.v}, n), co = product_input({&L.o}, n),
                  cg = product_input({&L.gate, &L.up}, n), cd = product_input({&L.down}, n);
    rmsnorm(x.get(), L.attn_norm.get(), xn.get(), n, H, c.rms_eps, st, out16_if(cq, xb.get()), cq);
    linears({{&L.q, q.get()}, {&L.k, k.get()}, {&L.v, v.get()}}, xn.get(), n, cq != Compute::F32);
    if (c.qk_norm) {  // each head's q and k normed over its head_dim, in place
      rmsnorm(q.get(), L.q_norm.get(), q.get(), n * c.n_heads, c.head_dim, c.rms_eps, st, nullptr, Compute::F32);
      rmsnorm(k.get(), L.k_norm.get(), k.get(), n * c.n_kv_heads, c.head_dim, c.rms_eps, st, nullptr, Compute::F32);
    }
    const int model_layer = first + l;  // sliding layers and local RoPE go by the model's numbering
    const float* freqs = c.uses_local_rope(model_layer) ? local_inv_freq.get() : inv_freq.get();
    const KvLayer kv = kv_layer(c, first, end, model_layer);
    rope_store(q.get(), k.get(), v.get(), rows.get(), n, kv, c.n_heads, c.n_kv_heads, c.head_dim, freqs, st);
    const int window = c.is_sliding(model_layer) ? c.sliding_window : 0;
    attention_prefill(q.get(), rows.get(), tiles.get(), work.tiles, kv, c.n_heads, c.n_kv_heads, c.head_dim,
                      c.attn_scale(), window, att.get(), st, out16_if(co, xb.get()), co);
    if (work.decode_rows)
      attention(q.get(), rows.get(), n, kv, c.n_heads, c.n_kv_heads, c.head_dim, c.attn_scale(), window, splits,
                partial.get(), att.get(), st, out16_if(co, xb.get()), co);
    add_block_output(L.o, att.get(), n, L.post_attn_norm.get(), co != Compute::F32);
    rmsnorm(x.get(), L.mlp_norm.get(), xn.get(), n, H, c.rms_eps, st, out16_if(cg, xb.get()), cg);
    linears({{&L.gate, gate.get()}, {&L.up, up.get()}}, xn.get(), n, cg != Compute::F32);
    gated_act(c.act, gate.get(), up.get(), int64_t(n) * I, st, out16_if(cd, xb.get()), cd);
    add_block_output(L.down, gate.get(), n, L.post_mlp_norm.get(), cd != Compute::F32);
  }
  // The final norm of each run of consecutive logit rows in one launch (a decode step's rows are one run).
  for (size_t i = 0, run; i < logit_rows.size(); i += run) {
    for (run = 1; i + run < logit_rows.size() && logit_rows[i + run] == logit_rows[i] + int(run);) ++run;
    rmsnorm(x.get() + int64_t(logit_rows[i]) * H, final_norm.get(), last.get() + int64_t(first_logit + int(i)) * H,
            int(run), H, c.rms_eps, st);
  }
}

}  // namespace bq::cuda
