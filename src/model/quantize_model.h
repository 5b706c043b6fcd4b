// Quantizes a loaded model's decoder linears in place (not lm_head or embeddings, as transformers + bitsandbytes).
#pragma once
#include <initializer_list>
#include <optional>
#include <string>

#include "model/model.h"
#include "quant/quant.h"

namespace bq {

// Sets Linear::q for q, k, v, o, gate, up and down of every layer, one matrix at a time (no whole-model copy).
// phi3's fused qkv_proj / gate_up_proj are quantized as the stored tensor (as bitsandbytes does), then cut.
// A model loaded pre-quantized keeps its codes: int8 <-> llm-int8 may switch, another scheme is an error.
void quantize_model(Model& m, const quant::QuantOptions& opt);

// Gives each of `parts` (stacked by rows in that order) its row range of `whole`, via quant::slice_rows.
void assign_fused(std::initializer_list<Linear*> parts, const quant::QuantizedMatrix& whole);

// --precision bf16|fp16|fp32|int8|llm-int8|nf4|fp4 as quantization options; none for the 16/32-bit precisions.
std::optional<quant::QuantOptions> precision_to_quant(const std::string& precision, bool double_quant = true,
                                                      int blocksize = 64);

}  // namespace bq
