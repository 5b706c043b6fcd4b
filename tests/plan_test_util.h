// A planner request the split tests share: llama-3.3-70b in bf16, 4,096 positions, 512-token prompts.
#pragma once
#include "model/config.h"
#include "plan/memory_planner.h"

namespace bq::test {

inline plan::PlanRequest request_70b_bf16() {
  plan::PlanRequest r;
  r.config = preset_config("llama-3.3-70b");
  r.model_label = "llama-3.3-70b";
  r.precision = &bq::quant::precision_named("bf16");
  r.context = 4096;
  r.prompt = 512;
  return r;
}

}  // namespace bq::test
