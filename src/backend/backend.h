// Picks the forward backend for --device cpu|cuda.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/stages.h"
#include "backend/forward.h"
#include "model/model.h"

namespace bq {

// "cpu" or "cuda"; "cuda" in a build without -DBIOMEDQ_CUDA=ON, or with no GPU present, is a bq::Error saying so.
// `stages`: the CUDA layer pipeline (none: all layers on the current device). The model must outlive the backend.
std::unique_ptr<ForwardBackend> make_forward(const Model& m, const std::string& device,
                                             const std::vector<CudaStage>& stages = {});

// The devices of --devices TEXT ("0,1", "all", "0,0": parse_device_list) in the order listed, with the bytes free
// on each now (the memory planner splits the layers over them). A bq::Error in a build without CUDA.
struct ListedDevices {
  std::vector<int> ids;
  std::vector<size_t> free_bytes;
};
ListedDevices cuda_free_memory(const std::string& devices);

}  // namespace bq
