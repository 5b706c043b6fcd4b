#include "model/quantize_model.h"

#include "core/error.h"

namespace bq {

namespace {

// A linear loaded from a pre-quantized checkpoint keeps its stored codes; only the 8-bit flavour can change
// (the stored int8 weights serve both LLM.int8 and weight-only int8).
void adapt_prequantized(Linear& l, const quant::QuantOptions& opt) {
  using quant::Scheme;
  const quant::QuantizedMatrix& q = *l.q;
  bool q8 = q.scheme == Scheme::Int8 || q.scheme == Scheme::LLMInt8;
  bool want8 = opt.scheme == Scheme::Int8 || opt.scheme == Scheme::LLMInt8;
  if (q.scheme != opt.scheme && !(q8 && want8))
    fail("the checkpoint is already quantized as {}; --precision asks for {} (use the original checkpoint)",
         quant::scheme_name(q.scheme), quant::scheme_name(opt.scheme));
  if (q.scheme == opt.scheme && q.compute == opt.compute) return;
  auto copy = std::make_shared<quant::QuantizedMatrix>(q);
  if (q8) copy->threshold = opt.scheme == Scheme::LLMInt8 ? opt.llm_int8_threshold : 0.0f;
  copy->scheme = opt.scheme;
  copy->compute = opt.compute;
  l.q = std::move(copy);
}

// phi3's fused tensor (q, k, v or gate, up stacked by rows, contiguous from parts[0].w): bitsandbytes quantizes
// the stored tensor as a whole, so it is quantized whole here too and cut into the projections' row ranges.
void quantize_fused(std::initializer_list<Linear*> parts, const quant::QuantOptions& opt) {
  const Linear& first = **parts.begin();
  int64_t rows = 0;
  for (const Linear* l : parts) rows += l->out;
  assign_fused(parts, quant::quantize(first.w, first.dtype, rows, first.in, opt));
}

}  // namespace

void assign_fused(std::initializer_list<Linear*> parts, const quant::QuantizedMatrix& whole) {
  int64_t row0 = 0;
  for (Linear* l : parts) {
    if (l->in != whole.cols) fail("fused tensor has {} columns, the projection {}", whole.cols, l->in);
    l->q = std::make_shared<const quant::QuantizedMatrix>(quant::slice_rows(whole, row0, l->out));
    l->w = nullptr;
    row0 += l->out;
  }
  if (row0 != whole.rows) fail("fused tensor has {} rows, its projections {}", whole.rows, row0);
}

void quantize_model(Model& m, const quant::QuantOptions& opt) {
  if (opt.quantize_lm_head && !m.lm_head.q)
    m.lm_head.q = std::make_shared<const quant::QuantizedMatrix>(
        quant::quantize(m.lm_head.w, m.lm_head.dtype, m.lm_head.out, m.lm_head.in, opt));
  for (Layer& L : m.layers) {
    if (L.q.q) {
      for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) adapt_prequantized(*l, opt);
      continue;
    }
    if (m.cfg.fused_qkv) {
      quantize_fused({&L.q, &L.k, &L.v}, opt);
      quantize_fused({&L.gate, &L.up}, opt);
    }
    for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      if (!l->q)
        l->q = std::make_shared<const quant::QuantizedMatrix>(quant::quantize(l->w, l->dtype, l->out, l->in, opt));
  }
}

std::optional<quant::QuantOptions> precision_to_quant(const PrecisionOptions& p) {
  const std::string& precision = p.precision;
  if (precision == "bf16" || precision == "fp16" || precision == "fp32") return std::nullopt;
  quant::QuantOptions q;
  if (precision == "nf4") q.scheme = quant::Scheme::NF4;
  else if (precision == "fp4") q.scheme = quant::Scheme::FP4;
  else if (precision == "int8") q.scheme = quant::Scheme::Int8;
  else if (precision == "llm-int8") q.scheme = quant::Scheme::LLMInt8;
  else fail("--precision: unknown '{}' (bf16, fp16, fp32, int8, llm-int8, nf4, fp4)", precision);
  if (p.blocksize < 32 || p.blocksize > 4096 || (p.blocksize & (p.blocksize - 1)))
    fail("--blocksize: {} is not a power of two in 32..4096", p.blocksize);
  q.double_quant = p.double_quant;
  q.blocksize = p.blocksize;
  if (p.compute_dtype == "fp16") q.compute = DType::F16;
  else if (p.compute_dtype == "bf16") q.compute = DType::BF16;
  else if (p.compute_dtype == "fp32") q.compute = DType::F32;
  else fail("--compute-dtype: unknown '{}' (fp16, bf16, fp32)", p.compute_dtype);
  q.quantize_lm_head = p.quantize_lm_head;
  return q;
}

}  // namespace bq
