// Quantizes a loaded model's decoder linears in place (not lm_head or embeddings, as transformers + bitsandbytes).
#pragma once
#include "model/model.h"
#include "quant/quant.h"

namespace bq {

// Sets Linear::q for q, k, v, o, gate, up and down of every layer, one matrix at a time (no whole-model copy).
void quantize_model(Model& m, const quant::QuantOptions& opt);

}  // namespace bq
