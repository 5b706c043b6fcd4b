#include "plan/memory_planner.h"

#include <omp.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>

#include <fmt/format.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_forward.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/qmatmul.h"
#include "backend/cuda/layout.h"
#include "core/error.h"
#include "model/model.h"
#include "model/quantize_checkpoint.h"
#include "model/quantize_model.h"

namespace bq::plan {

namespace {

// The CUDA context, loaded kernels and library handles: device memory that no allocation of biomedq's makes. An
// estimate (it depends on the driver and GPU); scripts/gpu_check.sh records device peak minus allocator peak.
constexpr size_t kCudaContextBytes = size_t(768) << 20;

const MemoryGroup& group(const WeightMemory& p, const std::string& name) {
  for (auto& g : p.groups)
    if (g.name == name) return g;
  fail("memory plan has no group '{}'", name);
}


// The format the weights are held in: a checkpoint saved quantized loads as stored (resolve_precision);
// otherwise --precision.
std::optional<quant::QuantOptions> held_quantization(const PlanRequest& r, std::string& label) {
  auto stored = r.checkpoint.empty() ? std::nullopt : checkpoint_quantization(r.checkpoint);
  PrecisionOptions used = resolve_precision(r, stored, r.checkpoint.string());
  label = std::string(used.precision->name) + (stored ? " (stored)" : "");
  auto held = precision_to_quant(used);
  if (held && stored) {  // the stored layout, with the compute dtype and 8-bit flavour asked for
    stored->scheme = held->scheme;
    stored->compute = held->compute;
    stored->quantize_lm_head = held->quantize_lm_head;
    return stored;
  }
  return held;
}

// Largest scratch any linear's kernel holds for `rows` rows (CPU): per-thread fp32 blocks or dequantized tiles.
size_t cpu_kernel_scratch(const ModelConfig& c, const std::optional<quant::QuantOptions>& q, DType stored, int64_t rows,
                          int64_t logit_rows, int threads) {
  size_t most = 0;
  for (int64_t in : {int64_t(c.hidden), int64_t(c.q_dim()), int64_t(c.intermediate)}) {
    size_t b = q ? quant::matmul_scratch_bytes(q->scheme, q->compute, rows, in, threads)
                 : size_t(threads) * cpu::matmul_thread_scratch_floats(rows, stored, in) * sizeof(float);
    most = std::max(most, b);
  }
  size_t head = size_t(threads) * cpu::matmul_thread_scratch_floats(logit_rows, stored, c.hidden) * sizeof(float);
  return std::max(most, head);
}

void add(MemoryEstimate& e, std::string category, std::string name, size_t bytes, bool in_allocator = true) {
  e.items.push_back({std::move(category), std::move(name), bytes, in_allocator});
}

std::string kv_label(const char* dtype, const ModelConfig& c, const PlanRequest& r) {
  std::string s = fmt::format("{} K and V, {} x {} positions", dtype, r.batch, r.context);
  const int sliding = int(std::count(c.sliding_layers.begin(), c.sliding_layers.end(), true));
  const int ring = kv_shape(c, 0, c.n_layers).ring;
  if (sliding > 0 && ring < r.context)
    s += fmt::format(" ({} sliding layers hold {})", sliding, ring);
  return s;
}

// Positions one sequence of `context` holds in its cache over c.n_layers layers (kv_layout.h: sliding layers keep a
// ring). A pipeline stage's estimate (c.n_layers below the model's) takes its share in proportion: the sliding layers
// are spread through the model.
int64_t kv_positions_held(const ModelConfig& c, int context) {
  const int model_layers = c.sliding_layers.empty() ? c.n_layers : int(c.sliding_layers.size());
  return kv_positions(c, 0, model_layers, context) * c.n_layers / model_layers;
}

// The passes a prefill of `batch` prompts of `prompt` tokens takes, as the backends cut them (pass_end; the CUDA
// pipeline's passes hold at most max_rows rows).
std::vector<int> prefill_pass_rows(const ModelConfig& c, int batch, int prompt, int max_rows) {
  ForwardBatch b;
  for (int s = 0; s < batch; ++s)
    for (int i = 0; i < prompt; ++i) b.tokens.push_back(0), b.seq.push_back(s);
  std::vector<int> passes;
  const int rows = batch * prompt, per_sequence = max_sequence_rows_per_pass(c);
  for (int r0 = 0; r0 < rows;) {
    const int r1 = pass_end(b, r0, max_rows, per_sequence);
    passes.push_back(r1 - r0);
    r0 = r1;
  }
  return passes;
}

// The most rows of one pass: the backend's own bound, or with chunked prefill the step's (plan_memory has already
// cut the batch to the sequences such steps keep live).
int pass_rows_cap(const PlanRequest& r, int backend_max) {
  return r.max_step_tokens > 0 ? std::min(backend_max, r.max_step_tokens) : backend_max;
}

void plan_cuda(MemoryEstimate& e, const ModelConfig& c, const PlanRequest& r, bool lm_head = true) {
  // On the device: decoder linears bf16 or packed, norms and biases fp32, lm_head bf16 even when tied (uploaded
  // from the embeddings); the embeddings stay in host memory.
  ModelConfig dev = c;
  dev.dtype = DType::BF16;
  dev.tie_embeddings = false;
  WeightMemory w = weight_memory(dev, e.quant);
  for (const char* g : {"attention", "mlp", "norms", "biases", "lm_head"})
    if (group(w, g).bytes && (lm_head || std::string(g) != "lm_head")) add(e, "weights", g, group(w, g).bytes);
  if (e.quant) add(e, "quantization constants", "quantization constants", group(w, "quantization constants").bytes);
  add(e, "kv cache", kv_label("bf16", c, r), kv_cache_bytes(c, r.context, r.batch, 2));
  add(e, "kv cache", "page tables on the device",
      size_t(r.batch) * size_t(kv_shape(c, 0, c.n_layers).table_pages(r.context)) * sizeof(void*));

  // Scratch only grows: its size is the largest of every pass of the prefill (max_rows_per_pass rows at a time) and
  // of the decode steps.
  const bool quantized = e.quant.has_value();
  const int logit_rows = lm_head ? r.batch : 0;  // a pipeline stage before the last holds no logit buffers
  cuda::CudaScratchElems s;
  int widest = 0;
  // The decode attention's rows of a prefill pass: every row where prompts cannot take the tensor-core kernel, else
  // at most one a sequence (a decode row beside the prompts, with chunked prefill or a server).
  const int splits = cuda::attention_splits(r.context);
  const bool tiles = cuda::prefill_attention_supported(c.head_dim), all_tiles = tiles && r.batch_invariant;
  for (int n : prefill_pass_rows(c, r.batch, r.prompt, pass_rows_cap(r, cuda::max_rows_per_pass(c)))) {
    widest = std::max(widest, n);
    const int attention_rows = all_tiles ? 0 : tiles ? std::min(n, r.batch) : n;
    s.grow_to(cuda::cuda_scratch_elems(c, n, attention_rows, splits, logit_rows, quantized, r.batch_invariant));
  }
  if (r.context > r.prompt)
    s.grow_to(cuda::cuda_scratch_elems(c, r.batch, all_tiles ? 0 : r.batch, splits, logit_rows, quantized,
                                       r.batch_invariant));
  const size_t tile = s.wtile * 2;
  add(e, "activations", fmt::format("activation buffers ({} rows per pass at most)", widest), s.bytes() - tile);
  if (tile) add(e, "workspace", "dequantized weight tile (quantized prefill)", tile);
  add(e, "workspace", "cuBLAS workspace", cuda::kCublasWorkspaceBytes);
  add(e, "runtime", "RoPE frequencies and code tables", cuda::cuda_table_floats(c) * sizeof(float));
  add(e, "runtime", "CUDA context, kernels, library handles (estimate)", kCudaContextBytes, false);
  e.notes.push_back("embeddings stay in host memory (looked up on the CPU)");
}

void plan_cpu(MemoryEstimate& e, const ModelConfig& c, const PlanRequest& r) {
  // The weights as the engine uses them (model_host_bytes): 16-bit tensors where they are stored (mapped or
  // generated), fp32 norms and biases, quantized linears; not the stored linears it quantized from.
  const DType stored = r.checkpoint.empty() ? DType::BF16 : c.dtype;
  ModelConfig held = c;
  held.dtype = stored;
  WeightMemory w = weight_memory(held, e.quant);
  for (auto& g : w.groups)
    if (g.bytes) add(e, g.name == "quantization constants" ? g.name : "weights", g.name, g.bytes);
  add(e, "kv cache", kv_label("fp32", c, r), kv_cache_bytes(c, r.context, r.batch, 4));
  add(e, "activations", fmt::format("logits ({} rows)", r.batch), size_t(r.batch) * size_t(c.vocab) * sizeof(float));

  // A step holds its activation buffers, plus the largest of a linear kernel's scratch and the attention scratch
  // of the rows processed at once; the prefill of all prompts is the larger step unless prompts are very short.
  const int threads = r.threads > 0 ? r.threads : omp_get_max_threads();
  auto step = [&](int64_t rows, int positions) {
    size_t kernel = cpu_kernel_scratch(c, e.quant, stored, rows, r.batch, threads);
    size_t attention = size_t(std::min<int64_t>(threads, rows)) * cpu_attention_scratch_bytes(c, positions);
    return std::pair{cpu_step_sizes(c, rows, r.batch).bytes(), std::max(kernel, attention)};
  };
  const auto passes = prefill_pass_rows(c, r.batch, r.prompt, pass_rows_cap(r, INT_MAX));
  auto prefill = step(*std::max_element(passes.begin(), passes.end()), r.prompt);
  auto decode = r.context > r.prompt ? step(r.batch, r.context) : std::pair<size_t, size_t>{0, 0};
  auto peak = prefill.first + prefill.second >= decode.first + decode.second ? prefill : decode;
  add(e, "activations", "activation buffers of the largest step", peak.first);
  add(e, "workspace", fmt::format("kernel and attention scratch ({} threads)", threads), peak.second);
  e.notes.push_back("the tracked account covers the engine's buffers; the process adds its code, libraries and "
                    "allocator slack (peak RSS is somewhat higher)");
}

// Layers per GPU in order, lm_head on the last: each GPU can hold `room` layers beyond its fixed costs (what one
// layer adds is the difference of two estimates); the L layers are dealt out in proportion to the rooms (largest
// remainders), never beyond one.
template <typename Estimate>
std::vector<DeviceShare> split_layers(const PlanRequest& r, Estimate estimate) {
  const int n = int(r.device_memory.size()), L = r.config.n_layers;
  const size_t one = estimate(1, false).total_bytes, two = estimate(2, false).total_bytes;
  const size_t per_layer = two - one, fixed = one - per_layer;
  const size_t head = estimate(1, true).total_bytes - one;
  std::vector<long long> room(static_cast<size_t>(n));
  long long rooms = 0;
  for (int i = 0; i < n; ++i) {
    const size_t need = fixed + (i == n - 1 ? head : 0);
    const size_t cap = r.device_memory[size_t(i)];
    room[size_t(i)] = cap > need ? (long long)((cap - need) / per_layer) : 0;
    rooms += room[size_t(i)];
  }
  if (rooms < L) {
    size_t have = 0;
    for (size_t c : r.device_memory) have += c;
    fail("--device-memory: the model does not fit these GPUs: {} layers of {} each, lm_head {} and {} per GPU of "
         "fixed costs need {} in all, the GPUs hold {} (room for {} of the {} layers)",
         L, format_bytes(double(per_layer)), format_bytes(double(head)), format_bytes(double(fixed)),
         format_bytes(double(L) * double(per_layer) + double(head) + double(n) * double(fixed)),
         format_bytes(double(have)), rooms, L);
  }
  std::vector<int> layers(static_cast<size_t>(n));
  std::vector<std::pair<double, int>> rest;
  int dealt = 0;
  for (int i = 0; i < n; ++i) {
    const double share = double(L) * double(room[size_t(i)]) / double(rooms);
    layers[size_t(i)] = int(share);
    dealt += layers[size_t(i)];
    rest.push_back({share - double(layers[size_t(i)]), i});
  }
  std::sort(rest.begin(), rest.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  for (size_t k = 0; dealt < L; k = (k + 1) % rest.size()) {
    const int i = rest[k].second;
    if (layers[size_t(i)] < room[size_t(i)]) ++layers[size_t(i)], ++dealt;
  }
  std::vector<DeviceShare> out;
  int first = 0;
  for (int i = 0; i < n; ++i) {
    DeviceShare d;
    d.first_layer = first;
    d.layers = layers[size_t(i)];
    d.lm_head = i == n - 1;
    d.capacity = r.device_memory[size_t(i)];
    auto est = estimate(std::max(d.layers, 1), d.lm_head);
    if (d.layers == 0) est.total_bytes -= per_layer, est.allocator_bytes -= per_layer;
    d.total_bytes = est.total_bytes;
    d.allocator_bytes = est.allocator_bytes;
    first += d.layers;
    out.push_back(d);
  }
  return out;
}

}  // namespace

size_t kv_cache_bytes(const ModelConfig& c, int context, int batch, size_t value_bytes) {
  return size_t(kv_positions_held(c, context)) * size_t(c.kv_dim()) * 2 * value_bytes * size_t(batch);
}

WeightMemory weight_memory(const ModelConfig& c, const std::optional<quant::QuantOptions>& q) {
  MemoryGroup embed{"embeddings"}, attn{"attention"}, mlp{"mlp"}, norms{"norms"}, biases{"biases"}, head{"lm_head"},
      consts{"quantization constants"};
  const size_t wsz = dtype_size(c.dtype);
  const int64_t H = c.hidden, I = c.intermediate, Q = c.q_dim(), KV = c.kv_dim();
  embed.params = int64_t(c.vocab) * H;
  embed.bytes = size_t(embed.params) * wsz;
  if (!c.tie_embeddings) {
    head.params = int64_t(c.vocab) * H;
    head.bytes = size_t(head.params) * wsz;
  }
  // phi3's fused tensors are quantized whole and sliced: slices hold fp32 maxima (quant::slice_rows).
  std::optional<quant::QuantOptions> part_opt = q;
  if (q && c.fused_qkv && (q->scheme == quant::Scheme::NF4 || q->scheme == quant::Scheme::FP4))
    part_opt->double_quant = false;
  auto linear = [&](MemoryGroup& g, int64_t out, int64_t in, bool fused_part) {
    int64_t n = out * in;
    g.params += n;
    if (!q) {
      g.bytes += size_t(n) * wsz;
      return;
    }
    const quant::QuantOptions& o = fused_part ? *part_opt : *q;
    size_t codes = (o.scheme == quant::Scheme::NF4 || o.scheme == quant::Scheme::FP4) ? size_t((n + 1) / 2) : size_t(n);
    g.bytes += codes;
    consts.bytes += quant::quantized_bytes(out, in, o) - codes;
  };
  for (int i = 0; i < c.n_layers; ++i) {
    linear(attn, Q, H, c.fused_qkv);
    linear(attn, KV, H, c.fused_qkv);
    linear(attn, KV, H, c.fused_qkv);
    linear(attn, H, Q, false);
    if (c.attn_bias) {
      biases.params += Q + 2 * KV;
      biases.bytes += size_t(Q + 2 * KV) * 4;
    }
    linear(mlp, I, H, c.fused_qkv);
    linear(mlp, I, H, c.fused_qkv);
    linear(mlp, H, I, false);
  }
  if (q && q->quantize_lm_head) {  // the engine quantizes lm_head (tied or not) into its own matrix
    head = MemoryGroup{"lm_head"};
    linear(head, c.vocab, H, false);
  }
  norms.params = ((c.sandwich_norms ? 4 : 2) * int64_t(c.n_layers) + 1) * H +
                 (c.qk_norm ? 2 * int64_t(c.n_layers) * c.head_dim : 0);
  norms.bytes = size_t(norms.params) * 4;
  WeightMemory p;
  p.groups = {embed, attn, mlp, norms, biases, head, consts};
  for (auto& g : p.groups) {
    p.total_params += g.params;
    p.total_bytes += g.bytes;
  }
  p.kv_bytes_per_token_cpu = size_t(2) * size_t(c.n_layers) * size_t(KV) * 4;
  p.kv_bytes_per_token_cuda = size_t(2) * size_t(c.n_layers) * size_t(KV) * 2;
  return p;
}

std::string format_bytes(double bytes) {
  if (std::fabs(bytes) >= double(1ull << 30)) return fmt::format("{:.2f} GiB", bytes / double(1ull << 30));
  if (std::fabs(bytes) >= double(1ull << 20)) return fmt::format("{:.2f} MiB", bytes / double(1ull << 20));
  return fmt::format("{:.1f} KiB", bytes / 1024.0);
}

std::vector<std::pair<std::string, size_t>> common_cards() {
  const size_t gib = size_t(1) << 30;
  return {{"16 GB", 16 * gib}, {"24 GB", 24 * gib}, {"40 GB", 40 * gib}, {"48 GB", 48 * gib},
          {"80 GB", 80 * gib}, {"141 GB (H200)", size_t(143771) << 20}};
}

size_t parse_memory_size(const std::string& text, const std::string& option) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    fail("{}: '{}' is not a memory size (e.g. 40GB, 24576MiB)", option, text);
  }
  std::string unit = text.substr(used);
  for (auto& ch : unit) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  double scale = 0;
  if (unit.empty())  // "40" could mean GB or bytes: a plan built on a guess is worse than a question
    fail("{}: '{}' has no unit; write e.g. {}GB or {}MiB", option, text, text, text);
  if (unit == "g" || unit == "gb" || unit == "gib") scale = double(1ull << 30);
  else if (unit == "m" || unit == "mb" || unit == "mib") scale = double(1ull << 20);
  else if (unit == "t" || unit == "tb" || unit == "tib") scale = double(1ull << 40);
  if (scale == 0 || !std::isfinite(v) || v <= 0)
    fail("{}: '{}' is not a memory size (a positive number with GB, GiB or MiB)", option, text);
  if (v * scale > double(1ull << 50)) fail("{}: '{}' is more than a PiB", option, text);
  return size_t(v * scale);
}

