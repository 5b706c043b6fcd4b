// The model an evaluation runs, as `eval` and sweep cells name it: a checkpoint folder, or a synthetic preset (random
// weights, for timing) with an optional real tokenizer; loaded, and described for the run folder.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <string>

#include "generate/engine.h"

namespace bq::eval {

struct ModelSource {
  std::filesystem::path checkpoint;  // a Hugging Face checkpoint folder, or
  std::string synthetic;             // a preset's name
  uint64_t synthetic_seed = 0;
  std::filesystem::path tokenizer;   // with synthetic: a real tokenizer's folder ("" = the synthetic one)
  std::string devices;               // cuda: GPUs to split the layers over ("" = the current one)
};

// Seconds loading took: hashing a checkpoint's files, then building the engine (reading, quantizing, putting the
// weights on the device, the tokenizer). results.json records them (throughput.model_load).
struct LoadTimes {
  double content_hash_s = 0, engine_s = 0;
  nlohmann::json to_json() const;
};

// Loads the model: the precision resolved against a checkpoint's stored format, pipeline stages planned for `batch`
// sequences when `devices` is given. Fills `model_info` with what config.json records of it (path and content hash,
// or preset and seed; architecture, chat template hash, device and precision as used), and `times` when given.
std::unique_ptr<Engine> open_model(const ModelSource& source, EngineOptions options, int batch,
                                   nlohmann::json& model_info, LoadTimes* times = nullptr);

// sha256 over the names and sha256s of a checkpoint folder's weight, config and tokenizer files (sorted by name):
// two runs with the same hash evaluated the same model, whatever its path.
std::string checkpoint_sha256(const std::filesystem::path& dir);

}  // namespace bq::eval
