#include "model/quantize_model.h"

namespace bq {

void quantize_model(Model& m, const quant::QuantOptions& opt) {
  for (Layer& L : m.layers)
    for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      l->q = std::make_shared<const quant::QuantizedMatrix>(quant::quantize(l->w, l->dtype, l->out, l->in, opt));
}

}  // namespace bq