MemoryEstimate plan_memory(PlanRequest r) {
  if (r.device != "cuda" && r.device != "cpu") fail("--device: '{}' is not cuda or cpu", r.device);
  if (r.batch < 1) fail("--batch must be at least 1 (got {})", r.batch);
  if (r.max_step_tokens < 0) fail("--max-step-tokens must not be negative (got {})", r.max_step_tokens);
  if (r.context == 0) r.context = std::min(4096, r.config.max_positions);
  if (r.context < 1) fail("--context must be at least 1 (got {})", r.context);
  if (r.prompt == 0) r.prompt = r.context;
  if (r.prompt < 1 || r.prompt > r.context)
    fail("--prompt-len must be between 1 and --context {} (got {})", r.context, r.prompt);
  if (r.context > r.config.max_positions)
    fail("--context {} exceeds the model's {} positions", r.context, r.config.max_positions);
  if (r.devices < 1) fail("--devices must be at least 1 (got {})", r.devices);
  if (r.devices > 1 && r.device != "cuda") fail("--devices applies to --device cuda only");
  if (r.devices > r.config.n_layers)
    fail("--devices {} is more than the model's {} layers", r.devices, r.config.n_layers);

  if (!r.device_memory.empty()) {
    if (r.device != "cuda") fail("--device-memory applies to --device cuda only");
    if (r.devices > 1 && size_t(r.devices) != r.device_memory.size())
      fail("--devices {} and --device-memory with {} sizes disagree", r.devices, r.device_memory.size());
    r.devices = int(r.device_memory.size());
    if (r.devices > r.config.n_layers)
      fail("--device-memory names {} GPUs, more than the model's {} layers", r.devices, r.config.n_layers);
  }

  MemoryEstimate e;
  e.quant = held_quantization(r, e.precision_label);
  if (r.max_step_tokens > 0 && r.batch > r.max_step_tokens) {
    // A step of N rows keeps at most N sequences live: a prompt is admitted only while a step has rows to spare.
    e.notes.push_back(fmt::format("with at most {} rows a step, at most {} of the {} sequences are live at once",
                                  r.max_step_tokens, r.max_step_tokens, r.batch));
    r.batch = r.max_step_tokens;
  }
  // The figures of one device holding `layers` layers (and lm_head or not): items and totals.
  auto estimate = [&](int layers, bool lm_head) {
    MemoryEstimate d;
    d.quant = e.quant;
    ModelConfig c = r.config;
    c.n_layers = layers;
    if (r.device == "cuda") plan_cuda(d, c, r, lm_head);
    else plan_cpu(d, c, r);
    for (auto& it : d.items) {
      d.total_bytes += it.bytes;
      if (it.in_allocator) d.allocator_bytes += it.bytes;
    }
    return d;
  };
  MemoryEstimate fullest;
  if (!r.device_memory.empty()) {
    e.split = split_layers(r, estimate);
    size_t most = 0;
    for (auto& d : e.split)
      if (d.total_bytes >= most)
        most = d.total_bytes, fullest = estimate(std::max(d.layers, 1), d.lm_head), e.layers_per_device = d.layers;
    e.notes.push_back(fmt::format("split over {} GPUs in proportion to their memory; items and totals are the fullest "
                                  "GPU's; layers stay in order, activations pass from GPU to GPU (bench and eval "
                                  "--devices run such a split)",
                                  r.devices));
  } else {
    // An even layer split: the busiest device holds ceil(L / N) layers, and (conservatively) lm_head and the
    // activation buffers as well, which every device of a pipeline needs.
    e.layers_per_device = (r.config.n_layers + r.devices - 1) / r.devices;
    fullest = estimate(e.layers_per_device, true);
    if (r.devices > 1)
      e.notes.push_back(fmt::format("per device for {} GPUs, {} of {} layers each (the device that also holds "
                                    "lm_head)",
                                    r.devices, e.layers_per_device, r.config.n_layers));
  }
  e.items = std::move(fullest.items);
  e.allocator_bytes = fullest.allocator_bytes;
  e.total_bytes = fullest.total_bytes;
  e.notes.insert(e.notes.begin(), fullest.notes.begin(), fullest.notes.end());
  for (auto& [card, bytes] : common_cards())
    e.cards.push_back({card, bytes, e.total_bytes <= bytes, double(bytes) - double(e.total_bytes)});
  e.request = std::move(r);
  return e;
}

