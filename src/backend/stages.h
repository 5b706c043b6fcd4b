// A layer pipeline over devices: each stage holds a contiguous range of decoder layers on one device, several stages
// may share a device. Plain C++: the CLI and the planner make stages, the CUDA forward takes them.
#pragma once
#include <string>
#include <vector>

namespace bq {

struct PipelineStage {
  int device = 0;
  int first_layer = 0, end_layer = 0;  // layers [first_layer, end_layer)
};

// Stages that cover layers 0..n_layers in order, each at least one layer, on devices 0..device_count-1; anything
// else is a bq::Error naming the problem.
void validate_stages(int n_layers, int device_count, const std::vector<PipelineStage>& stages);

// --devices: "0,2,3" (ids, repeats allowed: "0,0" runs two stages on one GPU) or "all" (every visible device, in
// order); an id outside 0..device_count-1 or anything not a number is a bq::Error naming --devices.
std::vector<int> parse_device_list(const std::string& text, int device_count);

}  // namespace bq
