// The layer pipeline's plain C++ parts, without a GPU: stage lists checked, --devices parsed, and the stages the
// memory planner's split gives for the listed devices.
#include <gtest/gtest.h>

#include "backend/stages.h"
#include "core/error.h"
#include "plan/memory_planner.h"
#include "plan_test_util.h"
#include "test_util.h"

namespace bq {
namespace {

using test::error_of;

TEST(PipelineStages, ValidStagesPass) {
  EXPECT_NO_THROW(validate_stages(4, 1, {{0, 0, 4}}));
  EXPECT_NO_THROW(validate_stages(4, 1, {{0, 0, 1}, {0, 1, 3}, {0, 3, 4}}));  // one device, three stages
  EXPECT_NO_THROW(validate_stages(80, 3, {{2, 0, 30}, {0, 30, 55}, {1, 55, 80}}));
}

TEST(PipelineStages, InvalidStagesAreNamed) {
  auto check = [](int layers, int devices, const std::vector<PipelineStage>& stages, const std::string& part) {
    const std::string m = error_of([&] { validate_stages(layers, devices, stages); });
    EXPECT_NE(m.find(part), std::string::npos) << "'" << m << "' lacks '" << part << "'";
  };
  check(4, 1, {}, "none given");
  check(4, 1, {{0, 1, 4}}, "stage 0 starts at layer 1, not at layer 0");
  check(4, 1, {{0, 0, 2}, {0, 3, 4}}, "stage 1 starts at layer 3, not at layer 2");  // a gap
  check(4, 1, {{0, 0, 3}, {0, 2, 4}}, "stage 1 starts at layer 2, not at layer 3");  // an overlap
  check(4, 1, {{0, 0, 2}, {0, 2, 2}, {0, 2, 4}}, "stage 1 holds no layer");
  check(4, 1, {{0, 0, 3}}, "the stages end at layer 3, the model has 4 layers");
  check(4, 1, {{0, 0, 5}}, "the stages end at layer 5, the model has 4 layers");
  check(4, 2, {{0, 0, 2}, {2, 2, 4}}, "stage 1 is on device 2, but the devices are 0..1");
  check(4, 2, {{-1, 0, 4}}, "stage 0 is on device -1");
}

TEST(PipelineStages, ParsesDeviceLists) {
  EXPECT_EQ(parse_device_list("0", 1), std::vector<int>({0}));
  EXPECT_EQ(parse_device_list("0,1,2", 4), std::vector<int>({0, 1, 2}));
  EXPECT_EQ(parse_device_list("2,0", 4), std::vector<int>({2, 0}));
  EXPECT_EQ(parse_device_list("0,0", 1), std::vector<int>({0, 0}));  // two stages on one GPU
  EXPECT_EQ(parse_device_list("all", 3), std::vector<int>({0, 1, 2}));
  for (const char* bad : {"", ",", "0,", ",1", "0,,1", "a", "-1", "1.5", " 0", "0 ", "0;1", "x,1", "9999999"}) {
    const std::string m = error_of([&] { parse_device_list(bad, 4); });
    EXPECT_NE(m.find("--devices"), std::string::npos) << "'" << bad << "': " << m;
    EXPECT_NE(m.find("is not a device id"), std::string::npos) << "'" << bad << "': " << m;
  }
  EXPECT_NE(error_of([] { parse_device_list("0,4", 4); }).find("--devices '0,4': there is no device 4 (4 visible"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_device_list("all", 0); }).find("no CUDA device is visible"), std::string::npos);
  EXPECT_NE(error_of([] { parse_device_list("0", 0); }).find("--devices '0'"), std::string::npos);
}

// The stages follow the planner's split: every layer once, in order, the larger memory taking more layers; a
// device listed twice shares its memory between its listings.
TEST(PipelineStages, PlannedFromFreeMemory) {
  const size_t gib = size_t(1) << 30;
  auto r = test::request_70b_bf16();
  auto stages = plan::plan_stages(r, {1, 0}, {120 * gib, 60 * gib});
  ASSERT_EQ(stages.size(), 2u);
  EXPECT_EQ(stages[0].device, 1);
  EXPECT_EQ(stages[1].device, 0);
  EXPECT_GT(stages[0].end_layer - stages[0].first_layer, stages[1].end_layer - stages[1].first_layer);
  EXPECT_NO_THROW(validate_stages(r.config.n_layers, 2, stages));

  r.device_memory = {120 * gib, 60 * gib};  // the same split as plan --device-memory gives
  auto e = plan::plan_memory(r);
  EXPECT_EQ(stages[1].first_layer, e.split[1].first_layer);

  // One GPU of 200 GiB free listed twice: two stages of 100 GiB each, about half the layers each.
  auto twice = plan::plan_stages(test::request_70b_bf16(), {0, 0}, {200 * gib, 200 * gib});
  ASSERT_EQ(twice.size(), 2u);
  EXPECT_EQ(twice[0].device, 0);
  EXPECT_EQ(twice[1].device, 0);
  EXPECT_NO_THROW(validate_stages(80, 1, twice));
  EXPECT_NEAR(twice[0].end_layer - twice[0].first_layer, 40, 2);
  EXPECT_NE(error_of([] { plan::plan_stages(test::request_70b_bf16(), {0, 0}, {100 * gib, 100 * gib}); }).find("--devices"),
            std::string::npos);  // 141 GB of bf16 weights in 50 + 50 GiB

  // One device: all layers, whatever its memory (as without --devices).
  auto one = plan::plan_stages(test::request_70b_bf16(), {3}, {1 * gib});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].device, 3);
  EXPECT_EQ(one[0].first_layer, 0);
  EXPECT_EQ(one[0].end_layer, 80);

  plan::PlanRequest tiny;
  tiny.config = preset_config("tiny");  // two layers
  tiny.precision = &bq::quant::precision_named("bf16");
  EXPECT_NE(error_of([&] { plan::plan_stages(tiny, {0, 1, 2}, {gib, gib, gib}); }).find("more than the model's 2"),
            std::string::npos);
  auto small = plan::plan_stages(tiny, {0, 1}, {gib, gib});
  ASSERT_EQ(small.size(), 2u);
  EXPECT_EQ(small[0].end_layer, 1);
}

// A device too full for any layer is left out, unless it is the last (it would have held lm_head).
TEST(PipelineStages, DeviceWithoutRoomIsLeftOut) {
  const size_t gib = size_t(1) << 30;
  auto r = test::request_70b_bf16();
  r.precision = &bq::quant::precision_named("nf4");
  auto stages = plan::plan_stages(r, {0, 1, 2}, {1 * gib, 100 * gib, 100 * gib});
  ASSERT_EQ(stages.size(), 2u);
  EXPECT_EQ(stages[0].device, 1);
  EXPECT_EQ(stages[0].first_layer, 0);
  EXPECT_EQ(stages[1].device, 2);
  EXPECT_NO_THROW(validate_stages(80, 3, stages));
  EXPECT_NE(error_of([&] { plan::plan_stages(r, {1, 2, 0}, {100 * gib, 100 * gib, 1 * gib}); }).find("list it earlier"),
            std::string::npos);
}

}  // namespace
}  // namespace bq
