// A stage's set-up, its scratch (sized by layout.h's cuda_scratch_elems, grown on demand) and its CUDA graphs.
#include "backend/cuda/stage.h"

#include "backend/cuda/check.h"
#include "backend/cuda/layout.h"
#include "core/error.h"

namespace bq::cuda {

namespace {

// Grows `a` to n elements; before the first growth of a call, before_growing() (growing frees the old buffer).
template <typename T>
void ensure(DeviceArray<T>& a, size_t n, const char* what, bool& grew, const std::function<void()>& before_growing) {
  if (a.size() >= n) return;
  if (!grew) before_growing();
  grew = true;
  a = DeviceArray<T>();
  a = DeviceArray<T>(n, what);
}

}  // namespace

void Stage::init() {
  DeviceGuard on(device);
  BQ_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  BQ_CUDA(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  BQ_CUDA(cudaEventCreateWithFlags(&taken, cudaEventDisableTiming));
  BQ_CUBLAS(cublasCreate(&blas));
  BQ_CUBLAS(cublasSetStream(blas, st));
  // An explicit workspace: cuBLAS may not allocate during graph capture, and this way it is counted.
  blas_ws = DeviceArray<uint8_t>(kCublasWorkspaceBytes, "cuBLAS workspace");
  BQ_CUBLAS(cublasSetWorkspace(blas, blas_ws.get(), blas_ws.bytes()));
  std::vector<float> f;
  for (double v : rope_inv_freq(cfg)) f.push_back(float(v));
  inv_freq = upload(f.data(), f.size(), "RoPE frequencies");
  if (cfg.local_rope) {
    f.clear();
    for (double v : rope_inv_freq(cfg, true)) f.push_back(float(v));
    local_inv_freq = upload(f.data(), f.size(), "RoPE frequencies of the sliding layers");
  }
  tables = CodeTables::upload();
}

Stage::~Stage() {
  DeviceGuard on(device, std::nothrow);
  drop_graphs();
  if (blas) cublasDestroy(blas);
  if (ready) cudaEventDestroy(ready);
  if (taken) cudaEventDestroy(taken);
  if (st) cudaStreamDestroy(st);
}

void Stage::ensure_scratch(int n, int attention_rows, int splits, int n_logits,
                           const std::function<void()>& before_growing) {
  bool quantized = false;
  for (auto& L : layers) quantized |= L.quantized();
  const CudaScratchElems e = cuda_scratch_elems(cfg, n, attention_rows, splits, n_logits, quantized, batch_invariant());
  bool grew = false;
  // A buffer that could not grow (OutOfMemory, which the decode loop may recover from by preempting a sequence) is
  // left empty, to grow at the next pass; the graphs captured with the buffers before go either way.
  try {
    ensure(x, e.x, "activations", grew, before_growing);
    ensure(xn, e.xn, "activations", grew, before_growing);
    ensure(q, e.q, "activations", grew, before_growing);
    ensure(att, e.att, "activations", grew, before_growing);
    ensure(k, e.k, "activations", grew, before_growing);
    ensure(v, e.v, "activations", grew, before_growing);
    ensure(gate, e.gate, "activations", grew, before_growing);
    ensure(up, e.up, "activations", grew, before_growing);
    ensure(xb, e.xb, "bf16 activations", grew, before_growing);
    ensure(xq, e.xq, "int8 activations", grew, before_growing);
    ensure(sca, e.sca, "int8 scales", grew, before_growing);
    ensure(outliers, e.outliers, "outlier list", grew, before_growing);
    ensure(n_outliers, e.n_outliers, "outlier count", grew, before_growing);
    ensure(flags, e.flags, "outlier flags", grew, before_growing);
    ensure(tokens, e.tokens, "tokens", grew, before_growing);
    ensure(rows, e.rows, "row table", grew, before_growing);
    ensure(tiles, e.tiles, "attention tiles", grew, before_growing);
    ensure(partial, e.partial, "attention partials", grew, before_growing);
    ensure(last, e.last, "final hidden states", grew, before_growing);
    ensure(logits, e.logits, "logits", grew, before_growing);
    ensure(argmax_out, e.argmax, "argmax", grew, before_growing);
    ensure(wtile, e.wtile, "dequantized weight tile", grew, before_growing);
    ensure(tc_partial, e.tc_partial, "tensor-core partial sums", grew, before_growing);
    const size_t counters_before = tc_counters.size();
    ensure(tc_counters, e.tc_counters, "tensor-core tile counters", grew, before_growing);
    if (tc_counters.size() != counters_before)  // the kernels leave them at zero; they start there
      BQ_CUDA(cudaMemsetAsync(tc_counters.get(), 0, tc_counters.bytes(), st));
  } catch (const OutOfMemory&) {
    if (grew) drop_graphs();
    throw;
  }
  if (grew) drop_graphs();
}

void Stage::drop_graphs() {
  for (auto& [key, g] : graphs) cudaGraphExecDestroy(g);
  graphs.clear();
}

void Stage::run_pass(int n, int splits, AttentionWork work, const std::vector<int>& logit_rows, int first_logit,
                     bool graph) {
  if (!graph) {
    layers_pass(n, splits, work, logit_rows, first_logit);
    return;
  }
  // The products' kernels depend on the tiled-product settings too (the tests and benchmarks change them).
  std::vector<int> key = {n, splits, first_logit, work.tiles, work.decode_rows, tc_gemm_enabled(), tc_gemm_blocks(),
                          batch_invariant()};
  auto it = graphs.find(key);
  if (it == graphs.end()) {
    cudaGraph_t g;
    BQ_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    try {
      layers_pass(n, splits, work, logit_rows, first_logit);
    } catch (...) {
      cudaStreamEndCapture(st, &g);
      throw;
    }
    BQ_CUDA(cudaStreamEndCapture(st, &g));
    cudaGraphExec_t exec;
    BQ_CUDA(cudaGraphInstantiate(&exec, g, 0));
    BQ_CUDA(cudaGraphDestroy(g));
    it = graphs.emplace(key, exec).first;
  }
  BQ_CUDA(cudaGraphLaunch(it->second, st));
}

size_t Stage::weight_bytes() const {
  size_t n = final_norm.bytes() + lm_head.bytes();
  for (auto& L : layers) n += L.bytes();
  return n;
}

size_t Stage::step_weight_bytes() const {
  size_t n = lm_head.w.bytes();
  for (auto& L : layers) n += L.linear_bytes();
  return n;
}

}  // namespace bq::cuda
