// Quantizes a loaded model's decoder linears in place (not lm_head or embeddings, as transformers + bitsandbytes).
#pragma once
#include <initializer_list>
#include <optional>
#include <string>

#include "model/model.h"
#include "quant/quant.h"

namespace bq {

// Sets Linear::q for q, k, v, o, gate, up and down of every layer, one matrix at a time (no whole-model copy),
// and for lm_head when opt.quantize_lm_head. phi3's fused qkv_proj / gate_up_proj are quantized as the stored
// tensor (as bitsandbytes does), then cut. A model loaded pre-quantized keeps its codes: int8 <-> llm-int8 may
// switch and the compute dtype is opt's; another scheme is an error.
void quantize_model(Model& m, const quant::QuantOptions& opt);

// Gives each of `parts` (stacked by rows in that order) its row range of `whole`, via quant::slice_rows.
void assign_fused(std::initializer_list<Linear*> parts, const quant::QuantizedMatrix& whole);

// What the precision options of every command that loads a model ask for.
struct PrecisionOptions {
  std::string precision = "bf16";  // bf16 | fp16 | fp32 | int8 | llm-int8 | nf4 | fp4
  bool double_quant = true;        // 4-bit: quantize the block maxima too (the study's setting)
  int blocksize = 64;              // 4-bit block size
  std::string compute_dtype = "fp16";  // fp16 | bf16 | fp32: bitsandbytes' compute dtype (the study's fp16)
  bool quantize_lm_head = false;
};

// The quantization options asked for; none for the 16/32-bit precisions. Bad values are an Error.
std::optional<quant::QuantOptions> precision_to_quant(const PrecisionOptions& p);

}  // namespace bq
