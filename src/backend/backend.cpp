#include "backend/backend.h"

#include "backend/cpu/cpu_forward.h"
#include "core/error.h"
#ifdef BIOMEDQ_HAVE_CUDA
#include "backend/cuda/allocator.h"
#include "backend/cuda/cuda_forward.h"
#endif

namespace bq {

std::unique_ptr<ForwardBackend> make_forward(const Model& m, const std::string& device,
                                             const std::vector<CudaStage>& stages) {
  if (!stages.empty() && device != "cuda") fail("--devices applies to --device cuda only");
  if (device == "cpu") return std::make_unique<CpuForward>(m);
  if (device == "cuda") {
#ifdef BIOMEDQ_HAVE_CUDA
    return std::make_unique<CudaForward>(m, stages);
#else
    fail("--device cuda needs a build with CUDA: cmake -DBIOMEDQ_CUDA=ON");
#endif
  }
  fail("--device: unknown device '{}' (cpu, cuda)", device);
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
