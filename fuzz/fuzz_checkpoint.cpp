// libFuzzer target: a sharded checkpoint folder from arbitrary bytes, loaded as a model. The input is split at
// "@@BQ@@" into model.safetensors.index.json, two shards and config.json (missing parts: empty files). Checkpoint
// opening, the config's validation against the tensors and the weights' binding may only throw bq::Error.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "core/error.h"
#include "model/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  static const fs::path dir = fs::temp_directory_path() / ("fuzz-checkpoint-" + std::to_string(::getpid()));
  static const char* names[] = {"model.safetensors.index.json", "model-00001-of-00002.safetensors",
                                "model-00002-of-00002.safetensors", "config.json"};
  fs::create_directories(dir);
  std::string_view input(reinterpret_cast<const char*>(data), size);
  for (const char* name : names) {
    size_t cut = input.find("@@BQ@@");
    std::string_view part = input.substr(0, cut);
    std::ofstream(dir / name, std::ios::binary).write(part.data(), std::streamsize(part.size()));
    input = cut == std::string_view::npos ? std::string_view() : input.substr(cut + 6);
  }
  try {
    (void)bq::load_model(dir);
  } catch (const bq::Error&) {
  }
  return 0;
}