std::vector<PipelineStage> plan_stages(PlanRequest r, const std::vector<int>& devices,
                                   const std::vector<size_t>& free_bytes) {
  if (devices.empty()) fail("--devices: no device listed");
  if (free_bytes.size() != devices.size())
    fail("plan_stages: {} devices but {} memories", devices.size(), free_bytes.size());
  if (devices.size() == 1) return {PipelineStage{devices[0], 0, r.config.n_layers}};
  if (int(devices.size()) > r.config.n_layers)
    fail("--devices lists {} devices, more than the model's {} layers", devices.size(), r.config.n_layers);
  r.device = "cuda";
  r.devices = 1;
  r.device_memory.clear();
  for (size_t i = 0; i < devices.size(); ++i)
    r.device_memory.push_back(free_bytes[i] / size_t(std::count(devices.begin(), devices.end(), devices[i])));
  MemoryEstimate e;
  try {
    e = plan_memory(r);
  } catch (const Error& err) {
    fail("--devices: {}", err.what());
  }
  std::vector<PipelineStage> stages;
  for (size_t i = 0; i < e.split.size(); ++i) {
    const DeviceShare& d = e.split[i];
    // A device too full for a layer is left out; the last one also holds lm_head, which the planner put there.
    if (d.layers == 0 && d.lm_head)
      fail("--devices: device {} (listed last, so holding lm_head) has room for no layer; list it earlier", devices[i]);
    if (d.layers > 0) stages.push_back(PipelineStage{devices[i], d.first_layer, d.first_layer + d.layers});
  }
  return stages;
}

