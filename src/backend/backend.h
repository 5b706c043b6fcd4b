// Picks the forward backend for --device cpu|cuda.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/stages.h"
#include "backend/forward.h"
#include "model/model.h"
#include "quant/quant.h"

namespace bq {

// "cpu" or "cuda"; "cuda" in a build without -DBIOMEDQ_CUDA=ON, or with no GPU present, is a bq::Error saying so.
// `stages`: the CUDA layer pipeline (none: all layers on the current device). The model must outlive the backend.
std::unique_ptr<ForwardBackend> make_forward(const Model& m, const std::string& device,
                                             const std::vector<PipelineStage>& stages = {});

// Random weights of config `c` (quantized as `quant` says) where `device` keeps its weights: a GPU draws them on
// the device, so that a 70B shape needs no host memory; the CPU backend's are made in `host`, which must outlive
// the backend (it stays empty on a GPU).
std::unique_ptr<ForwardBackend> make_synthetic_forward(const ModelConfig& c,
                                                       const std::optional<quant::QuantOptions>& quant, uint64_t seed,
                                                       const std::string& device,
                                                       const std::vector<PipelineStage>& stages, Model& host);

// The two ceilings a benchmark compares against, measured now on the device that runs (the first stage's GPU):
// copy bandwidth (bytes read plus written, GB/s) and the rate of a large matrix product (TFLOP/s) in the dtype the
// backend's prefill uses: cuBLAS bf16 on a GPU, OpenBLAS fp32 on the CPU.
struct Ceilings {
  double copy_gbs = 0, gemm_tflops = 0;
  std::string gemm;  // what gemm_tflops measured
};
Ceilings measure_ceilings(const std::string& device, const std::vector<PipelineStage>& stages);

// Peak memory counts from now on (the tracked allocator's, and on a GPU the device's own).
void reset_peak_memory(const std::string& device);

// GPU: whether the kernels of a pass are launched with programmatic dependent launch (default on).
void set_programmatic_launch(bool on);
// Batch-invariant products and attention on both backends (--batch-invariant; cpu/ops.h and cuda/ops.h say how): a
// row's results, and so greedy answers, do not depend on the other rows of its step (batch size, prefix reuse,
// chunked prefill). Off by default: large prefill steps run slower. Process-wide.
void set_batch_invariant(bool on);
bool batch_invariant();
// GPU: whether quantized products of 17..64 tokens take the tiled tensor-core kernel (cuda::set_tc_gemm; on
// unless BIOMEDQ_TC_GEMM=0). Recorded with benchmark results.
bool tiled_tc_products();
// GPU: blocks a multiprocessor keeps in the tiled kernel's launches of up to 32 tokens (cuda::set_tc_gemm_blocks; 1
// unless BIOMEDQ_TC_GEMM_BLOCKS=2). Recorded with benchmark results.
int tiled_tc_blocks();

// The devices of --devices TEXT ("0,1", "all", "0,0": parse_device_list) in the order listed, with the bytes free
// on each now (the memory planner splits the layers over them). A bq::Error in a build without CUDA.
struct ListedDevices {
  std::vector<int> ids;
  std::vector<size_t> free_bytes;
};
ListedDevices cuda_free_memory(const std::string& devices);

}  // namespace bq
