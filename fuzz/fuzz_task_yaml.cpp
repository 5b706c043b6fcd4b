// libFuzzer target: arbitrary bytes as a task YAML file. Only bq::Error may escape (yaml-cpp's own exceptions
// must have been turned into errors naming the file).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "eval/task.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)bq::eval::parse_task_yaml(std::string(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
  } catch (const bq::Error&) {
  }
  return 0;
}