std::vector<PipelineStage> pipeline_stages_for(const std::string& devices, const PlanRequest& r) {
  const ListedDevices listed = cuda_free_memory(devices);
  return plan_stages(r, listed.ids, listed.free_bytes);
}

nlohmann::ordered_json to_json(const MemoryEstimate& e) {
  const PlanRequest& r = e.request;
  nlohmann::ordered_json items = nlohmann::ordered_json::array(), cards = nlohmann::ordered_json::array();
  for (auto& it : e.items)
    items.push_back({{"category", it.category}, {"name", it.name}, {"bytes", it.bytes}, {"in_allocator", it.in_allocator}});
  for (auto& c : e.cards)
    cards.push_back({{"card", c.card}, {"bytes", c.bytes}, {"fits", c.fits}, {"headroom_bytes", c.headroom_bytes}});
  nlohmann::ordered_json split = nlohmann::ordered_json::array();
  for (auto& d : e.split)
    split.push_back({{"first_layer", d.first_layer}, {"layers", d.layers}, {"lm_head", d.lm_head},
                     {"allocator_bytes", d.allocator_bytes}, {"total_bytes", d.total_bytes}, {"capacity", d.capacity},
                     {"fits", d.total_bytes <= d.capacity}});
  nlohmann::ordered_json by_category = nlohmann::ordered_json::object();
  for (auto& it : e.items) by_category[it.category] = by_category.value(it.category, size_t(0)) + it.bytes;
  return {{"model", r.model_label},
          {"precision", e.precision_label},
          {"double_quant", e.quant && quant::is_4bit(e.quant->scheme) && e.quant->double_quant},
          {"blocksize", e.quant && quant::is_4bit(e.quant->scheme) ? e.quant->blocksize : 0},
          {"device", r.device},
          {"devices", r.devices},
          {"layers_per_device", e.layers_per_device},
          {"context", r.context},
          {"prompt_len", r.prompt},
          {"batch", r.batch},
          {"max_step_tokens", r.max_step_tokens},
          {"items", items},
          {"bytes_by_category", by_category},
          {"allocator_bytes", e.allocator_bytes},
          {"total_bytes", e.total_bytes},
          {"cards", cards},
          {"split", split},
          {"notes", e.notes}};
}

