// Quantizes a loaded model's decoder linears in place (not lm_head or embeddings, as transformers + bitsandbytes).
#pragma once
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/precision.h"
#include "quant/quant.h"

namespace bq {

// Sets Linear::q for q, k, v, o, gate, up and down of every layer, one matrix at a time (no whole-model copy),
// and for lm_head when opt.quantize_lm_head. phi3's fused qkv_proj / gate_up_proj are quantized as the stored
// tensor (as bitsandbytes does), then cut. A model loaded pre-quantized keeps its codes: int8 <-> llm-int8 may
// switch and the compute dtype is opt's; another scheme is an error.
void quantize_model(Model& m, const quant::QuantOptions& opt);

// Gives each of `parts` (stacked by rows in that order) its row range of `whole`, via quant::slice_rows; a single
// part takes `whole` as it is.
void assign_fused(const std::vector<Linear*>& parts, quant::QuantizedMatrix whole);

// What the precision options of every command that loads a model ask for.
struct PrecisionOptions {
  const quant::Precision* precision = &quant::precision_named("bf16");  // never null
  bool double_quant = true;        // 4-bit: quantize the block maxima too (the study's setting)
  int blocksize = 64;              // 4-bit block size
  std::string compute_dtype = "fp16";  // fp16 | bf16 | fp32: bitsandbytes' compute dtype (the study's fp16)
  bool quantize_lm_head = false;
  // Whether the command line gave them: a checkpoint saved quantized decides those it did not give.
  bool precision_given = false, double_quant_given = false, blocksize_given = false;
};

// The quantization options asked for; none for the 16/32-bit precisions. Bad values are an Error.
std::optional<quant::QuantOptions> precision_to_quant(const PrecisionOptions& p);

// The precision a model runs at, and so is recorded at. A checkpoint saved quantized (`stored`, as
// checkpoint_quantization reads it) runs as stored: its scheme (8-bit as llm-int8, as transformers loads it),
// double quantization and blocksize. A --precision, --double-quant or --blocksize given that contradicts it is an
// Error naming `checkpoint`; only int8 and llm-int8 may be swapped (the same stored bytes). Without `stored`,
// `asked` unchanged.
PrecisionOptions resolve_precision(const PrecisionOptions& asked, const std::optional<quant::QuantOptions>& stored,
                                   const std::string& checkpoint);

}  // namespace bq
