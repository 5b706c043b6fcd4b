#include "backend/backend.h"

#include "backend/cpu/ceilings.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/cpu_forward.h"
#include "core/error.h"
#include "core/host_memory.h"
#include "model/quantize_model.h"
#ifdef BIOMEDQ_HAVE_CUDA
#include "backend/cuda/allocator.h"
#include "backend/cuda/ceilings.h"
#include "backend/cuda/cuda_forward.h"
#include "backend/cuda/ops.h"
#endif

namespace bq {

namespace {

[[noreturn]] void no_backend(const std::string& device) {
  if (device == "cuda") fail("--device cuda needs a build with CUDA: cmake -DBIOMEDQ_CUDA=ON");
  fail("--device: unknown device '{}' (cpu, cuda)", device);
}

}  // namespace

std::unique_ptr<ForwardBackend> make_forward(const Model& m, const std::string& device,
                                             const std::vector<PipelineStage>& stages) {
  if (!stages.empty() && device != "cuda") fail("--devices applies to --device cuda only");
  if (device == "cpu") return std::make_unique<CpuForward>(m);
#ifdef BIOMEDQ_HAVE_CUDA
  if (device == "cuda") return std::make_unique<CudaForward>(m, stages);
#endif
  no_backend(device);
}

std::unique_ptr<ForwardBackend> make_synthetic_forward(const ModelConfig& c,
                                                       const std::optional<quant::QuantOptions>& quant, uint64_t seed,
                                                       const std::string& device,
                                                       const std::vector<PipelineStage>& stages, Model& host) {
#ifdef BIOMEDQ_HAVE_CUDA
  if (device == "cuda") return CudaForward::synthetic(c, quant, seed, stages);
#endif
  if (device == "cpu") {
    host = synthesize_model(c, seed);
    if (quant) quantize_model(host, *quant);
  }
  return make_forward(host, device, stages);  // the errors for other devices and builds
}

Ceilings measure_ceilings(const std::string& device, const std::vector<PipelineStage>& stages) {
  if (device == "cpu") return {cpu::measure_copy_gbs(), cpu::measure_gemm_tflops(), "OpenBLAS fp32"};
#ifdef BIOMEDQ_HAVE_CUDA
  if (device == "cuda") {
    if (cuda::device_count() == 0) fail("--device cuda: no CUDA device is available");
    cuda::DeviceGuard on(stages.empty() ? cuda::current_device() : stages.front().device);
    return {cuda::measure_copy_gbs(), cuda::measure_gemm_tflops(), "cuBLAS bf16"};
  }
#endif
  (void)stages;
  no_backend(device);
}

void reset_peak_memory(const std::string& device) {
  host_memory::reset_peak();
#ifdef BIOMEDQ_HAVE_CUDA
  if (device == "cuda") cuda::reset_peak_memory();
#else
  (void)device;
#endif
}

void set_programmatic_launch(bool on) {
#ifdef BIOMEDQ_HAVE_CUDA
  cuda::set_programmatic_launch(on);
#else
  (void)on;
#endif
}

void set_batch_invariant(bool on) {
  cpu::set_batch_invariant(on);
#ifdef BIOMEDQ_HAVE_CUDA
  cuda::set_batch_invariant(on);
#endif
}

bool batch_invariant() { return cpu::batch_invariant(); }

bool tiled_tc_products() {
#ifdef BIOMEDQ_HAVE_CUDA
  return cuda::tc_gemm_enabled();
#else
  return false;
#endif
}

int tiled_tc_blocks() {
#ifdef BIOMEDQ_HAVE_CUDA
  return cuda::tc_gemm_blocks();
#else
  return 0;
#endif
}

ListedDevices cuda_free_memory(const std::string& devices) {
#ifdef BIOMEDQ_HAVE_CUDA
  ListedDevices listed;
  listed.ids = parse_device_list(devices, cuda::device_count());
  for (int id : listed.ids) listed.free_bytes.push_back(cuda::device_free_bytes(id));
  return listed;
#else
  fail("--devices {}: needs a build with CUDA: cmake -DBIOMEDQ_CUDA=ON", devices);
#endif
}

}  // namespace bq
