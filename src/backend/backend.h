// Picks the forward backend for --device cpu|cuda.
#pragma once
#include <memory>
#include <string>

#include "model/forward.h"

namespace bq {

// "cpu" or "cuda"; "cuda" in a build without -DBIOMEDQ_CUDA=ON, or with no GPU present, is a bq::Error saying so.
// The model must outlive the backend.
std::unique_ptr<ForwardBackend> make_forward(const Model& m, const std::string& device);

}  // namespace bq
