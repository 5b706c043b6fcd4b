#include <gtest/gtest.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_forward.h"
#include "core/error.h"
#ifdef BIOMEDQ_HAVE_CUDA
#include "backend/cuda/allocator.h"
#endif

namespace bq {
namespace {

TEST(Backend, PicksDeviceOrSaysWhy) {
  Model m = synthesize_model(preset_config("tiny"), 1);
  EXPECT_NE(dynamic_cast<CpuForward*>(make_forward(m, "cpu").get()), nullptr);
  try {
    make_forward(m, "tpu");
    FAIL() << "unknown device accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown device 'tpu'"), std::string::npos);
  }
  try {
    make_forward(m, "cpu", {{0, 0, 2}});
    FAIL() << "a CUDA pipeline accepted for the CPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--devices applies to --device cuda only"), std::string::npos);
  }
#ifdef BIOMEDQ_HAVE_CUDA
  if (cuda::device_count() > 0) {
    EXPECT_NE(make_forward(m, "cuda"), nullptr);
  }
#else
  try {
    make_forward(m, "cuda");
    FAIL() << "cuda accepted without a CUDA build";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-DBIOMEDQ_CUDA=ON"), std::string::npos);
  }
#endif
}

}  // namespace
}  // namespace bq
