// bitsandbytes-compatible weight quantization: NF4/FP4 blockwise 4-bit (optionally with double quantization of
// the block maxima), int8 row-wise (weight-only, and LLM.int8 with its outlier decomposition), and the tensors
// transformers + bitsandbytes save for them. The CPU matmul that reads these formats is backend/cpu/qmatmul.h.
// Layouts, codebooks and rounding follow bitsandbytes 0.50 (bitsandbytes/functional.py, csrc/kernels.cu);
// scripts/check_bnb_bytes.py checks the bytes against an independent reference in torch.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"

namespace bq::quant {

enum class Scheme { NF4, FP4, Int8 /*weight-only*/, LLMInt8 };
// Why the backends' batch-invariant mode refuses LLMInt8.
inline constexpr const char* kLlmInt8DependsOnTheBatch =
    "--batch-invariant: LLM.int8 picks its outlier columns over the whole batch (as bitsandbytes does), so its "
    "products depend on the batch; int8 (weight-only) and nf4 do not";

struct QuantOptions {
  Scheme scheme = Scheme::NF4;  // the study's 4-bit scheme; never left undefined
  int blocksize = 64;  // 4-bit schemes only
  bool double_quant = true;
  float llm_int8_threshold = 6.0f;  // LLMInt8 only; 0 = plain W8A8
  // bitsandbytes' compute dtype: activations enter and results leave each quantized product rounded to it
  // (F16 in the study). F32 keeps them exact.
  DType compute = DType::F32;
  bool quantize_lm_head = false;  // bitsandbytes keeps lm_head 16-bit; this quantizes it too
};

// A quantized [rows=out, cols=in] weight matrix in bitsandbytes' layout (so it serializes byte-exactly).
struct QuantizedMatrix {
  Scheme scheme = Scheme::NF4;
  int64_t rows = 0, cols = 0;
  int blocksize = 64;
  bool double_quant = false;
  float threshold = 0;                // LLMInt8 outlier threshold
  DType compute = DType::F32;         // F16 / BF16: matmul rounds its input and output to it
  std::vector<uint8_t> packed;        // 4-bit: (numel+1)/2 bytes, even element in the HIGH nibble
  std::vector<float> absmax;          // 4-bit without double quant (fp32 per block)
  std::vector<uint8_t> absmax_q;      // 4-bit with double quant: uint8 code per block
  std::vector<float> absmax2;         // per 256-block of absmax (nested_absmax)
  float offset = 0;                   // nested_offset
  std::vector<int8_t> cb;             // 8-bit codes, row-major [rows, cols]
  std::vector<float> scb;             // 8-bit per-row scale (max |W[row, :]|)
  size_t bytes() const;               // bytes actually held (for memory reports)
  int64_t numel() const { return rows * cols; }
  int64_t num_blocks() const { return (numel() + blocksize - 1) / blocksize; }
  float block_absmax(int64_t block) const;  // fp32 absmax of one 4-bit block, undoing double quant
};

constexpr int kNestedBlocksize = 256;  // blocksize of the double quantization (fixed in bitsandbytes)

// Quantizes a row-major [rows, cols] weight of dtype BF16, F16 or F32; inf/NaN weights are an error. Maxima come from those values (as
// bitsandbytes quantizes the 16-bit tensor). One matrix at a time, no global state.
QuantizedMatrix quantize(const void* w, DType dtype, int64_t rows, int64_t cols, const QuantOptions& opt);

// Bytes quantize(rows x cols, opt).bytes() will hold, from the shape alone (memory reports of 70B models).
size_t quantized_bytes(int64_t rows, int64_t cols, const QuantOptions& opt);

// Rows [row0, row0 + rows) as a matrix of their own (phi3's fused qkv_proj / gate_up_proj, quantized as stored and
// used as separate projections). 4-bit: the range must start and end on block boundaries, and double-quantized
// maxima are resolved to their exact fp32 values (absmax, double_quant = false), so products are unchanged.
QuantizedMatrix slice_rows(const QuantizedMatrix& q, int64_t row0, int64_t rows);

// Plain reference dequantization into rows*cols floats: code[idx] * absmax[block] (4-bit), CB * SCB / 127 (8-bit).
void dequantize(const QuantizedMatrix& q, float* out);

std::array<float, 16> code4(Scheme s);            // NF4 / FP4 codebooks (bitsandbytes' quant_map)
const std::array<float, 256>& dynamic_map_signed();  // bitsandbytes' signed 8-bit dynamic map (exact)

// Index of the 4-bit code for a value already scaled into [-1, 1] (bitsandbytes' decision-tree thresholds).
uint8_t quantize4_index(Scheme s, float normalized);
// Index of the nearest entry of the signed dynamic map (ties to the lower index), for double quantization.
uint8_t dynamic_map_index(float normalized);
// round_half_to_even(v * 127 / scale), computed exactly (|v| <= scale); 0 when scale is 0.
int8_t quantize_int8(float v, float scale);

// Serialized (transformers + bitsandbytes) layout: the tensors stored for a linear whose weight is
// `prefix.weight` (4-bit: weight, absmax, quant_map, [nested_absmax, nested_quant_map], quant_state JSON;
// 8-bit: weight, SCB, weight_format).
struct NamedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
std::vector<NamedTensor> to_bnb_tensors(const QuantizedMatrix& q, const std::string& prefix, DType orig_dtype);

// Inverse of to_bnb_tensors, for pre-quantized checkpoints. `get` returns nullptr for an absent tensor.
// An 8-bit checkpoint loads as LLMInt8 with `llm_int8_threshold` (set scheme = Int8 afterwards for weight-only).
// Errors name `origin_for_errors` (e.g. the checkpoint file) and the tensor.
struct TensorRef {
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data;
  size_t nbytes;
};
QuantizedMatrix from_bnb_tensors(const std::string& prefix,
                                 const std::function<const TensorRef*(const std::string&)>& get,
                                 const std::string& origin_for_errors, float llm_int8_threshold = 6.0f);

// config.json's "quantization_config" for these options (compute_dtype e.g. "float16").
// The compute dtype written is opt.compute's ("float16", "bfloat16" or "float32").
nlohmann::json bnb_quantization_config(const QuantOptions& opt);

bool is_4bit(Scheme s);  // NF4 or FP4

}  // namespace bq::quant
