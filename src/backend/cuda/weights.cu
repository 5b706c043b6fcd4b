#include "backend/cuda/weights.h"

#include <fmt/format.h>

#include "backend/cuda/layout.h"
#include "core/dtype.h"

namespace bq::cuda {

namespace {

template <typename T>
DeviceArray<uint8_t> upload_bytes(const std::vector<T>& v, const std::string& what) {
  DeviceArray<uint8_t> d(v.size() * sizeof(T), what);
  if (!v.empty()) BQ_CUDA(cudaMemcpy(d.get(), v.data(), d.bytes(), cudaMemcpyHostToDevice));
  return d;
}

Compute to_compute(DType d) { return d == DType::F16 ? Compute::F16 : d == DType::BF16 ? Compute::BF16 : Compute::F32; }

// The seed of linear j (0..6: q k v o gate up down) of layer `index`; lm_head is linear 0 of layer n_layers.
uint64_t linear_seed(uint64_t seed, int index, int j) { return seed * 1000003 + 16 * (7 * uint64_t(index) + j + 1); }

}  // namespace

CodeTables CodeTables::upload() {
  auto nf4 = quant::code4(quant::Scheme::NF4), fp4 = quant::code4(quant::Scheme::FP4);
  static_assert(std::tuple_size_v<decltype(nf4)> == kCodeTableFloats &&
                std::tuple_size_v<std::decay_t<decltype(quant::dynamic_map_signed())>> == kDynamicMapFloats);
  CodeTables t;
  t.nf4 = cuda::upload(nf4.data(), nf4.size(), "NF4 code");
  t.fp4 = cuda::upload(fp4.data(), fp4.size(), "FP4 code");
  t.dynamic_map = cuda::upload(quant::dynamic_map_signed().data(), kDynamicMapFloats, "dynamic map");
  return t;
}

size_t DevLinear::bytes() const {
  size_t n = bias.bytes();
  for (auto& b : bufs) n += b.bytes();
  return n;
}

bool DevLayer::quantized() const {
  for (auto* l : {&q, &k, &v, &o, &gate, &up, &down})
    if (l->w.kind != WeightKind::BF16) return true;
  return false;
}

size_t DevLayer::bytes() const {
  size_t n = attn_norm.bytes() + mlp_norm.bytes() + q_norm.bytes() + k_norm.bytes() + post_attn_norm.bytes() +
             post_mlp_norm.bytes();
  for (auto* l : {&q, &k, &v, &o, &gate, &up, &down}) n += l->bytes();
  return n;
}

size_t DevLayer::linear_bytes() const {
  size_t n = 0;
  for (auto* l : {&q, &k, &v, &o, &gate, &up, &down}) n += l->w.bytes();
  return n;
}

DeviceArray<float> ones(size_t n, const std::string& what) {
  std::vector<float> v(n, 1.0f);
  return upload(v.data(), n, what);
}

DevLinear upload_linear(const Linear& l, const CodeTables& tables, const std::string& name) {
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
  if (quant::is_4bit(qm.scheme)) {
    w.kind = WeightKind::Q4;
    w.blocksize = qm.blocksize;
    w.code = (qm.scheme == quant::Scheme::NF4 ? tables.nf4 : tables.fp4).get();
    w.dyn_map = tables.dynamic_map.get();
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

DevLayer upload_layer(const Layer& L, const CodeTables& tables, int index) {
  DevLayer d;
  const std::string p = fmt::format("layer {} ", index);
  d.attn_norm = upload(L.attn_norm.data(), L.attn_norm.size(), p + "norm");
  d.mlp_norm = upload(L.mlp_norm.data(), L.mlp_norm.size(), p + "norm");
  if (!L.q_norm.empty()) {
    d.q_norm = upload(L.q_norm.data(), L.q_norm.size(), p + "q_norm");
    d.k_norm = upload(L.k_norm.data(), L.k_norm.size(), p + "k_norm");
  }
  if (!L.post_attn_norm.empty()) {
    d.post_attn_norm = upload(L.post_attn_norm.data(), L.post_attn_norm.size(), p + "post-attention norm");
    d.post_mlp_norm = upload(L.post_mlp_norm.data(), L.post_mlp_norm.size(), p + "post-feed-forward norm");
  }
  d.q = upload_linear(L.q, tables, p + "q_proj");
  d.k = upload_linear(L.k, tables, p + "k_proj");
  d.v = upload_linear(L.v, tables, p + "v_proj");
  d.o = upload_linear(L.o, tables, p + "o_proj");
  d.gate = upload_linear(L.gate, tables, p + "gate_proj");
  d.up = upload_linear(L.up, tables, p + "up_proj");
  d.down = upload_linear(L.down, tables, p + "down_proj");
  return d;
}

DevLinear synthetic_linear(int64_t out, int64_t in, const std::optional<quant::QuantOptions>& qo, uint64_t s,
                           const CodeTables& tables, const std::string& name, cudaStream_t st) {
  DevLinear d;
  DeviceWeight& w = d.w;
  w.out = out;
  w.in = in;
  const size_t n = size_t(out * in);
  auto buf = [&](size_t bytes, const std::string& what) {
    d.bufs.push_back(DeviceArray<uint8_t>(bytes, name + " " + what));
    return d.bufs.back().get();
  };
  if (!qo) {
    w.kind = WeightKind::BF16;
    auto p = reinterpret_cast<uint16_t*>(buf(n * 2, "bf16"));
    fill_normal_bf16(p, n, s, 0.02f, st);
    w.bf16 = p;
    return d;
  }
  w.compute = to_compute(qo->compute);
  if (quant::is_4bit(qo->scheme)) {
    w.kind = WeightKind::Q4;
    w.blocksize = qo->blocksize;
    w.code = (qo->scheme == quant::Scheme::NF4 ? tables.nf4 : tables.fp4).get();
    w.dyn_map = tables.dynamic_map.get();
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

DevLayer synthetic_layer(const ModelConfig& c, const std::optional<quant::QuantOptions>& qo, uint64_t seed,
                         const CodeTables& tables, int index, cudaStream_t st) {
  const int64_t H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), In = c.intermediate;
  DevLayer d;
  const std::string p = fmt::format("layer {} ", index);
  d.attn_norm = ones(size_t(H), p + "norm");
  d.mlp_norm = ones(size_t(H), p + "norm");
  if (c.qk_norm) {
    d.q_norm = ones(size_t(c.head_dim), p + "q_norm");
    d.k_norm = ones(size_t(c.head_dim), p + "k_norm");
  }
  if (c.sandwich_norms) {
    d.post_attn_norm = ones(size_t(H), p + "post-attention norm");
    d.post_mlp_norm = ones(size_t(H), p + "post-feed-forward norm");
  }
  auto lin = [&](int j, int64_t out, int64_t in, const char* what) {
    return synthetic_linear(out, in, qo, linear_seed(seed, index, j), tables, p + what, st);
  };
  d.q = lin(0, Q, H, "q_proj");
  d.k = lin(1, KV, H, "k_proj");
  d.v = lin(2, KV, H, "v_proj");
  d.o = lin(3, H, Q, "o_proj");
  d.gate = lin(4, In, H, "gate_proj");
  d.up = lin(5, In, H, "up_proj");
  d.down = lin(6, H, In, "down_proj");
  return d;
}

DevLinear synthetic_lm_head(const ModelConfig& c, const std::optional<quant::QuantOptions>& qo, uint64_t seed,
                            const CodeTables& tables, cudaStream_t st) {
  const auto head_q = qo && qo->quantize_lm_head ? qo : std::optional<quant::QuantOptions>{};
  return synthetic_linear(c.vocab, c.hidden, head_q, linear_seed(seed, c.n_layers, 0), tables, "lm_head", st);
}

}  // namespace bq::cuda
