// libFuzzer target: arbitrary bytes as a run's samples.jsonl, read back as a resumed run reads it (without
// repairing the file). Only bq::Error may escape.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "eval/run.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path file =
      std::filesystem::temp_directory_path() / ("fuzz-samples-" + std::to_string(::getpid()) + ".jsonl");
  std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(data), std::streamsize(size));
  try {
    (void)bq::eval::read_samples(file, false);
  } catch (const bq::Error&) {
  }
  return 0;
}
