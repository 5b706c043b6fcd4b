#include "backend/stages.h"

#include <cctype>

#include "core/error.h"

namespace bq {

void validate_stages(int n_layers, int device_count, const std::vector<PipelineStage>& stages) {
  if (stages.empty()) fail("CUDA stages: none given");
  int next = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    const PipelineStage& s = stages[i];
    if (s.device < 0 || s.device >= device_count)
      fail("CUDA stages: stage {} is on device {}, but the devices are 0..{}", i, s.device, device_count - 1);
    if (s.first_layer != next)
      fail("CUDA stages: stage {} starts at layer {}, not at layer {} where the stage before ends", i, s.first_layer,
           next);
    if (s.end_layer <= s.first_layer)
      fail("CUDA stages: stage {} holds no layer ([{}, {}))", i, s.first_layer, s.end_layer);
    next = s.end_layer;
  }
  if (next != n_layers) fail("CUDA stages: the stages end at layer {}, the model has {} layers", next, n_layers);
}

std::vector<int> parse_device_list(const std::string& text, int device_count) {
  std::vector<int> out;
  if (device_count <= 0) fail("--devices '{}': no CUDA device is visible", text);
  if (text == "all") {
    for (int d = 0; d < device_count; ++d) out.push_back(d);
    return out;
  }
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    bool digits = !item.empty() && item.size() <= 6;
    for (char ch : item) digits &= std::isdigit(static_cast<unsigned char>(ch)) != 0;
    if (!digits) fail("--devices '{}': '{}' is not a device id (a list like 0,1,2, or all)", text, item);
    const int id = std::stoi(item);
    if (id >= device_count)
      fail("--devices '{}': there is no device {} ({} visible: 0..{})", text, id, device_count, device_count - 1);
    out.push_back(id);
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

}  // namespace bq
