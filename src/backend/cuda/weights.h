// Weights on the device: the one mapping from a host Linear (bf16/f16/f32, or a bitsandbytes QuantizedMatrix) to
// the DeviceWeight the kernels read, used by CudaForward and by the kernel tests alike; and random weights drawn on
// the device in the same layouts, for benchmarks of real shapes.
#pragma once
#include <cuda_runtime.h>

#include <optional>
#include <string>
#include <vector>

#include "backend/cuda/allocator.h"
#include "backend/cuda/check.h"
#include "backend/cuda/ops.h"
#include "model/model.h"
#include "quant/quant.h"

namespace bq::cuda {

// The lookup tables the 4-bit kernels read: NF4 and FP4 code values, bitsandbytes' signed dynamic map.
struct CodeTables {
  DeviceArray<float> nf4, fp4, dynamic_map;
  static CodeTables upload();
};

// One linear layer: the kernels' view (w) and the buffers it points into.
struct DevLinear {
  DeviceWeight w;
  std::vector<DeviceArray<uint8_t>> bufs;
  DeviceArray<float> bias;
  size_t bytes() const;
};

struct DevLayer {
  DeviceArray<float> attn_norm, mlp_norm;
  DeviceArray<float> q_norm, k_norm;  // qk_norm only
  DeviceArray<float> post_attn_norm, post_mlp_norm;  // sandwich_norms only
  DevLinear q, k, v, o, gate, up, down;
  bool quantized() const;  // any linear not bf16
  size_t bytes() const;
  size_t linear_bytes() const;  // what a decode step reads of it
};

// 16-bit and fp32 weights become bf16; quantized ones (Linear::q) keep their packed format. `name` labels the
// allocations (out-of-memory errors name them).
DevLinear upload_linear(const Linear& l, const CodeTables& tables, const std::string& name);
DevLayer upload_layer(const Layer& l, const CodeTables& tables, int index);

// Random weights: bf16 normal(0, 0.02), or random codes and scales in the layout of `quant`. Norms are ones.
DevLinear synthetic_linear(int64_t out, int64_t in, const std::optional<quant::QuantOptions>& quant, uint64_t seed,
                           const CodeTables& tables, const std::string& name, cudaStream_t st);
// Layer `index`'s weights depend on (seed, index) only, so a layer is the same whichever stage draws it.
DevLayer synthetic_layer(const ModelConfig& c, const std::optional<quant::QuantOptions>& quant, uint64_t seed,
                         const CodeTables& tables, int index, cudaStream_t st);
// lm_head, quantized only with quant->quantize_lm_head.
DevLinear synthetic_lm_head(const ModelConfig& c, const std::optional<quant::QuantOptions>& quant, uint64_t seed,
                            const CodeTables& tables, cudaStream_t st);

template <typename T>
DeviceArray<T> upload(const T* host, size_t n, const std::string& what) {
  DeviceArray<T> d(n, what);
  if (n) BQ_CUDA(cudaMemcpy(d.get(), host, n * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

DeviceArray<float> ones(size_t n, const std::string& what);

}  // namespace bq::cuda
