// biomedq bench: prefill and decode speed and memory of the CUDA backend at one precision, against the copy
// bandwidth and cuBLAS GEMM rate measured in the same run. What is counted is written in docs/benchmarks/NOTES.md.
#include <chrono>
#include <cmath>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <cstring>
#include <span>
#include <omp.h>

#include "backend/cpu/cpu_forward.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/host_memory.h"
#include "generate/sampler.h"
#include "model/model.h"
#include "model/quantize_checkpoint.h"
#include "model/quantize_model.h"
#ifdef BIOMEDQ_HAVE_CUDA
#include "backend/cuda/allocator.h"
#include "backend/cuda/ceilings.h"
#include "backend/cuda/cuda_forward.h"
#include "backend/cuda/ops.h"
#include "plan/memory_planner.h"
#endif

namespace bq::cli {

namespace {

struct BenchArgs {
  std::string model, synthetic, device = "cuda", devices;
  PrecisionOptions precision;
  int batch = 1, prompt_len = 512, gen_len = 128, reps = 3;
  uint64_t seed = 1;
  bool json = false;
  bool no_pdl = false;
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

#ifdef BIOMEDQ_HAVE_CUDA
void run_bench(const BenchArgs& a) {
  cuda::set_programmatic_launch(!a.no_pdl);
  if (a.batch < 1 || a.prompt_len < 1 || a.gen_len < 2 || a.reps < 1) fail("bench: batch, prompt-len, reps >= 1, gen-len >= 2");
  if (cuda::device_count() == 0) fail("--device cuda: no CUDA device is available");
  auto qopt = precision_to_quant(a.precision);
  const int B = a.batch, P = a.prompt_len, G = a.gen_len, steps = G - 1;
  const ModelConfig shapes = a.synthetic.empty() ? load_model_config(a.model) : preset_config(a.synthetic);
  if (P + G > shapes.max_positions)
    fail("bench: prompt-len + gen-len = {} exceeds the model's {} positions", P + G, shapes.max_positions);
  std::vector<CudaStage> stages;
  if (!a.devices.empty()) {  // the planner's split of this very workload over the listed devices' free memory
    plan::PlanRequest r;
    static_cast<PrecisionOptions&>(r) = a.precision;
    r.config = shapes;
    r.model_label = a.synthetic.empty() ? a.model : a.synthetic;
    if (a.synthetic.empty()) r.checkpoint = a.model;
    r.context = P + G;
    r.prompt = P;
    r.batch = B;
    stages = plan::cuda_stages_for(a.devices, r);
  }
  // The ceilings of the first device (all of them when they are of one kind).
  const int first_device = stages.empty() ? cuda::current_device() : stages.front().device;
  double copy_gbs = 0, gemm_tflops = 0;
  {
    cuda::DeviceGuard on(first_device);
    copy_gbs = cuda::measure_copy_gbs();
    gemm_tflops = cuda::measure_gemm_tflops();
  }
  cuda::reset_peak_memory();

  Model host_model;
  std::unique_ptr<CudaForward> fwd;
  if (!a.synthetic.empty()) {
    fwd = CudaForward::synthetic(shapes, qopt, a.seed, stages);
  } else {
    host_model = load_model(a.model);
    if (qopt) quantize_model(host_model, *qopt);
    fwd = std::make_unique<CudaForward>(host_model, stages);
  }
  const ModelConfig& c = fwd->config();

  // Bytes a decode step must read: weights (+ lm_head) once, and each row's keys and values so far.
  const double kv_row_pos = 2.0 * 2.0 * double(c.kv_dim()) * c.n_layers;  // K and V, bf16, all layers
  double kv_bytes_all_steps = 0;
  for (int s = 0; s < steps; ++s) kv_bytes_all_steps += double(B) * (P + s + 1) * kv_row_pos;
  const double decode_bytes = double(fwd->step_weight_bytes()) * steps + kv_bytes_all_steps;
  // Prefill FLOPs: every linear of every prompt token, lm_head for the B last tokens, causal attention (QK and PV).
  double linear_params = 0;
  {
    const double H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate;
    linear_params = c.n_layers * (H * Q * 2 + H * KV * 2 + 3 * H * I);
  }
  const double attn_flops = 4.0 * c.head_dim * c.n_heads * c.n_layers * (double(P) * (P + 1) / 2) * B;
  const double prefill_flops = 2.0 * linear_params * B * P + 2.0 * double(c.vocab) * c.hidden * B + attn_flops;

  Stat prefill_tps, decode_tps, ms_per_step, ttft_ms, decode_gbs, prefill_tflops;
  std::vector<CudaForward::StageInfo> stage_info;  // with the sequences still open (their KV cache)
  std::mt19937 rng(unsigned(a.seed));
  for (int rep = 0; rep <= a.reps; ++rep) {  // rep 0 warms up (graphs, cuBLAS heuristics, scratch)
    std::vector<int> seqs;
    ForwardBatch pre;
    for (int b = 0; b < B; ++b) {
      seqs.push_back(fwd->open_sequence(P + G));
      for (int i = 0; i < P; ++i) pre.tokens.push_back(int32_t(rng() % uint32_t(c.vocab))), pre.seq.push_back(seqs.back());
      pre.logit_rows.push_back(int(pre.tokens.size()) - 1);
    }
    fwd->synchronize();
    auto t0 = std::chrono::steady_clock::now();
    fwd->run_device(pre);
    std::vector<int32_t> next = fwd->argmax_last();
    const double ttft = seconds_since(t0);
    ForwardBatch step;
    step.seq = seqs;
    for (int b = 0; b < B; ++b) step.logit_rows.push_back(b);
    t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < steps; ++s) {
      step.tokens = next;
      fwd->run_device(step);
      next = fwd->argmax_last();
    }
    const double dec = seconds_since(t0);
    stage_info = fwd->stages();
    for (int id : seqs) fwd->close_sequence(id);
    if (rep == 0) continue;
    prefill_tps.v.push_back(double(B) * P / ttft);
    ttft_ms.v.push_back(ttft * 1e3);
    prefill_tflops.v.push_back(prefill_flops / ttft / 1e12);
    decode_tps.v.push_back(double(B) * steps / dec);
    ms_per_step.v.push_back(dec / steps * 1e3);
    decode_gbs.v.push_back(decode_bytes / dec / 1e9);
  }
  cuda::sample_device_memory();
  auto mem = cuda::memory_stats();
  nlohmann::json devices = nlohmann::json::array(), per_device = nlohmann::json::array();
  for (auto& s : stage_info) {  // memory figures per device: stages on one device show the same
    const cuda::MemoryStats m = cuda::memory_stats(s.device);
    devices.push_back(s.device);
    per_device.push_back({{"device", s.device}, {"name", cuda::device_name(s.device)},
                          {"first_layer", s.first_layer}, {"end_layer", s.end_layer},
                          {"weights_bytes", s.weight_bytes}, {"kv_cache_bytes", s.kv_cache_bytes},
                          {"allocator_peak_bytes", m.peak}, {"device_peak_bytes", m.device_used_peak},
                          {"device_total_bytes", m.device_total}});
  }
  char date[32];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  nlohmann::json j = {
      {"device", cuda::device_name(first_device)},
      {"devices", devices},
      {"programmatic_launch", !a.no_pdl},
      {"date", date},
      {"model", a.synthetic.empty() ? a.model : "synthetic:" + a.synthetic},
      {"precision", a.precision.precision},
      {"double_quant", qopt && quant::is_4bit(qopt->scheme) && a.precision.double_quant},
      {"batch", B}, {"prompt_len", P}, {"gen_len", G}, {"reps", a.reps},
      {"copy_gbs", copy_gbs}, {"cublas_bf16_tflops", gemm_tflops},
      {"prefill_tokens_per_s", prefill_tps.to_json()}, {"ttft_ms", ttft_ms.to_json()},
      {"prefill_tflops", prefill_tflops.to_json()}, {"prefill_flops", prefill_flops},
      {"decode_tokens_per_s", decode_tps.to_json()}, {"decode_ms_per_step", ms_per_step.to_json()},
      {"decode_gbs", decode_gbs.to_json()}, {"decode_bytes_per_step", decode_bytes / steps},
      {"decode_fraction_of_copy", decode_gbs.mean() / copy_gbs},
      {"prefill_fraction_of_cublas", prefill_tflops.mean() / gemm_tflops},
      {"weights_bytes", fwd->weight_bytes()}, {"step_weight_bytes", fwd->step_weight_bytes()},
      {"allocator_peak_bytes", mem.peak}, {"device_peak_bytes", mem.device_used_peak},
      {"device_total_bytes", mem.device_total}, {"per_device", per_device}};
  if (a.json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  auto pm = [](const Stat& s, int prec = 1) { return fmt::format("{:.{}f} ± {:.{}f}", s.mean(), prec, s.sd(), prec); };
  const double gib = double(1ull << 30);
  fmt::print("{} | {} | {} batch {} prompt {} gen {} ({} reps)\n", j["device"].get<std::string>(), j["model"].get<std::string>(),
             a.precision.precision, B, P, G, a.reps);
  fmt::print("  prefill   {} tok/s, TTFT {} ms, {} TFLOP/s ({:.0f}% of cuBLAS {:.0f})\n", pm(prefill_tps, 0), pm(ttft_ms, 2),
             pm(prefill_tflops), 100 * prefill_tflops.mean() / gemm_tflops, gemm_tflops);
  fmt::print("  decode    {} tok/s, {} ms/step, {} GB/s ({:.0f}% of copy {:.0f})\n", pm(decode_tps), pm(ms_per_step, 3),
             pm(decode_gbs, 0), 100 * decode_gbs.mean() / copy_gbs, copy_gbs);
  fmt::print("  memory    weights {:.2f} GiB, allocator peak {:.2f} GiB, device peak {:.2f} GiB (incl. context)\n",
             double(fwd->weight_bytes()) / gib, double(mem.peak) / gib, double(mem.device_used_peak) / gib);
  if (stage_info.size() > 1)
    for (auto& d : per_device)
      fmt::print("  device {}  layers {}..{}: weights {:.2f} GiB, KV cache {:.2f} GiB; on the device: allocator peak "
                 "{:.2f} GiB, device peak {:.2f} GiB of {:.2f} GiB\n",
                 d["device"].get<int>(), d["first_layer"].get<int>(), d["end_layer"].get<int>() - 1,
                 d["weights_bytes"].get<double>() / gib, d["kv_cache_bytes"].get<double>() / gib,
                 d["allocator_peak_bytes"].get<double>() / gib, d["device_peak_bytes"].get<double>() / gib,
                 d["device_total_bytes"].get<double>() / gib);
}
#endif

// The CPU path: the same measurements with a host-memory copy as the bandwidth ceiling.
double measure_host_copy_gbs() {
  const size_t n = size_t(256) << 20;
  std::vector<char> a(n, 1), b(n, 2);
  double best = 0;
  for (int i = 0; i < 3; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), n);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * double(n) / s / 1e9);  // bytes read + written
  }
  return best + double(b[n / 2]) * 0;  // keep the copy observable
}

