#include "model/quantize_model.h"

#include "core/error.h"

namespace bq {

void quantize_model(Model& m, const quant::QuantOptions& opt) {
  for (Layer& L : m.layers)
    for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      l->q = std::make_shared<const quant::QuantizedMatrix>(quant::quantize(l->w, l->dtype, l->out, l->in, opt));
}

std::optional<quant::QuantOptions> precision_to_quant(const std::string& precision, bool double_quant, int blocksize) {
  if (precision == "bf16" || precision == "fp16" || precision == "fp32") return std::nullopt;
  quant::QuantOptions q;
  if (precision == "nf4") q.scheme = quant::Scheme::NF4;
  else if (precision == "fp4") q.scheme = quant::Scheme::FP4;
  else if (precision == "int8") q.scheme = quant::Scheme::Int8;
  else if (precision == "llm-int8") q.scheme = quant::Scheme::LLMInt8;
  else fail("--precision: unknown '{}' (bf16, fp16, fp32, int8, llm-int8, nf4, fp4)", precision);
  if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)))
    fail("--blocksize: {} is not a power of two in 32..4096", blocksize);
  q.double_quant = double_quant;
  q.blocksize = blocksize;
  return q;
}

}  // namespace bq
