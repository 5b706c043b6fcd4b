// One stage of the CUDA pipeline: a contiguous range of layers and everything their kernels use on its device
// (stream, cuBLAS handle, code tables, scratch, captured graphs). Two stages on one device share nothing. Every
// method that touches the device expects the caller to have made `device` current (DeviceGuard).
//   stage.cu          set-up, scratch sizing, graph capture and replay
//   stage_forward.cu  the layers' math: one flat list of kernel calls per layer
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "backend/cuda/weights.h"
#include "backend/kv_pages.h"
#include "backend/stages.h"

namespace bq::cuda {

// Which attention kernels a pass runs: the tensor-core kernel over `tiles` prompt tiles, the decode kernel where
// some rows are in none.
struct AttentionWork {
  int tiles = 0;
  bool decode_rows = true;
};

struct Stage {
  const ModelConfig& cfg;
  int device = 0, first = 0, end = 0;  // layers [first, end)
  KvShape kv;                          // their share of a sequence's cache
  std::shared_ptr<KvPageAccount> kv_pages = std::make_shared<KvPageAccount>();
  std::vector<DevLayer> layers;
  std::optional<uint64_t> embed_seed;  // first stage of a synthetic model: embedding rows hashed on the device
  DeviceArray<float> final_norm;       // the last stage: final norm and lm_head
  DevLinear lm_head;
  DeviceArray<float> inv_freq;
  DeviceArray<float> local_inv_freq;  // gemma3's sliding layers (local_rope)
  CodeTables tables;
  cudaStream_t st = nullptr;
  cublasHandle_t blas = nullptr;
  DeviceArray<uint8_t> blas_ws;
  cudaEvent_t ready = nullptr, taken = nullptr;  // hand-off of x to the next stage, from the previous one

  // Scratch, grown on demand (growing invalidates captured graphs).
  DeviceArray<float> x, xn, q, k, v, att, gate, up, partial, last, logits, tc_partial;
  DeviceArray<uint16_t> xb, wtile;
  DeviceArray<int8_t> xq;
  DeviceArray<float> sca;
  DeviceArray<int> outliers, n_outliers, tokens, argmax_out, tc_counters;
  DeviceArray<uint8_t> flags;
  DeviceArray<RowInfo> rows;
  DeviceArray<AttentionTile> tiles;

  std::map<std::vector<int>, cudaGraphExec_t> graphs;  // key: rows, splits, first logit, attention work, tiled products

  Stage(const ModelConfig& c, const PipelineStage& s)
      : cfg(c), device(s.device), first(s.first_layer), end(s.end_layer), kv(kv_shape(c, first, end)) {}
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;
  ~Stage();

  // Stream, handles and tables (outside the constructor, so that the destructor releases a part made).
  void init();

  // Sizes the scratch for a pass of n rows, attention_rows of them on the decode attention kernel; `before_growing`
  // runs once before the first buffer is reallocated (growing frees buffers that queued work may still read).
  void ensure_scratch(int n, int attention_rows, int splits, int n_logits,
                      const std::function<void()>& before_growing);
  void drop_graphs();

  // layers_pass, or with `graph` a CUDA graph of it, captured once per shape and replayed.
  void run_pass(int n, int splits, AttentionWork work, const std::vector<int>& logit_rows, int first_logit,
                bool graph);

  // This stage's layers for rows [0, n) of a pass whose inputs (x, rows, tiles; tokens on a synthetic model's first
  // stage) are on the device, then (the last stage) final norm of the listed rows into last[first_logit ...].
  void layers_pass(int n, int splits, AttentionWork work, const std::vector<int>& logit_rows, int first_logit);
  // y (=|+=) x · Wᵀ + bias for n rows. have16: xb already holds x in the dtype product_input gave for this product.
  void linear(const DevLinear& L, const float* xin, int n, float* y, bool accumulate, bool have16 = false);
  // Linears with the same input (q, k, v; gate, up): one tensor-core launch when they can share it.
  void linears(std::initializer_list<std::pair<const DevLinear*, float*>> ls, const float* xin, int n, bool have16);
  // x += the block's output product L(xin), normed first by post_norm where not null (sandwich_norms).
  void add_block_output(const DevLinear& L, const float* xin, int n, const float* post_norm, bool have16);

  size_t weight_bytes() const;       // layers, final norm, lm_head
  size_t step_weight_bytes() const;  // what a decode step reads: the decoder linears and lm_head

 private:
  TcScratch tc_scratch();
  Compute product_input(std::initializer_list<const DevLinear*> ls, int n) const;
};

}  // namespace bq::cuda
