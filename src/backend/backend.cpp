#include "backend/backend.h"

#include "core/error.h"
#ifdef BIOMEDQ_HAVE_CUDA
#include "backend/cuda/cuda_forward.h"
#endif

namespace bq {

std::unique_ptr<ForwardBackend> make_forward(const Model& m, const std::string& device) {
  if (device == "cpu") return std::make_unique<CpuForward>(m);
  if (device == "cuda") {
#ifdef BIOMEDQ_HAVE_CUDA
    return std::make_unique<CudaForward>(m);
#else
    fail("--device cuda needs a build with CUDA: cmake -DBIOMEDQ_CUDA=ON");
#endif
  }
  fail("--device: unknown device '{}' (cpu, cuda)", device);
}

}  // namespace bq
