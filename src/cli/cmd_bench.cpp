// biomedq bench: prefill and decode speed and memory of a backend at one precision, against the copy bandwidth and
// matrix-product rate measured in the same run. A thin driver of DecodeLoop, the loop eval and serve run: B greedy
// requests of random prompt tokens, no end-of-sequence, so each generates exactly gen-len tokens. The first step
// prefills every prompt and picks the first tokens (TTFT); the gen-len - 1 steps after it are the decode figures.
// What is counted is written in docs/benchmarks/NOTES.md.
#include <chrono>
#include <cmath>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "backend/backend.h"
#include "cli/commands.h"
#include "core/error.h"
#include "generate/generate.h"
#include "model/model.h"
#include "model/quantize_checkpoint.h"
#include "model/quantize_model.h"
#include "plan/memory_planner.h"

namespace bq::cli {

namespace {

struct BenchArgs {
  std::string model, synthetic, device = "cuda", devices;
  PrecisionOptions precision;
  int batch = 1, prompt_len = 512, gen_len = 128, reps = 3;
  uint64_t seed = 1;
  bool json = false;
  bool no_pdl = false;
  bool batch_invariant = false;
};

struct Stat {
  std::vector<double> v;
  double mean() const {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / double(v.size());
  }
  double sd() const {
    if (v.size() < 2) return 0;
    double m = mean(), s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / double(v.size() - 1));
  }
  nlohmann::json to_json() const { return {{"mean", mean()}, {"sd", sd()}, {"values", v}}; }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The planner's split of this very workload over the listed devices' free memory (none: the current device).
std::vector<PipelineStage> stages_for(const BenchArgs& a, const ModelConfig& shapes) {
  if (a.devices.empty()) return {};
  plan::PlanRequest r;
  static_cast<PrecisionOptions&>(r) = a.precision;
  r.config = shapes;
  r.model_label = a.synthetic.empty() ? a.model : a.synthetic;
  if (a.synthetic.empty()) r.checkpoint = a.model;
  r.context = a.prompt_len + a.gen_len;
  r.prompt = a.prompt_len;
  r.batch = a.batch;
  r.batch_invariant = a.batch_invariant;
  return plan::pipeline_stages_for(a.devices, r);
}

void run_bench(const BenchArgs& a) {
  if (a.batch < 1 || a.prompt_len < 1 || a.gen_len < 2 || a.reps < 1) fail("bench: batch, prompt-len, reps >= 1, gen-len >= 2");
  set_programmatic_launch(!a.no_pdl);
  set_batch_invariant(a.batch_invariant);
  const auto qopt = precision_to_quant(a.precision);
  const int B = a.batch, P = a.prompt_len, G = a.gen_len, steps = G - 1;
  const ModelConfig shapes = a.synthetic.empty() ? load_model_config(a.model) : preset_config(a.synthetic);
  if (P + G > shapes.max_positions)
    fail("bench: prompt-len + gen-len = {} exceeds the model's {} positions", P + G, shapes.max_positions);
  const std::vector<PipelineStage> stages = stages_for(a, shapes);
  const Ceilings ceil = measure_ceilings(a.device, stages);
  reset_peak_memory(a.device);

  Model host;  // the weights where the backend reads them from host memory
  std::unique_ptr<ForwardBackend> fwd;
  // Seconds until the model is ready: a checkpoint read (mapped and bound), quantized, put on the device; or a preset
  // drawn.
  nlohmann::json load_s;
  auto t_load = std::chrono::steady_clock::now();
  auto lap = [&](const char* what) {
    load_s[what] = seconds_since(t_load);
    t_load = std::chrono::steady_clock::now();
  };
  if (!a.synthetic.empty()) {
    fwd = make_synthetic_forward(shapes, qopt, a.seed, a.device, stages, host);
    lap("build");
  } else {
    host = load_model(a.model);
    lap("read");
    if (qopt) quantize_model(host, *qopt);
    lap("quantize");
    fwd = make_forward(host, a.device, stages);
    lap("forward");
  }
  double load_total = 0;
  for (auto& [k, v] : load_s.items()) load_total += v.get<double>();
  load_s["total"] = load_total;
  const ModelConfig& c = fwd->config();

  // Prefill FLOPs: every linear of every prompt token, lm_head for the B last tokens, causal attention (QK and PV).
  const double H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate;
  const double linear_params = c.n_layers * (H * Q * 2 + H * KV * 2 + 3 * H * I);
  const double attn_flops = 4.0 * c.head_dim * c.n_heads * c.n_layers * (double(P) * (P + 1) / 2) * B;
  const double prefill_flops = 2.0 * linear_params * B * P + 2.0 * double(c.vocab) * c.hidden * B + attn_flops;

  Stat prefill_tps, decode_tps, ms_per_step, ttft_ms, decode_gbs, prefill_tflops;
  MemoryFigures during;  // after a repetition's prefill: the sequences' caches are held
  double decode_bytes = 0;
  std::mt19937 rng(unsigned(a.seed));
  for (int rep = 0; rep <= a.reps; ++rep) {  // rep 0 warms up (graphs, cuBLAS heuristics, scratch)
    DecodeLoop loop(*fwd, /*eos_ids=*/{}, {.max_in_flight = B});
    for (int b = 0; b < B; ++b) {
      TokenRequest r;
      for (int i = 0; i < P; ++i) r.prompt.push_back(int32_t(rng() % uint32_t(c.vocab)));
      r.opt.max_new_tokens = G;  // greedy (temperature 0): the tokens are picked on the device
      loop.submit(std::move(r));
    }
    auto t0 = std::chrono::steady_clock::now();
    size_t generated = loop.step().tokens.size();
    const double ttft = seconds_since(t0);
    during = fwd->memory();  // outside the timings
    t0 = std::chrono::steady_clock::now();
    int decode_steps = 0;
    for (; !loop.idle(); ++decode_steps) generated += loop.step().tokens.size();
    const double dec = seconds_since(t0);
    if (decode_steps != steps || generated != size_t(B) * size_t(G))
      fail("bench: {} decode steps made {} tokens, where {} steps of batch {} should make {}", decode_steps, generated,
           steps, B, B * G);
    if (rep == 0) continue;
    // Bytes a decode step must read: the weights (+ lm_head) once, and each row's keys and values so far.
    const double kv_per_position = double(during.kv_position_bytes);
    double kv_bytes = 0;
    for (int s = 0; s < steps; ++s) kv_bytes += double(B) * (P + s + 1) * kv_per_position;
    decode_bytes = double(during.step_weight_bytes) * steps + kv_bytes;
    prefill_tps.v.push_back(double(B) * P / ttft);
    ttft_ms.v.push_back(ttft * 1e3);
    prefill_tflops.v.push_back(prefill_flops / ttft / 1e12);
    decode_tps.v.push_back(double(B) * steps / dec);
    ms_per_step.v.push_back(dec / steps * 1e3);
    decode_gbs.v.push_back(decode_bytes / dec / 1e9);
  }
  const MemoryFigures mem = fwd->memory();
  nlohmann::json devices = nlohmann::json::array(), per_device = nlohmann::json::array();
  for (size_t i = 0; i < mem.per_device.size(); ++i) {  // memory figures per device: stages on one device show the same
    const DeviceMemory& d = mem.per_device[i];
    devices.push_back(d.device);
    per_device.push_back({{"device", d.device}, {"name", d.name}, {"first_layer", d.first_layer},
                          {"end_layer", d.end_layer}, {"weights_bytes", d.weight_bytes},
                          {"kv_cache_bytes", during.per_device[i].kv_cache_bytes},
                          {"allocator_peak_bytes", d.allocator_peak_bytes}, {"device_peak_bytes", d.device_peak_bytes},
                          {"device_total_bytes", d.device_total_bytes}});
  }
  char date[32];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  nlohmann::json j = {
      {"device", mem.device_name},
      {"devices", devices},
      {"programmatic_launch", a.device == "cuda" && !a.no_pdl},
      {"tiled_products", a.device == "cuda" && tiled_tc_products()},
      {"tiled_blocks", a.device == "cuda" ? tiled_tc_blocks() : 0},
      {"batch_invariant", a.batch_invariant},
      {"date", date},
      {"model", a.synthetic.empty() ? a.model : "synthetic:" + a.synthetic},
      {"precision", a.precision.precision->name},
      {"double_quant", qopt && quant::is_4bit(qopt->scheme) && a.precision.double_quant},
      {"batch", B}, {"prompt_len", P}, {"gen_len", G}, {"reps", a.reps},
      {"copy_gbs", ceil.copy_gbs}, {"gemm_tflops", ceil.gemm_tflops}, {"gemm", ceil.gemm},
      {"prefill_tokens_per_s", prefill_tps.to_json()}, {"ttft_ms", ttft_ms.to_json()},
      {"prefill_tflops", prefill_tflops.to_json()}, {"prefill_flops", prefill_flops},
      {"decode_tokens_per_s", decode_tps.to_json()}, {"decode_ms_per_step", ms_per_step.to_json()},
      {"decode_gbs", decode_gbs.to_json()}, {"decode_bytes_per_step", decode_bytes / steps},
      {"decode_fraction_of_copy", decode_gbs.mean() / ceil.copy_gbs},
      {"prefill_fraction_of_gemm", prefill_tflops.mean() / ceil.gemm_tflops},
      {"weights_bytes", mem.weight_bytes}, {"step_weight_bytes", mem.step_weight_bytes},
      {"kv_cache_bytes", during.kv_cache_bytes}, {"kv_cache_peak_bytes", mem.kv_cache_peak_bytes},
      {"allocator_peak_bytes", mem.allocator_peak_bytes}, {"device_peak_bytes", mem.device_peak_bytes},
      {"device_total_bytes", mem.device_total_bytes}, {"per_device", per_device}, {"load_s", load_s}};
  if (a.json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  auto pm = [](const Stat& s, int prec = 1) { return fmt::format("{:.{}f} ± {:.{}f}", s.mean(), prec, s.sd(), prec); };
  const double gib = double(1ull << 30);
  fmt::print("{} | {} | {} batch {} prompt {} gen {} ({} reps)\n", mem.device_name, j["model"].get<std::string>(),
             a.precision.precision->name, B, P, G, a.reps);
  fmt::print("  prefill   {} tok/s, TTFT {} ms, {} TFLOP/s ({:.0f}% of {} {:.2f})\n", pm(prefill_tps, 0),
             pm(ttft_ms, 2), pm(prefill_tflops, 3), 100 * prefill_tflops.mean() / ceil.gemm_tflops, ceil.gemm,
             ceil.gemm_tflops);
  fmt::print("  decode    {} tok/s, {} ms/step, {} GB/s ({:.0f}% of copy {:.0f})\n", pm(decode_tps), pm(ms_per_step, 3),
             pm(decode_gbs, 1), 100 * decode_gbs.mean() / ceil.copy_gbs, ceil.copy_gbs);
  std::string parts;
  for (auto& [k, v] : load_s.items())
    if (k != "total") parts += fmt::format("{}{} {:.2f} s", parts.empty() ? "" : ", ", k, v.get<double>());
  fmt::print("  load      {:.2f} s ({})\n", load_total, parts);
  fmt::print("  memory    weights {:.2f} GiB, KV cache {:.2f} GiB after the prefill, {:.2f} GiB at most, allocator peak "
             "{:.2f} GiB",
             double(mem.weight_bytes) / gib, double(during.kv_cache_bytes) / gib,
             double(mem.kv_cache_peak_bytes) / gib, double(mem.allocator_peak_bytes) / gib);
  if (mem.device_peak_bytes) fmt::print(", device peak {:.2f} GiB (incl. context)", double(mem.device_peak_bytes) / gib);
  fmt::print("\n");
  if (mem.per_device.size() > 1)
    for (auto& d : per_device)
      fmt::print("  device {}  layers {}..{}: weights {:.2f} GiB, KV cache {:.2f} GiB; on the device: allocator peak "
                 "{:.2f} GiB, device peak {:.2f} GiB of {:.2f} GiB\n",
                 d["device"].get<int>(), d["first_layer"].get<int>(), d["end_layer"].get<int>() - 1,
                 d["weights_bytes"].get<double>() / gib, d["kv_cache_bytes"].get<double>() / gib,
                 d["allocator_peak_bytes"].get<double>() / gib, d["device_peak_bytes"].get<double>() / gib,
                 d["device_total_bytes"].get<double>() / gib);
}

}  // namespace

void register_bench_command(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "Measure prefill/decode speed and memory through the decode loop that eval and serve run");
  auto* src = cmd->add_option_group("source");
  src->add_option("--model", a->model, "Hugging Face checkpoint folder");
  src->add_option("--synthetic", a->synthetic, "preset of random weights, drawn where the backend keeps its weights (e.g. llama-3.1-8b)");
  src->require_option(1);
  add_precision_options(cmd, a->precision);
  cmd->add_option("--device", a->device, "cuda | cpu")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--batch", a->batch, "sequences decoded together");
  cmd->add_option("--prompt-len", a->prompt_len, "prompt tokens per sequence");
  cmd->add_option("--gen-len", a->gen_len, "tokens generated per sequence (the first comes from prefill)");
  cmd->add_option("--reps", a->reps, "timed repetitions after one warm-up");
  cmd->add_option("--seed", a->seed, "random weights and prompts");
  cmd->add_flag("--json", a->json, "print one JSON object");
  cmd->add_flag("--no-pdl", a->no_pdl, "CUDA: launch the kernels of a pass without programmatic dependent launch");
  cmd->add_flag("--batch-invariant", a->batch_invariant,
                "the products and attention of eval --batch-invariant (what that mode costs)");
  cmd->add_option("--devices", a->devices,
                  "CUDA: split the layers into a pipeline over these GPUs, e.g. 0,1,2 or all, each taking layers in "
                  "proportion to its free memory (default: the current GPU alone); an id may repeat: 0,0 runs two "
                  "stages on one GPU, to test the pipeline there");
  cmd->callback([a] {
    if (!a->model.empty())  // a checkpoint saved quantized is measured (and labelled) as stored
      a->precision = resolve_precision(a->precision, checkpoint_quantization(a->model), a->model);
    if (!a->precision.precision->scheme && a->precision.precision->name != "bf16")
      fail("bench: 16-bit weights are measured as bf16 (--precision bf16)");
    if (a->device == "cpu" && !a->devices.empty()) fail("--devices applies to --device cuda only");
    run_bench(*a);
  });
}

}  // namespace bq::cli
