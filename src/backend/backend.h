// Picks the forward backend for --device cpu|cuda.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/stages.h"
#include "backend/forward.h"
#include "model/model.h"

namespace bq {

namespace plan {
struct PlanRequest;
}

// "cpu" or "cuda"; "cuda" in a build without -DBIOMEDQ_CUDA=ON, or with no GPU present, is a bq::Error saying so.
// `stages`: the CUDA layer pipeline (none: all layers on the current device). The model must outlive the backend.
std::unique_ptr<ForwardBackend> make_forward(const Model& m, const std::string& device,
                                             const std::vector<CudaStage>& stages = {});

// The CUDA pipeline for --devices TEXT ("0,1", "all", "0,0") and the model and workload of `r`: the memory
// planner's split over each listed device's free memory now (plan_stages). A bq::Error in a build without CUDA.
std::vector<CudaStage> cuda_stages_for(const std::string& devices, const plan::PlanRequest& r);

}  // namespace bq
