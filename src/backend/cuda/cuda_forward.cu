// CudaForward: uploads (or synthesizes) the weights, keeps one bf16 KV cache per open sequence, and runs the
// forward pass of src/backend/cpu/cpu_forward.cpp step for step with the kernels of ops.h.
//
// KV cache in bf16: half the bytes of fp32 for every decode step and for long contexts (the 70B / 4k-token memory
// budget), and the precision transformers itself keeps for bf16 models; scores and softmax stay fp32.
//
// Pipeline: each Stage holds a contiguous range of layers with their share of every sequence's cache, and its own
// stream, cuBLAS handle, tables, scratch and graphs on its device (two stages on one device share nothing). A pass
// runs the stages in order; stage s + 1 copies stage s's hidden states on its own stream after waiting for the
// event `ready` that s records behind its layers, then records `taken`, which s waits for before it writes its
// hidden states again (the next pass). With one stage none of this happens.
#include "backend/cuda/cuda_forward.h"

#include <algorithm>
#include <initializer_list>
#include <map>

#include "backend/cuda/allocator.h"
#include "backend/cuda/check.h"
#include "backend/cuda/ops.h"
#include "core/error.h"
#include "core/progress.h"

namespace bq {

using namespace cuda;

namespace {

constexpr int kMaxGraphRows = 64;         // decode steps up to this many rows are replayed as CUDA graphs
static_assert(sizeof(RowInfo) == kRowInfoBytes, "layout.h sizes the row table");

struct DevLinear {
  DeviceWeight w;
  std::vector<DeviceArray<uint8_t>> bufs;
  DeviceArray<float> bias;
  size_t bytes() const {
    size_t n = bias.bytes();
    for (auto& b : bufs) n += b.bytes();
    return n;
  }
};

struct DevLayer {
  DeviceArray<float> attn_norm, mlp_norm;
  DevLinear q, k, v, o, gate, up, down;
};

struct Seq {
  int capacity = 0, length = 0;
  std::vector<DeviceArray<uint16_t>> k, v;  // per stage: [stage's layers][capacity][kv_dim]
};

template <typename T>
DeviceArray<T> upload(const T* host, size_t n, const std::string& what) {
  DeviceArray<T> d(n, what);
  if (n) BQ_CUDA(cudaMemcpy(d.get(), host, n * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <typename T>
DeviceArray<uint8_t> upload_bytes(const std::vector<T>& v, const std::string& what) {
  DeviceArray<uint8_t> d(v.size() * sizeof(T), what);
  if (!v.empty()) BQ_CUDA(cudaMemcpy(d.get(), v.data(), d.bytes(), cudaMemcpyHostToDevice));
  return d;
}

Compute to_compute(DType d) { return d == DType::F16 ? Compute::F16 : d == DType::BF16 ? Compute::BF16 : Compute::F32; }

DeviceArray<float> ones(size_t n, const std::string& what) {
  std::vector<float> v(n, 1.0f);
  return upload(v.data(), n, what);
}

// Grows `a` to n elements; before the first growth of a call, before_growing() (growing frees the old buffer).
template <typename T, typename F>
void ensure(DeviceArray<T>& a, size_t n, const char* what, bool& grew, F& before_growing) {
  if (a.size() >= n) return;
  if (!grew) before_growing();
  grew = true;
  a = DeviceArray<T>();
  a = DeviceArray<T>(n, what);
}

// One stage of the pipeline: its layers and everything their kernels use, on its device. Every method that touches
// the device expects the caller to have made `device` current (DeviceGuard).
struct Stage {
  const ModelConfig& cfg;
  int device = 0, first = 0, end = 0;  // layers [first, end)
  std::vector<DevLayer> layers;
  std::optional<uint64_t> embed_seed;  // first stage of a synthetic model: embedding rows hashed on the device
  DeviceArray<float> final_norm;       // the last stage: final norm and lm_head
  DevLinear lm_head;
  DeviceArray<float> inv_freq, code_nf4, code_fp4, dyn_map;
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

  std::map<std::vector<int>, cudaGraphExec_t> graphs;  // this stage's; key: rows, splits, capacity, first logit

  Stage(const ModelConfig& c, const CudaStage& s) : cfg(c), device(s.device), first(s.first_layer), end(s.end_layer) {}

  // Stream, handles and tables (outside the constructor, so that the destructor releases a part made).
  void init() {
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
    auto nf4 = quant::code4(quant::Scheme::NF4), fp4 = quant::code4(quant::Scheme::FP4);
    static_assert(std::tuple_size_v<decltype(nf4)> == kCodeTableFloats &&
                  std::tuple_size_v<std::decay_t<decltype(quant::dynamic_map_signed())>> == kDynamicMapFloats);
    code_nf4 = upload(nf4.data(), nf4.size(), "NF4 code");
    code_fp4 = upload(fp4.data(), fp4.size(), "FP4 code");
    dyn_map = upload(quant::dynamic_map_signed().data(), kDynamicMapFloats, "dynamic map");
  }

  ~Stage() {
    DeviceGuard on(device, std::nothrow);
    drop_graphs();
    if (blas) cublasDestroy(blas);
    if (ready) cudaEventDestroy(ready);
    if (taken) cudaEventDestroy(taken);
    if (st) cudaStreamDestroy(st);
  }

  DevLinear upload_linear(const Linear& l, const std::string& name) {
    DevLinear d;
    DeviceWeight& w = d.w;
    w.out = l.out;
    w.in = l.in;
    if (!l.bias.empty()) d.bias = upload(l.bias.data(), l.bias.size(), name + " bias");
    if (!l.q) {
      w.kind = WeightKind::BF16;
      const size_t n = size_t(l.out * l.in);
      if (l.dtype == DType::BF16) {
        d.bufs.push_back(DeviceArray<uint8_t>(n * 2, name));
        BQ_CUDA(cudaMemcpy(d.bufs.back().get(), l.w, n * 2, cudaMemcpyHostToDevice));
      } else {
        std::vector<float> f(n);
        to_f32(l.dtype, l.w, f.data(), n);
        std::vector<uint16_t> b(n);
        for (size_t i = 0; i < n; ++i) b[i] = f32_to_bf16(f[i]);
        d.bufs.push_back(upload_bytes(b, name));
      }
      w.bf16 = reinterpret_cast<const uint16_t*>(d.bufs.back().get());
      return d;
    }
    const quant::QuantizedMatrix& qm = *l.q;
    w.compute = to_compute(qm.compute);
    if (qm.scheme == quant::Scheme::NF4 || qm.scheme == quant::Scheme::FP4) {
      w.kind = WeightKind::Q4;
      w.blocksize = qm.blocksize;
      w.code = (qm.scheme == quant::Scheme::NF4 ? code_nf4 : code_fp4).get();
      w.dyn_map = dyn_map.get();
      d.bufs.push_back(upload_bytes(qm.packed, name + " packed"));
      w.packed = d.bufs.back().get();
      if (qm.double_quant) {
        d.bufs.push_back(upload_bytes(qm.absmax_q, name + " absmax codes"));
        w.absmax_q = d.bufs.back().get();
        d.bufs.push_back(upload_bytes(qm.absmax2, name + " nested absmax"));
        w.absmax2 = reinterpret_cast<const float*>(d.bufs.back().get());
        w.offset = qm.offset;
      } else {
        d.bufs.push_back(upload_bytes(qm.absmax, name + " absmax"));
        w.absmax = reinterpret_cast<const float*>(d.bufs.back().get());
      }
    } else {
      w.kind = qm.scheme == quant::Scheme::Int8 ? WeightKind::Int8 : WeightKind::LLMInt8;
      w.threshold = qm.threshold;
      d.bufs.push_back(upload_bytes(qm.cb, name + " int8 codes"));
      w.cb = reinterpret_cast<const int8_t*>(d.bufs.back().get());
      d.bufs.push_back(upload_bytes(qm.scb, name + " int8 scales"));
      w.scb = reinterpret_cast<const float*>(d.bufs.back().get());
    }
    return d;
  }

  DevLinear synth_linear(int64_t out, int64_t in, const std::optional<quant::QuantOptions>& qo, uint64_t s,
                         const std::string& name) {
    DevLinear d;
    DeviceWeight& w = d.w;
    w.out = out;
    w.in = in;
    const size_t n = size_t(out * in);
    auto buf = [&](size_t bytes, const std::string& what) {
      d.bufs.push_back(DeviceArray<uint8_t>(bytes, name + " " + what));
      return d.bufs.back().get();
    };
    if (qo) w.compute = to_compute(qo->compute);
    if (!qo) {
      w.kind = WeightKind::BF16;
      auto p = reinterpret_cast<uint16_t*>(buf(n * 2, "bf16"));
      fill_normal_bf16(p, n, s, 0.02f, st);
      w.bf16 = p;
    } else if (qo->scheme == quant::Scheme::NF4 || qo->scheme == quant::Scheme::FP4) {
      w.kind = WeightKind::Q4;
      w.blocksize = qo->blocksize;
      w.code = (qo->scheme == quant::Scheme::NF4 ? code_nf4 : code_fp4).get();
      w.dyn_map = dyn_map.get();
      auto packed = buf((n + 1) / 2, "packed");
      fill_bytes(packed, (n + 1) / 2, s, 0, 255, st);
      w.packed = packed;
      const size_t blocks = (n + size_t(w.blocksize) - 1) / size_t(w.blocksize);
      if (qo->double_quant) {
        // Positive codes of the signed dynamic map (indices 200..255 decode to about 0.05..1).
        auto aq = buf(blocks, "absmax codes");
        fill_bytes(aq, blocks, s + 1, 200, 255, st);
        const size_t nb2 = (blocks + 255) / 256;
        auto a2 = reinterpret_cast<float*>(buf(nb2 * 4, "nested absmax"));
        fill_uniform(a2, nb2, s + 2, 0.05f, 0.1f, st);
        w.absmax_q = aq;
        w.absmax2 = a2;
        w.offset = 0.02f;
      } else {
        auto a = reinterpret_cast<float*>(buf(blocks * 4, "absmax"));
        fill_uniform(a, blocks, s + 1, 0.02f, 0.1f, st);
        w.absmax = a;
      }
    } else {
      w.kind = qo->scheme == quant::Scheme::Int8 ? WeightKind::Int8 : WeightKind::LLMInt8;
      w.threshold = qo->scheme == quant::Scheme::LLMInt8 ? qo->llm_int8_threshold : 0.0f;
      auto cb = buf(n, "int8 codes");
      fill_bytes(cb, n, s, 0, 255, st);
      auto scb = reinterpret_cast<float*>(buf(size_t(out) * 4, "int8 scales"));
      fill_uniform(scb, size_t(out), s + 1, 0.02f, 0.1f, st);
      w.cb = reinterpret_cast<const int8_t*>(cb);
      w.scb = scb;
    }
    return d;
  }

  TcScratch tc_scratch() {
    return TcScratch{xb.get(), tc_partial.get(), tc_partial.size(), tc_counters.get(), tc_counters.size()};
  }

  // The compute dtype in which the kernel before a product writes the product's input into xb, or F32 when the
  // product (all of `ls`, which share one input) does not run on the tensor cores from xb.
  Compute tc_input(std::initializer_list<const DevLinear*> ls, int n) const {
    const Compute c = (*ls.begin())->w.compute;
    for (const DevLinear* L : ls)
      if (!matvec_tc_supported(L->w, n) || L->w.compute != c) return Compute::F32;
    return c;
  }
  static uint16_t* out16_if(Compute c, uint16_t* p) { return c == Compute::F32 ? nullptr : p; }

  // y (=|+=) x · Wᵀ + bias for n rows. have16: xb already holds x in the weight's compute dtype.
  void linear(const DevLinear& L, const float* xin, int n, float* y, bool accumulate, bool have16 = false) {
    const DeviceWeight& w = L.w;
    const float* bias = L.bias.get();
    Int8Scratch s8{xq.get(), sca.get(), outliers.get(), n_outliers.get(), flags.get()};
    if (matvec_tc_supported(w, n)) {
      MatvecTarget t{&w, y, bias};
      return matvec_tc(&t, 1, have16 ? nullptr : xin, n, accumulate, tc_scratch(), st);
    }
    if (w.kind == WeightKind::LLMInt8) {
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
    if (n <= (w.kind == WeightKind::BF16 ? kBf16MatvecMaxRows : kMatvecMaxRows))
      return matvec(w, xin, n, bias, y, accumulate, nullptr, st);
    to_bf16(xin, int64_t(n) * w.in, xb.get(), st);
    if (w.kind == WeightKind::BF16) {
      gemm_bf16(blas, xb.get(), w.bf16, n, int(w.out), int(w.in), y, int(w.out), accumulate);
    } else {
      // Dequantize a tile of rows to bf16, multiply on the tensor cores, next tile.
      const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(w.out, int64_t(kDequantTileElems) / w.in));
      for (int64_t r0 = 0; r0 < w.out; r0 += tile) {
        const int64_t nr = std::min(tile, w.out - r0);
        dequantize_rows(w, r0, nr, wtile.get(), st);
        gemm_bf16(blas, xb.get(), wtile.get(), n, int(nr), int(w.in), y + r0, int(w.out), accumulate);
      }
    }
    if (bias) add_bias(y, bias, n, int(w.out), st);
  }

  // Linears with the same input (q, k, v; gate, up): one tensor-core launch when they can share it.
  void linears(std::initializer_list<std::pair<const DevLinear*, float*>> ls, const float* xin, int n, bool have16) {
    MatvecTarget t[3];
    int count = 0;
    for (auto& [L, y] : ls)
      if (count < 3) t[count++] = MatvecTarget{&L->w, y, L->bias.get()};
    const bool whole = count == int(ls.size());
    if (whole && matvec_tc_can_share(t, count, n))
      return matvec_tc(t, count, have16 ? nullptr : xin, n, false, tc_scratch(), st);
    // The CUDA-core kernel for the shapes the tensor-core one does not take (bf16 weights, fp32 compute).
    const bool none_tc = std::none_of(t, t + count, [&](const MatvecTarget& m) { return matvec_tc_supported(*m.w, n); });
    if (whole && none_tc && matvec_grouped(t, count, xin, n, st)) return;
    for (auto& [L, y] : ls) linear(*L, xin, n, y, false, have16);
  }

  bool quantized() const {
    for (auto& L : layers)
      for (auto* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
        if (l->w.kind != WeightKind::BF16) return true;
    return false;
  }

  // Sizes the scratch for a pass; `before_growing` runs once before the first buffer is reallocated.
  template <typename F>
  void ensure_scratch(int n, int splits, int n_logits, F before_growing) {
    const CudaScratchElems e = cuda_scratch_elems(cfg, n, splits, n_logits, quantized());
    bool grew = false;
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
    if (grew) drop_graphs();
  }

  void drop_graphs() {
    for (auto& [key, g] : graphs) cudaGraphExecDestroy(g);
    graphs.clear();
  }

  // This stage's layers for rows [0, n) of a pass whose inputs (x, rows; tokens on a synthetic model's first
  // stage) are on the device, then (the last stage) final norm of the listed rows into last[first_logit ...].
  void layers_pass(int n, int splits, int max_positions, const std::vector<int>& logit_rows, int first_logit) {
    const ModelConfig& c = cfg;
    const int H = c.hidden, I = c.intermediate;
    if (embed_seed) synthetic_embed(tokens.get(), n, H, *embed_seed, 1.0f, x.get(), st);
    for (int l = 0; l < int(layers.size()); ++l) {  // l: the stage's own index, as its cache arrays are laid out
      DevLayer& L = layers[size_t(l)];
      // Each product's input is also written in its 16-bit compute dtype where it runs on the tensor cores.
      const Compute cq = tc_input({&L.q, &L.k, &L.v}, n), co = tc_input({&L.o}, n),
                    cg = tc_input({&L.gate, &L.up}, n), cd = tc_input({&L.down}, n);
      rmsnorm(x.get(), L.attn_norm.get(), xn.get(), n, H, c.rms_eps, st, out16_if(cq, xb.get()), cq);
      linears({{&L.q, q.get()}, {&L.k, k.get()}, {&L.v, v.get()}}, xn.get(), n, cq != Compute::F32);
      rope_store(q.get(), k.get(), v.get(), rows.get(), n, l, c.n_heads, c.n_kv_heads, c.head_dim, inv_freq.get(), st);
      attention(q.get(), rows.get(), n, l, c.n_heads, c.n_kv_heads, c.head_dim, splits, max_positions, partial.get(),
                att.get(), st, out16_if(co, xb.get()), co);
      linear(L.o, att.get(), n, x.get(), true, co != Compute::F32);
      rmsnorm(x.get(), L.mlp_norm.get(), xn.get(), n, H, c.rms_eps, st, out16_if(cg, xb.get()), cg);
      linears({{&L.gate, gate.get()}, {&L.up, up.get()}}, xn.get(), n, cg != Compute::F32);
      silu_mul(gate.get(), up.get(), int64_t(n) * I, st, out16_if(cd, xb.get()), cd);
      linear(L.down, gate.get(), n, x.get(), true, cd != Compute::F32);
    }
    for (size_t i = 0; i < logit_rows.size(); ++i)
      rmsnorm(x.get() + int64_t(logit_rows[i]) * H, final_norm.get(), last.get() + int64_t(first_logit + i) * H, 1, H,
              c.rms_eps, st);
  }

  // layers_pass, or with `graph` a CUDA graph of it, captured once per shape and replayed.
  void run_pass(int n, int splits, int max_cap, const std::vector<int>& lrows, int first_logit, bool graph) {
    if (!graph) {
      layers_pass(n, splits, max_cap, lrows, first_logit);
      return;
    }
    std::vector<int> key = {n, splits, max_cap, first_logit};
    auto it = graphs.find(key);
    if (it == graphs.end()) {
      cudaGraph_t g;
      BQ_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
      try {
        layers_pass(n, splits, max_cap, lrows, first_logit);
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

  size_t weight_bytes() const {
    size_t n = final_norm.bytes() + lm_head.bytes();
    for (auto& L : layers) {
      n += L.attn_norm.bytes() + L.mlp_norm.bytes();
      for (auto* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) n += l->bytes();
    }
    return n;
  }

  size_t step_weight_bytes() const {
    size_t n = lm_head.w.bytes();
    for (auto& L : layers)
      for (auto* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) n += l->w.bytes();
    return n;
  }
};

}  // namespace

struct CudaForward::Impl {
  ModelConfig cfg;
  const Model* host = nullptr;  // embeddings looked up on the host; null for synthetic models
  std::vector<std::unique_ptr<Stage>> stages;
  std::vector<std::unique_ptr<Seq>> seqs;
  int last_logit_rows = 0;
  bool use_graphs = true;

  void init(const ModelConfig& c, std::vector<CudaStage> layout) {
    cfg = c;
    const int devices = device_count();
    if (devices == 0) fail("--device cuda: no CUDA device is available");
    if (layout.empty()) layout.push_back(CudaStage{current_device(), 0, c.n_layers});
    validate_stages(c.n_layers, devices, layout);
    for (const CudaStage& s : layout) {
      stages.push_back(std::make_unique<Stage>(cfg, s));
      stages.back()->init();
    }
    enable_peer_access();
  }

  // Direct copies between neighbouring stages on different GPUs where the hardware allows it (otherwise the copy
  // goes through the host, slower but the same bytes).
  void enable_peer_access() {
    for (size_t i = 1; i < stages.size(); ++i) {
      const int a = stages[i - 1]->device, b = stages[i]->device;
      if (a == b) continue;
      for (auto [from, to] : {std::pair{a, b}, std::pair{b, a}}) {
        int can = 0;
        BQ_CUDA(cudaDeviceCanAccessPeer(&can, from, to));
        if (!can) continue;
        DeviceGuard on(from);
        const cudaError_t e = cudaDeviceEnablePeerAccess(to, 0);
        if (e == cudaErrorPeerAccessAlreadyEnabled) cudaGetLastError();  // by an earlier pipeline of this process
        else BQ_CUDA(e);
      }
    }
  }

  Stage& last_stage() { return *stages.back(); }

  void synchronize() {
    for (auto& s : stages) {
      DeviceGuard on(s->device);
      BQ_CUDA(cudaStreamSynchronize(s->st));
    }
  }

  const float* run(const ForwardBatch& b) {
    const ModelConfig& c = cfg;
    const int R = int(b.tokens.size());
    if (b.seq.size() != b.tokens.size()) fail("forward: tokens and seq differ in length");
    std::vector<int> pos(static_cast<size_t>(R)), next(seqs.size());
    for (size_t s = 0; s < seqs.size(); ++s) next[s] = seqs[s] ? seqs[s]->length : 0;
    for (int r = 0; r < R; ++r) {
      int s = b.seq[size_t(r)];
      if (s < 0 || size_t(s) >= seqs.size() || !seqs[size_t(s)]) fail("forward: row {} names no open sequence ({})", r, s);
      if (next[size_t(s)] >= seqs[size_t(s)]->capacity)
        fail("forward: sequence {} is full ({} positions)", s, seqs[size_t(s)]->capacity);
      int32_t t = b.tokens[size_t(r)];
      if (t < 0 || t >= c.vocab) fail("token id {} outside the vocabulary of {}", t, c.vocab);
      pos[size_t(r)] = next[size_t(s)]++;
    }
    for (int r : b.logit_rows)
      if (r < 0 || r >= R) fail("forward: logit row {} outside the batch of {}", r, R);
    const int NL = int(b.logit_rows.size());
    bool in_order = true;
    for (int i = 1; i < NL; ++i) in_order &= b.logit_rows[size_t(i)] == b.logit_rows[size_t(i - 1)] + 1;
    const size_t S = stages.size();
    // Growing a stage's scratch frees buffers that queued work of another stage may still copy from.
    auto settle = [&] {
      if (S > 1) synchronize();
    };

    for (int r0 = 0; r0 < R; r0 += kMaxRowsPerPass) {
      const int n = std::min(kMaxRowsPerPass, R - r0);
      // Splits from the sequences' capacities (not current lengths), so that decode steps share one graph.
      int max_cap = 1;
      for (int i = 0; i < n; ++i) max_cap = std::max(max_cap, seqs[size_t(b.seq[size_t(r0 + i)])]->capacity);
      const int splits = attention_splits(n, c.n_kv_heads, max_cap);
      // Logit rows are listed in any order: keep theirs by computing each at its own index.
      std::vector<int> lrows;
      int first_logit = 0;
      for (int i = 0; i < NL; ++i) {
        int r = b.logit_rows[size_t(i)];
        if (r < r0) ++first_logit;
        if (r >= r0 && r < r0 + n) lrows.push_back(r - r0);
      }
      // Decode steps (every row a logit row) replay graphs, on every stage.
      const bool graph = use_graphs && n <= kMaxGraphRows && int(lrows.size()) == n && in_order;
      for (size_t si = 0; si < S; ++si) {
        Stage& stage = *stages[si];
        DeviceGuard on(stage.device);
        stage.ensure_scratch(n, splits, si + 1 == S ? NL : 0, settle);
        std::vector<RowInfo> info(static_cast<size_t>(n));  // this stage's caches
        for (int i = 0; i < n; ++i) {
          Seq& s = *seqs[size_t(b.seq[size_t(r0 + i)])];
          info[size_t(i)] = RowInfo{pos[size_t(r0 + i)], s.capacity, s.k[si].get(), s.v[si].get()};
        }
        BQ_CUDA(cudaMemcpyAsync(stage.rows.get(), info.data(), info.size() * sizeof(RowInfo), cudaMemcpyHostToDevice,
                                stage.st));
        if (si + 1 < S) BQ_CUDA(cudaStreamWaitEvent(stage.st, stages[si + 1]->taken, 0));  // x copied on: free again
        if (si == 0) {
          BQ_CUDA(cudaMemcpyAsync(stage.tokens.get(), b.tokens.data() + r0, size_t(n) * sizeof(int),
                                  cudaMemcpyHostToDevice, stage.st));
          if (host) {
            std::vector<float> e(size_t(n) * size_t(c.hidden));
            for (int i = 0; i < n; ++i)
              host->embed_row(b.tokens[size_t(r0 + i)], e.data() + size_t(i) * size_t(c.hidden));
            BQ_CUDA(cudaMemcpyAsync(stage.x.get(), e.data(), e.size() * sizeof(float), cudaMemcpyHostToDevice,
                                    stage.st));
            BQ_CUDA(cudaStreamSynchronize(stage.st));  // e is pageable and goes out of scope
          }
        } else {
          Stage& prev = *stages[si - 1];
          const size_t bytes = size_t(n) * size_t(c.hidden) * sizeof(float);
          BQ_CUDA(cudaStreamWaitEvent(stage.st, prev.ready, 0));
          if (prev.device == stage.device)
            BQ_CUDA(cudaMemcpyAsync(stage.x.get(), prev.x.get(), bytes, cudaMemcpyDeviceToDevice, stage.st));
          else
            BQ_CUDA(cudaMemcpyPeerAsync(stage.x.get(), stage.device, prev.x.get(), prev.device, bytes, stage.st));
          BQ_CUDA(cudaEventRecord(stage.taken, stage.st));
        }
        if (si + 1 < S) {
          stage.run_pass(n, splits, max_cap, {}, 0, graph);
          BQ_CUDA(cudaEventRecord(stage.ready, stage.st));
        } else if (in_order) {
          stage.run_pass(n, splits, max_cap, lrows, first_logit, graph);
        } else {
          stage.run_pass(n, splits, max_cap, {}, 0, false);
          for (int i = 0; i < NL; ++i) {
            int r = b.logit_rows[size_t(i)];
            if (r >= r0 && r < r0 + n)
              rmsnorm(stage.x.get() + int64_t(r - r0) * c.hidden, stage.final_norm.get(),
                      stage.last.get() + int64_t(i) * c.hidden, 1, c.hidden, c.rms_eps, stage.st);
          }
        }
      }
    }
    for (size_t s = 0; s < seqs.size(); ++s)
      if (seqs[s]) seqs[s]->length = next[s];
    Stage& tail = last_stage();
    DeviceGuard on(tail.device);
    if (NL > 0) tail.linear(tail.lm_head, tail.last.get(), NL, tail.logits.get(), false);  // sized by ensure_scratch
    last_logit_rows = NL;
    sample_device_memory();
    return tail.logits.get();
  }
};

CudaForward::CudaForward() : p_(std::make_unique<Impl>()) {}
CudaForward::~CudaForward() = default;

CudaForward::CudaForward(const Model& m, std::vector<CudaStage> stages) : p_(std::make_unique<Impl>()) {
  Impl& I = *p_;
  I.init(m.cfg, std::move(stages));
  I.host = &m;
  ProgressMeter progress("copying weights to the GPU", double(m.layers.size()), "layers");
  for (auto& stage : I.stages) {
    Stage& S = *stage;
    DeviceGuard on(S.device);
    for (int i = S.first; i < S.end; ++i, progress.advance(1)) {
      const Layer& L = m.layers[size_t(i)];
      DevLayer d;
      std::string p = fmt::format("layer {} ", i);
      d.attn_norm = upload(L.attn_norm.data(), L.attn_norm.size(), p + "norm");
      d.mlp_norm = upload(L.mlp_norm.data(), L.mlp_norm.size(), p + "norm");
      d.q = S.upload_linear(L.q, p + "q_proj");
      d.k = S.upload_linear(L.k, p + "k_proj");
      d.v = S.upload_linear(L.v, p + "v_proj");
      d.o = S.upload_linear(L.o, p + "o_proj");
      d.gate = S.upload_linear(L.gate, p + "gate_proj");
      d.up = S.upload_linear(L.up, p + "up_proj");
      d.down = S.upload_linear(L.down, p + "down_proj");
      S.layers.push_back(std::move(d));
    }
  }
  Stage& tail = I.last_stage();
  DeviceGuard on(tail.device);
  tail.final_norm = upload(m.final_norm.data(), m.final_norm.size(), "final norm");
  tail.lm_head = tail.upload_linear(m.lm_head, "lm_head");  // quantized only with --quantize-lm-head
}

std::unique_ptr<CudaForward> CudaForward::synthetic(const ModelConfig& c, const std::optional<quant::QuantOptions>& qo,
                                                    uint64_t seed, std::vector<CudaStage> stages) {
  std::unique_ptr<CudaForward> f(new CudaForward());
  Impl& I = *f->p_;
  I.init(c, std::move(stages));
  I.stages.front()->embed_seed = seed;
  uint64_t s = seed * 1000003;  // each linear's seed follows from the layer's index, whichever stage holds it
  const int64_t H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), In = c.intermediate;
  for (auto& stage : I.stages) {
    Stage& S = *stage;
    DeviceGuard on(S.device);
    for (int i = S.first; i < S.end; ++i) {
      DevLayer d;
      std::string p = fmt::format("layer {} ", i);
      d.attn_norm = ones(size_t(H), p + "norm");
      d.mlp_norm = ones(size_t(H), p + "norm");
      d.q = S.synth_linear(Q, H, qo, s += 16, p + "q_proj");
      d.k = S.synth_linear(KV, H, qo, s += 16, p + "k_proj");
      d.v = S.synth_linear(KV, H, qo, s += 16, p + "v_proj");
      d.o = S.synth_linear(H, Q, qo, s += 16, p + "o_proj");
      d.gate = S.synth_linear(In, H, qo, s += 16, p + "gate_proj");
      d.up = S.synth_linear(In, H, qo, s += 16, p + "up_proj");
      d.down = S.synth_linear(H, In, qo, s += 16, p + "down_proj");
      S.layers.push_back(std::move(d));
    }
  }
  Stage& tail = I.last_stage();
  {
    DeviceGuard on(tail.device);
    tail.final_norm = ones(size_t(H), "final norm");
    const auto head_q = qo && qo->quantize_lm_head ? qo : std::optional<quant::QuantOptions>{};
    tail.lm_head = tail.synth_linear(c.vocab, H, head_q, s += 16, "lm_head");
  }
  I.synchronize();
  return f;
}

int CudaForward::open_sequence(int capacity) {
  Impl& I = *p_;
  if (capacity <= 0 || capacity > I.cfg.max_positions)
    fail("a sequence of {} positions exceeds the model's limit of {}", capacity, I.cfg.max_positions);
  auto s = std::make_unique<Seq>();
  s->capacity = capacity;
  for (auto& stage : I.stages) {
    DeviceGuard on(stage->device);
    const size_t n = size_t(stage->end - stage->first) * size_t(capacity) * size_t(I.cfg.kv_dim());
    s->k.push_back(DeviceArray<uint16_t>(n, "KV cache (keys)"));
    s->v.push_back(DeviceArray<uint16_t>(n, "KV cache (values)"));
  }
  for (size_t i = 0; i < I.seqs.size(); ++i)
    if (!I.seqs[i]) {
      I.seqs[i] = std::move(s);
      return int(i);
    }
  I.seqs.push_back(std::move(s));
  return int(I.seqs.size() - 1);
}

void CudaForward::close_sequence(int id) {
  p_->synchronize();  // the cache may still be read by queued work
  p_->seqs.at(size_t(id)).reset();
}

int CudaForward::sequence_length(int id) const { return p_->seqs.at(size_t(id))->length; }

const ModelConfig& CudaForward::config() const { return p_->cfg; }

const float* CudaForward::run_device(const ForwardBatch& b) { return p_->run(b); }

void CudaForward::run(const ForwardBatch& b, float* logits) {
  const float* d = p_->run(b);
  const size_t n = b.logit_rows.size() * size_t(p_->cfg.vocab);
  Stage& tail = p_->last_stage();
  DeviceGuard on(tail.device);
  if (n) BQ_CUDA(cudaMemcpyAsync(logits, d, n * sizeof(float), cudaMemcpyDeviceToHost, tail.st));
  synchronize();
}

std::vector<int32_t> CudaForward::argmax_last() {
  Impl& I = *p_;
  std::vector<int32_t> out(size_t(I.last_logit_rows));
  if (out.empty()) return out;
  Stage& tail = I.last_stage();
  DeviceGuard on(tail.device);
  argmax_rows(tail.logits.get(), I.last_logit_rows, I.cfg.vocab, tail.argmax_out.get(), tail.st);
  BQ_CUDA(cudaMemcpyAsync(out.data(), tail.argmax_out.get(), out.size() * sizeof(int32_t), cudaMemcpyDeviceToHost,
                          tail.st));
  synchronize();
  for (size_t r = 0; r < out.size(); ++r)
    if (out[r] < 0)
      fail("logit row {} holds NaN or inf: the model's output is not finite (NaN or inf in the checkpoint's "
           "weights, or a config.json value such as rope_theta or rms_norm_eps that makes it so)", r);
  return out;
}

void CudaForward::synchronize() { p_->synchronize(); }

void CudaForward::set_use_graphs(bool on) {
  p_->use_graphs = on;
  if (on) return;
  for (auto& s : p_->stages) {
    DeviceGuard guard(s->device);
    s->drop_graphs();
  }
}

size_t CudaForward::weight_bytes() const {
  size_t n = 0;
  for (auto& s : p_->stages) n += s->weight_bytes();
  return n;
}

size_t CudaForward::step_weight_bytes() const {
  size_t n = 0;
  for (auto& s : p_->stages) n += s->step_weight_bytes();
  return n;
}

size_t CudaForward::kv_cache_bytes() const {
  size_t n = 0;
  for (auto& info : stages()) n += info.kv_cache_bytes;
  return n;
}

std::vector<CudaForward::StageInfo> CudaForward::stages() const {
  std::vector<StageInfo> out;
  for (size_t i = 0; i < p_->stages.size(); ++i) {
    const Stage& s = *p_->stages[i];
    StageInfo info{s.device, s.first, s.end, s.weight_bytes(), 0};
    for (auto& seq : p_->seqs)
      if (seq) info.kv_cache_bytes += seq->k[i].bytes() + seq->v[i].bytes();
    out.push_back(info);
  }
  return out;
}

}  // namespace bq