void run_cpu_bench(const BenchArgs& a) {
  if (a.batch < 1 || a.prompt_len < 1 || a.gen_len < 2 || a.reps < 1) fail("bench: batch, prompt-len, reps >= 1, gen-len >= 2");
  auto qopt = precision_to_quant(a.precision);
  const double copy_gbs = measure_host_copy_gbs();
  Model m = a.synthetic.empty() ? load_model(a.model) : synthesize_model(preset_config(a.synthetic), a.seed);
  if (qopt) quantize_model(m, *qopt);
  CpuForward fwd(m);
  const ModelConfig& c = m.cfg;
  const int B = a.batch, P = a.prompt_len, G = a.gen_len, steps = G - 1;
  if (P + G > c.max_positions) fail("bench: prompt-len + gen-len = {} exceeds the model's {} positions", P + G, c.max_positions);
  double weight_bytes = double(m.lm_head.weight_bytes());
  for (auto& L : m.layers)
    for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      weight_bytes += double(l->q ? l->q->bytes() : l->weight_bytes());
  const double kv_row_pos = 2.0 * 4.0 * double(c.kv_dim()) * c.n_layers;  // K and V, fp32, all layers
  double kv_bytes = 0;
  for (int s = 0; s < steps; ++s) kv_bytes += double(B) * (P + s + 1) * kv_row_pos;
  const double decode_bytes = weight_bytes * steps + kv_bytes;
  Stat prefill_tps, decode_tps, ms_per_step, decode_gbs;
  std::mt19937 rng(unsigned(a.seed));
  tracked_vector<float> logits(size_t(B) * size_t(c.vocab));
  for (int rep = 0; rep <= a.reps; ++rep) {  // rep 0 warms up
    std::vector<int> seqs;
    ForwardBatch pre;
    for (int b = 0; b < B; ++b) {
      seqs.push_back(fwd.open_sequence(P + G));
      for (int i = 0; i < P; ++i) pre.tokens.push_back(int32_t(rng() % uint32_t(c.vocab))), pre.seq.push_back(seqs.back());
      pre.logit_rows.push_back(int(pre.tokens.size()) - 1);
    }
    auto t0 = std::chrono::steady_clock::now();
    fwd.run(pre, logits.data());
    const double ttft = seconds_since(t0);
    ForwardBatch step;
    step.seq = seqs;
    for (int b = 0; b < B; ++b) step.logit_rows.push_back(b);
    t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < steps; ++s) {
      step.tokens.clear();
      for (int b = 0; b < B; ++b)
        step.tokens.push_back(argmax(std::span<const float>(logits.data() + size_t(b) * size_t(c.vocab), size_t(c.vocab))));
      fwd.run(step, logits.data());
    }
    const double dec = seconds_since(t0);
    for (int id : seqs) fwd.close_sequence(id);
    if (rep == 0) continue;
    prefill_tps.v.push_back(double(B) * P / ttft);
    decode_tps.v.push_back(double(B) * steps / dec);
    ms_per_step.v.push_back(dec / steps * 1e3);
    decode_gbs.v.push_back(decode_bytes / dec / 1e9);
  }
  nlohmann::json j = {{"device", "cpu"}, {"threads", omp_get_max_threads()},
                      {"model", a.synthetic.empty() ? a.model : "synthetic:" + a.synthetic},
                      {"precision", a.precision.precision}, {"batch", B}, {"prompt_len", P}, {"gen_len", G}, {"reps", a.reps},
                      {"host_copy_gbs", copy_gbs}, {"prefill_tokens_per_s", prefill_tps.to_json()},
                      {"decode_tokens_per_s", decode_tps.to_json()}, {"decode_ms_per_step", ms_per_step.to_json()},
                      {"decode_gbs", decode_gbs.to_json()}, {"decode_bytes_per_step", decode_bytes / steps},
                      {"decode_fraction_of_copy", decode_gbs.mean() / copy_gbs}, {"weights_bytes", weight_bytes},
                      {"kv_cache_bytes_at_end", double(B) * (P + G) * kv_row_pos},
                      {"allocator_peak_bytes", host_memory::stats().peak}};
  if (a.json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  fmt::print("cpu ({} threads) | {} | {} batch {} prompt {} gen {} ({} reps)\n", omp_get_max_threads(),
             j["model"].get<std::string>(), a.precision.precision, B, P, G, a.reps);
  fmt::print("  prefill {:.1f} ± {:.1f} tok/s; decode {:.2f} ± {:.2f} tok/s, {:.1f} GB/s ({:.0f}% of copy {:.1f})\n",
             prefill_tps.mean(), prefill_tps.sd(), decode_tps.mean(), decode_tps.sd(), decode_gbs.mean(),
             100 * decode_gbs.mean() / copy_gbs, copy_gbs);
  fmt::print("  memory  tracked host peak {:.3f} GiB (weights, KV cache, scratch)\n",
             double(host_memory::stats().peak) / double(1ull << 30));
}

}  // namespace

