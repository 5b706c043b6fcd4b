#include "model/quantize_checkpoint.h"

#include <list>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "core/json.h"
#include "core/progress.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "quant/precision.h"

namespace bq {

namespace fs = std::filesystem;

void quantize_checkpoint(const fs::path& in, const fs::path& out, const quant::QuantOptions& opt, size_t shard_bytes) {
  if (fs::exists(out) && fs::equivalent(in, out)) fail("{}: quantize would overwrite its input; pick another --out", out.string());
  Checkpoint ck = Checkpoint::open(in);
  auto config = parse_json(read_file(in / "config.json", limits::kJsonFileBytes), (in / "config.json").string());
  if (!config.is_object()) fail("{}: not a JSON object", (in / "config.json").string());
  if (config.contains("quantization_config")) fail("{}: the checkpoint is already quantized", (in / "config.json").string());
  if (opt.quantize_lm_head) fail("quantize: lm_head is kept 16-bit in saved checkpoints (as bitsandbytes saves them); --quantize-lm-head applies when a model is loaded");
  // The decoder linears, as the architecture's tensor table names them, are what bitsandbytes quantizes.
  std::set<std::string> linears;
  const ModelConfig cfg = parse_model_config(config, (in / "config.json").string());
  if (cfg.text_tower)
    fail("{}: a multimodal checkpoint; quantize writes text models only (load it with --precision instead, which "
         "quantizes its language model at load)", (in / "config.json").string());
  for (auto& s : tensor_specs(cfg))
    if (s.decoder_linear) linears.insert(s.name);
  fs::create_directories(out);

  // Shards are written under provisional names, renamed once their count is known.
  std::vector<std::pair<fs::path, std::vector<std::string>>> written;
  std::list<quant::NamedTensor> owned;  // quantized tensors of the shard being filled (list: stable addresses)
  std::vector<TensorToWrite> shard;
  size_t in_shard = 0, total = 0;
  auto flush = [&] {
    if (shard.empty()) return;
    fs::path tmp = out / fmt::format("model-{:05d}.safetensors.partial", written.size() + 1);
    write_safetensors(tmp, shard);
    std::vector<std::string> names;
    for (auto& t : shard) {
      names.push_back(t.name);
      total += t.nbytes;
    }
    written.emplace_back(tmp, std::move(names));
    shard.clear();
    owned.clear();
    in_shard = 0;
  };
  auto add = [&](TensorToWrite t) {
    if (in_shard > 0 && in_shard + t.nbytes > shard_bytes) flush();
    in_shard += t.nbytes;
    shard.push_back(std::move(t));
  };
  double to_read = 0;
  for (const auto& [name, t] : ck.tensors()) to_read += double(t.nbytes) / 1e9;
  ProgressMeter progress(fmt::format("quantize {} to {}", in.filename().string(), quant::precision_name(opt.scheme)), to_read, "GB");
  for (const auto& [name, t] : ck.tensors()) {
    progress.advance(double(t.nbytes) / 1e9);
    if (!linears.contains(name)) {
      add({name, t.dtype, t.shape, t.data, t.nbytes});
      continue;
    }
    if (t.shape.size() != 2) fail("{}: {} has shape {}, expected 2 dimensions", *t.file, name, shape_str(t.shape));
    quant::QuantizedMatrix q;
    try {
      q = quant::quantize(t.data, t.dtype, t.shape[0], t.shape[1], opt);
    } catch (const Error& e) {
      fail("{}: {}: {}", *t.file, name, e.what());
    }
    std::string prefix = name.substr(0, name.size() - std::string(".weight").size());
    size_t group = 0;
    for (auto& nt : quant::to_bnb_tensors(q, prefix, t.dtype)) group += nt.bytes.size();
    // A linear's tensors stay in one shard (its group is flushed as a whole).
    if (in_shard > 0 && in_shard + group > shard_bytes) flush();
    for (auto& nt : quant::to_bnb_tensors(q, prefix, t.dtype)) {
      owned.push_back(std::move(nt));
      const auto& o = owned.back();
      shard.push_back({o.name, o.dtype, o.shape, o.bytes.data(), o.bytes.size()});
      in_shard += o.bytes.size();
    }
  }
  flush();

  if (written.size() == 1) {
    fs::rename(written[0].first, out / "model.safetensors");
  } else {
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t s = 0; s < written.size(); ++s) {
      std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, written.size());
      fs::rename(written[s].first, out / name);
      for (auto& n : written[s].second) weight_map[n] = name;
    }
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_atomic(out / "model.safetensors.index.json", index.dump(2));
  }
  config["quantization_config"] = quant::bnb_quantization_config(opt);
  write_file_atomic(out / "config.json", config.dump(2));
  for (const auto& e : fs::directory_iterator(in)) {
    std::string f = e.path().filename().string();
    bool weights = f.ends_with(".safetensors") || f == "model.safetensors.index.json" || f == "config.json";
    if (e.is_regular_file() && !weights) fs::copy_file(e.path(), out / f, fs::copy_options::overwrite_existing);
  }
}

std::optional<quant::QuantOptions> checkpoint_quantization(const fs::path& dir) {
  std::string path = (dir / "config.json").string();
  auto j = parse_json(read_file(path, limits::kJsonFileBytes), path);
  if (!j.is_object() || !j.contains("quantization_config")) return std::nullopt;
  const auto& qc = j["quantization_config"];
  quant::QuantOptions o;
  try {
    if (qc.value("load_in_8bit", false)) {
      o.scheme = quant::Scheme::LLMInt8;
      o.llm_int8_threshold = qc.value("llm_int8_threshold", 6.0f);
      return o;
    }
    o.scheme = qc.at("bnb_4bit_quant_type").get<std::string>() == "fp4" ? quant::Scheme::FP4 : quant::Scheme::NF4;
    o.double_quant = qc.value("bnb_4bit_use_double_quant", false);
    std::string compute = qc.value("bnb_4bit_compute_dtype", "float32");
    o.compute = compute == "float16" ? DType::F16 : compute == "bfloat16" ? DType::BF16 : DType::F32;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: quantization_config: {}", path, e.what());
  }
  Checkpoint ck = Checkpoint::open(dir);
  std::string name = "model.layers.0.self_attn.o_proj.weight.quant_state.bitsandbytes__" +
                     std::string(quant::precision_name(o.scheme));
  const TensorInfo* t = ck.find(name);
  if (!t) fail("{}: missing tensor {}", dir.string(), name);
  auto state = parse_json(std::string_view(reinterpret_cast<const char*>(t->data), t->nbytes), *t->file + ": " + name);
  if (!state.is_object() || !state.contains("blocksize") || !state["blocksize"].is_number_integer())
    fail("{}: {} has no integer blocksize", *t->file, name);
  o.blocksize = state["blocksize"].get<int>();
  return o;
}

}  // namespace bq
