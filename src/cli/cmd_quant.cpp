// quantize, inspect, compare-logits: writing quantized checkpoints and measuring what quantization costs and saves.
#include <cstdio>
#include <iostream>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "core/npy.h"
#include "model/compare_logits.h"
#include "model/quantize_checkpoint.h"
#include "model/quantize_model.h"
#include "plan/memory_planner.h"

namespace bq::cli {

namespace {

struct QuantizeArgs {
  std::string model, out;
  EngineOptions engine;
  size_t shard_mb = 2048;
  bool force = false;
};

void run_quantize(const QuantizeArgs& a) {
  auto q = precision_to_quant(a.engine);
  if (!q) fail("quantize: --precision must be nf4, fp4, int8 or llm-int8");
  check_output_folder(a.out, a.force);
  quantize_checkpoint(a.model, a.out, *q, a.shard_mb << 20);
  std::printf("wrote %s (%s)\n", a.out.c_str(), std::string(a.engine.precision->name).c_str());
}

struct InspectArgs {
  std::string model, preset;
  EngineOptions engine;
  int64_t context = 4096, batch = 1;
  bool json = false;
};

void run_inspect(const InspectArgs& a) {
  if (a.model.empty() == a.preset.empty()) fail("inspect: give exactly one of --model and --preset");
  ModelConfig c = a.model.empty() ? preset_config(a.preset) : load_model_config(a.model);
  // A checkpoint saved quantized is inspected as stored (a contradicting --precision is an error).
  auto stored = a.model.empty() ? std::nullopt : checkpoint_quantization(a.model);
  PrecisionOptions used = resolve_precision(a.engine, stored, a.model);
  auto q = precision_to_quant(used);
  std::string precision = std::string(used.precision->name) + (stored ? " (stored)" : "");
  plan::WeightMemory p = plan::weight_memory(c, q);
  const double gib = double(1 << 30);
  const size_t kv_cpu = plan::kv_cache_bytes(c, int(a.context), int(a.batch), 4),
               kv_cuda = plan::kv_cache_bytes(c, int(a.context), int(a.batch), 2);
  if (a.json) {
    nlohmann::json groups = nlohmann::json::array();
    for (auto& g : p.groups) groups.push_back({{"name", g.name}, {"params", g.params}, {"bytes", g.bytes}});
    nlohmann::json j = {{"model", a.model.empty() ? a.preset : a.model},
                        {"precision", precision},
                        {"double_quant", q && q->double_quant},
                        {"blocksize", q ? q->blocksize : 0},
                        {"groups", groups},
                        {"total_params", p.total_params},
                        {"total_bytes", p.total_bytes},
                        {"kv_bytes_per_token", {{"cpu_fp32", p.kv_bytes_per_token_cpu}, {"cuda_bf16", p.kv_bytes_per_token_cuda}}},
                        {"context", a.context},
                        {"batch", a.batch},
                        {"kv_bytes", {{"cpu_fp32", kv_cpu}, {"cuda_bf16", kv_cuda}}}};
    std::cout << j.dump(2) << "\n";
    return;
  }
  bool four_bit = q && (q->scheme == quant::Scheme::NF4 || q->scheme == quant::Scheme::FP4);
  std::printf("%s at %s%s\n", a.model.empty() ? a.preset.c_str() : a.model.c_str(), precision.c_str(),
              four_bit ? fmt::format(", blocksize {}{}", q->blocksize, q->double_quant ? ", double quant" : "").c_str()
                       : "");
  std::printf("%-24s %16s %18s %10s\n", "group", "params", "bytes", "GiB");
  for (auto& g : p.groups)
    std::printf("%-24s %16lld %18zu %10.3f\n", g.name.c_str(), (long long)g.params, g.bytes, double(g.bytes) / gib);
  std::printf("%-24s %16lld %18zu %10.3f\n", "total", (long long)p.total_params, p.total_bytes,
              double(p.total_bytes) / gib);
  std::printf("KV cache per token: %zu bytes (CPU, fp32), %zu bytes (CUDA, bf16)\n", p.kv_bytes_per_token_cpu,
              p.kv_bytes_per_token_cuda);
  std::printf("KV cache for %lld tokens x %lld sequences: %.3f GiB (CPU), %.3f GiB (CUDA)\n", (long long)a.context,
              (long long)a.batch, double(kv_cpu) / gib, double(kv_cuda) / gib);
}

void run_compare_logits(const std::string& pa, const std::string& pb, bool json) {
  LogitComparison r = compare_logits(read_npy(pa), read_npy(pb));
  if (json) {
    nlohmann::json j = {{"rows", r.rows},          {"kl_mean", r.kl_mean},
                        {"kl_p99", r.kl_p99},      {"top1_agreement", r.top1_agreement},
                        {"max_abs_diff", r.max_abs_diff}};
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("rows %lld\nKL(A||B) mean %.6g, p99 %.6g\ntop-1 agreement %.4f\nmax |A-B| %.6g\n", (long long)r.rows,
              r.kl_mean, r.kl_p99, r.top1_agreement, r.max_abs_diff);
}

}  // namespace

void register_quant_commands(CLI::App& app) {
  auto qa = std::make_shared<QuantizeArgs>();
  qa->engine.precision = &quant::precision_named("nf4");
  auto* q = app.add_subcommand("quantize", "Write a checkpoint in transformers + bitsandbytes' quantized layout");
  q->add_option("--model", qa->model, "Checkpoint folder (16/32-bit)")->required();
  q->add_option("--out", qa->out, "Output folder")->required();
  q->add_option("--shard-mb", qa->shard_mb, "Largest shard size in MiB");
  q->add_flag("--force", qa->force, "Write into an output folder that already holds files");
  add_engine_options(q, qa->engine);
  q->callback([qa] { run_quantize(*qa); });

  auto ia = std::make_shared<InspectArgs>();
  auto* i = app.add_subcommand("inspect", "Parameters and bytes per tensor group at a precision, and KV-cache size");
  i->add_option("--model", ia->model, "Checkpoint folder (reads config.json only)");
  std::string presets;
  for (auto& p : preset_names()) presets += (presets.empty() ? "" : ", ") + p;
  i->add_option("--preset", ia->preset, "Model shapes: " + presets);
  i->add_option("--context", ia->context, "Tokens per sequence for the KV-cache total")->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  i->add_option("--batch", ia->batch, "Sequences for the KV-cache total")->check(CLI::Range(int64_t(1), int64_t(1) << 16));
  i->add_flag("--json", ia->json, "Print JSON");
  add_engine_options(i, ia->engine);
  i->callback([ia] { run_inspect(*ia); });

  auto files = std::make_shared<std::pair<std::string, std::string>>();
  auto json = std::make_shared<bool>(false);
  auto* c = app.add_subcommand("compare-logits", "KL divergence, top-1 agreement and max |diff| of two logits .npy files");
  c->add_option("A", files->first, "Reference logits .npy [rows, vocab]")->required();
  c->add_option("B", files->second, "Logits to compare .npy [rows, vocab]")->required();
  c->add_flag("--json", *json, "Print JSON");
  c->callback([files, json] { run_compare_logits(files->first, files->second, *json); });
}

}  // namespace bq::cli