void register_bench_command(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "Measure prefill/decode speed and memory (CUDA or CPU backend)");
  auto* src = cmd->add_option_group("source");
  src->add_option("--model", a->model, "Hugging Face checkpoint folder");
  src->add_option("--synthetic", a->synthetic, "preset of random weights generated on the GPU (e.g. llama-3.1-8b)");
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
  cmd->add_option("--devices", a->devices,
                  "CUDA: split the layers into a pipeline over these GPUs, e.g. 0,1,2 or all, each taking layers in "
                  "proportion to its free memory (default: the current GPU alone); an id may repeat: 0,0 runs two "
                  "stages on one GPU, to test the pipeline there");
  cmd->callback([a] {
    if (!a->model.empty())  // a checkpoint saved quantized is measured (and labelled) as stored
      a->precision = resolve_precision(a->precision, checkpoint_quantization(a->model), a->model);
    if (a->precision.precision == "fp16" || a->precision.precision == "fp32")
      fail("bench: 16-bit weights are measured as bf16 (--precision bf16)");
    if (a->device == "cpu") {
      if (!a->devices.empty()) fail("--devices applies to --device cuda only");
      return run_cpu_bench(*a);
    }
#ifdef BIOMEDQ_HAVE_CUDA
    run_bench(*a);
#else
    fail("--device cuda needs a build with CUDA: cmake -DBIOMEDQ_CUDA=ON");
#endif
  });
}

}  // namespace bq::cli