std::string format_plan(const MemoryEstimate& e) {
  const PlanRequest& r = e.request;
  std::string s = fmt::format("{} at {} on {}{}: context {} (prompt {}), batch {}\n", r.model_label, e.precision_label,
                              r.device, r.devices > 1 ? fmt::format(" (per device of {})", r.devices) : "", r.context,
                              r.prompt, r.batch);
  for (auto& it : e.items)
    s += fmt::format("  {:<24} {:<54} {:>12}{}\n", it.category, it.name, format_bytes(double(it.bytes)),
                     it.in_allocator ? "" : "  (outside the allocator)");
  s += fmt::format("  {:<79} {:>12}\n", "allocator peak (what bench/eval report as allocator_peak_bytes)",
                   format_bytes(double(e.allocator_bytes)));
  s += fmt::format("  {:<79} {:>12}\n", "total", format_bytes(double(e.total_bytes)));
  s += "fits:";
  for (auto& c : e.cards) s += fmt::format("  {} {}", c.card, c.fits ? "yes" : "no (short " + format_bytes(-c.headroom_bytes) + ")");
  s += "\n";
  for (size_t i = 0; i < e.split.size(); ++i) {
    const DeviceShare& d = e.split[i];
    s += fmt::format("GPU {}: layers {}..{}{}, {} of {} ({} free)\n", i, d.first_layer, d.first_layer + d.layers - 1,
                     d.lm_head ? " and lm_head" : "", format_bytes(double(d.total_bytes)), format_bytes(double(d.capacity)),
                     format_bytes(double(d.capacity) - double(d.total_bytes)));
  }
  for (auto& n : e.notes) s += "note: " + n + "\n";
  return s;
}

}  // namespace bq::plan
