#include "eval/open_model.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <thread>

#include "core/error.h"
#include "eval/task.h"
#include "model/config.h"
#include "model/quantize_checkpoint.h"
#include "model/quantize_model.h"
#include "plan/memory_planner.h"

namespace bq::eval {

namespace fs = std::filesystem;

std::string checkpoint_sha256(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string f = e.path().filename().string();
    if (e.is_regular_file() && (f.ends_with(".safetensors") || f.ends_with(".json"))) names.push_back(f);
  }
  std::sort(names.begin(), names.end());
  // The files on several threads at once: an 8B checkpoint's 16 GB of shards take about 9 s on one core (SHA-256
  // at 1.8 GB/s) and a quarter of that on four.
  std::vector<std::string> hashes(names.size());
  std::vector<std::exception_ptr> errors(names.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next++) < names.size();) {
      try {
        hashes[i] = sha256_file(dir / names[i]);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  };
  const size_t threads = std::min<size_t>(names.size(), std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  std::string listing;
  for (size_t i = 0; i < names.size(); ++i) listing += names[i] + '\0' + hashes[i] + '\n';
  return sha256_hex(listing);
}

nlohmann::json LoadTimes::to_json() const {
  return {{"content_hash_s", content_hash_s}, {"engine_s", engine_s}, {"total_s", content_hash_s + engine_s}};
}

std::unique_ptr<Engine> open_model(const ModelSource& source, EngineOptions options, int batch,
                                   nlohmann::json& model_info, LoadTimes* times) {
  auto since = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const bool synthetic = !source.synthetic.empty();
  if (synthetic == !source.checkpoint.empty()) fail("give a checkpoint folder or a synthetic preset, one of them");
  if (!synthetic)  // the stored format decides the precision the run is planned and recorded at
    static_cast<PrecisionOptions&>(options) =
        resolve_precision(options, checkpoint_quantization(source.checkpoint), source.checkpoint.string());
  if (!source.devices.empty()) {  // planned for `batch` sequences of the model's context (at most 4096 positions)
    if (options.device != "cuda") fail("--devices applies to --device cuda only");
    plan::PlanRequest r;
    static_cast<PrecisionOptions&>(r) = options;
    r.config = synthetic ? preset_config(source.synthetic) : load_model_config(source.checkpoint);
    r.model_label = synthetic ? source.synthetic : source.checkpoint.string();
    if (!synthetic) r.checkpoint = source.checkpoint;
    r.batch = batch;
    r.batch_invariant = options.batch_invariant;
    options.stages = plan::pipeline_stages_for(source.devices, r);
  }
  std::unique_ptr<Engine> engine;
  LoadTimes t;
  auto t0 = std::chrono::steady_clock::now();
  if (synthetic) {
    engine = Engine::synthetic(source.synthetic, source.synthetic_seed, options, source.tokenizer.string());
    t.engine_s = since(t0);
    model_info = {{"synthetic", source.synthetic}, {"seed", source.synthetic_seed}};
    if (!source.tokenizer.empty())
      model_info["tokenizer"] = fs::absolute(source.tokenizer).lexically_normal().string();
  } else {
    engine = std::make_unique<Engine>(source.checkpoint, options);
    t.engine_s = since(t0);
    t0 = std::chrono::steady_clock::now();
    model_info = {{"path", fs::absolute(source.checkpoint).string()},
                  {"content_sha256", checkpoint_sha256(source.checkpoint)}};
    t.content_hash_s = since(t0);
  }
  if (times) *times = t;
  const EngineOptions& used = engine->options();
  model_info.update({{"arch", engine->model().cfg.arch},
                     {"chat_template_sha256", sha256_hex(engine->tokenizer().chat_template())},
                     {"device", used.device},
                     {"precision", used.precision->name},
                     {"double_quant", used.double_quant},
                     {"blocksize", used.blocksize},
                     {"compute_dtype", used.compute_dtype},
                     {"quantize_lm_head", used.quantize_lm_head}});
  if (used.batch_invariant) model_info["batch_invariant"] = true;  // absent when off: earlier runs still resume
  return engine;
}

}  // namespace bq::eval
