#include <gtest/gtest.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_forward.h"
#include "core/error.h"
#include "test_util.h"
#ifdef BIOMEDQ_HAVE_CUDA
#include "backend/cuda/allocator.h"
#endif

namespace bq {
namespace {

// The batch checks both forwards share: positions follow each sequence's fill, and each bad batch names its fault.
TEST(Backend, RowPositionsFollowTheCachesAndNameBadRows) {
  const std::vector<CacheFill> caches = {{true, 3, 8}, {false, 0, 0}, {true, 0, 2}};
  ForwardBatch b{{5, 6, 7, 8}, {0, 2, 0, 2}, {1, 3}};
  EXPECT_EQ(row_positions(b, caches, 10), (std::vector<int>{3, 0, 4, 1}));
  auto error = [&](ForwardBatch bad) { return test::error_of([&] { row_positions(bad, caches, 10); }); };
  EXPECT_NE(error({{5}, {1}, {}}).find("row 0 names no open sequence (1)"), std::string::npos);
  EXPECT_NE(error({{5}, {3}, {}}).find("row 0 names no open sequence (3)"), std::string::npos);
  EXPECT_NE(error({{5, 6, 7}, {2, 2, 2}, {}}).find("sequence 2 is full (2 positions)"), std::string::npos);
  EXPECT_NE(error({{10}, {0}, {}}).find("token id 10 outside the vocabulary of 10"), std::string::npos);
  EXPECT_NE(error({{1}, {0}, {1}}).find("logit row 1 outside the batch of 1"), std::string::npos);
  EXPECT_NE(error({{1, 2}, {0}, {}}).find("tokens and seq differ in length"), std::string::npos);
}

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
