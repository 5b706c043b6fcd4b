#include "generate/engine.h"

#include <sys/resource.h>

#include <algorithm>
#include <exception>

#include "backend/backend.h"
#include "core/error.h"
#include "model/quantize_checkpoint.h"
#include "model/quantize_model.h"
#include "tokenizer/chat_template.h"

namespace bq {

namespace {

// The options with the precision a checkpoint saved quantized decides (resolve_precision).
EngineOptions as_stored(const std::filesystem::path& model_dir, const EngineOptions& opt) {
  EngineOptions out = opt;
  static_cast<PrecisionOptions&>(out) = resolve_precision(opt, checkpoint_quantization(model_dir), model_dir.string());
  return out;
}

// Refused before any weight is loaded or quantized: LLM.int8 under --batch-invariant (the backends would refuse it at
// the first step).
void check_batch_invariance(const EngineOptions& opt) {
  if (opt.batch_invariant && opt.precision->scheme == quant::Scheme::LLMInt8)
    fail("{}", quant::kLlmInt8DependsOnTheBatch);
}

// The forward over a model the engine holds, quantized first as the options ask.
std::unique_ptr<ForwardBackend> quantized_forward(Model& m, const EngineOptions& opt) {
  check_batch_invariance(opt);
  if (auto q = precision_to_quant(opt)) quantize_model(m, *q);
  return make_forward(m, opt.device, opt.stages);
}

}  // namespace

Engine::Engine(const std::filesystem::path& model_dir, const EngineOptions& opt)
    // Braces: the arguments are evaluated left to right, so a folder that is no checkpoint fails on config.json.
    : Engine{std::filesystem::absolute(model_dir).lexically_normal().filename().string(), load_model(model_dir),
             Tokenizer::load(model_dir), as_stored(model_dir, opt)} {}

Engine::Engine(std::string name, Model model, Tokenizer tok, const EngineOptions& opt)
    : Engine(std::move(name), std::make_unique<Model>(std::move(model)), nullptr, std::move(tok), opt) {}

Engine::Engine(std::string name, std::unique_ptr<Model> model, std::unique_ptr<ForwardBackend> fwd, Tokenizer tok,
               const EngineOptions& opt)
    : name_(std::move(name)), model_(std::move(model)), tok_(std::move(tok)), opt_(opt),
      fwd_(fwd ? std::move(fwd) : quantized_forward(*model_, opt_)) {
  if (tok_.vocab_size() > model_->cfg.vocab)
    fail("{}: tokenizer has {} ids but the model's vocabulary is {}", name_, tok_.vocab_size(),
         model_->cfg.vocab);
  fwd_->set_kv_cache_limit(opt_.kv_cache_limit);
  set_batch_invariant(opt_.batch_invariant);  // read by the kernels at each step
  for (int id : model_->cfg.eos_ids) eos_.push_back(id);
  for (int32_t id : tok_.eos_ids())
    if (std::find(eos_.begin(), eos_.end(), id) == eos_.end()) eos_.push_back(id);
}

std::string Engine::format_prompt(const std::vector<ChatTurn>& turns, bool use_chat_template,
                                  std::optional<bool> thinking) const {
  if (use_chat_template) {
    if (tok_.chat_template().empty()) fail("{}: the model has no chat template (use it without --chat)", name_);
    std::vector<ChatMessage> msgs;
    for (auto& t : turns) msgs.push_back({t.role, t.content});
    return render_chat(tok_, msgs, thinking);
  }
  std::string s;
  for (auto& t : turns) s += (s.empty() ? "" : "\n\n") + t.content;
  return s;
}

std::vector<int32_t> Engine::encode_prompt(const std::string& prompt) const { return tok_.encode_prompt(prompt); }

std::vector<GenerationResult> Engine::generate(const std::vector<std::string>& prompts,
                                               const std::vector<SamplingOptions>& opts, const BatchControl& control) {
  if (opts.size() != prompts.size()) fail("generate: {} prompts but {} option sets", prompts.size(), opts.size());
  // The prompts are encoded on all cores: a suite's 33,015 prompts are 8 M tokens, 1.3 s on one core.
  std::vector<TokenRequest> reqs(prompts.size());
  std::vector<std::exception_ptr> failed(prompts.size());
#pragma omp parallel for schedule(dynamic, 16)
  for (size_t i = 0; i < prompts.size(); ++i) try {
      reqs[i] = {encode_prompt(prompts[i]), opts[i]};
    } catch (...) {
      failed[i] = std::current_exception();
    }
  for (const std::exception_ptr& e : failed)
    if (e) std::rethrow_exception(e);  // the first prompt's error, as a loop on one core would give
  // Stop strings: decode what was generated and look for any of them.
  StopCheck stop = [&](size_t i, const std::vector<int32_t>& gen) {
    if (opts[i].stop.empty()) return false;
    return find_first_stop(tok_.decode(gen, /*skip_special=*/true), opts[i].stop) != std::string::npos;
  };
  std::vector<GenerationResult> out(prompts.size());
  auto finished = [&](size_t i, const TokenResult& t) {
    GenerationResult& r = out[i];
    r.text = answer_text(t.tokens, opts[i].stop);
    r.prompt_tokens = int(reqs[i].prompt.size());
    r.generated_tokens = int(t.tokens.size());
    r.finish_reason = t.finish_reason;
    r.prefill_ms = t.prefill_ms;
    r.decode_ms = t.decode_ms;
    if (control.on_finish) control.on_finish(i, r);
  };
  generate_tokens(*fwd_, reqs, eos_, stop, loop_options(control.max_in_flight), finished, control.on_step,
                  control.stats);
  return out;
}

LoopOptions Engine::loop_options(int max_in_flight) const {
  return LoopOptions{.max_in_flight = max_in_flight, .reuse_prefixes = opt_.reuse_prefixes,
                     .max_step_tokens = opt_.max_step_tokens};
}

std::unique_ptr<DecodeLoop> Engine::decode_loop(int max_in_flight, StopCheck stop) {
  return std::make_unique<DecodeLoop>(*fwd_, eos_, loop_options(max_in_flight), std::move(stop));
}

std::string Engine::answer_text(std::span<const int32_t> generated, const std::vector<std::string>& stop) const {
  std::string text = tok_.decode(generated, /*skip_special=*/true);
  if (size_t at = find_first_stop(text, stop); at != std::string::npos) text.resize(at);
  return text;
}

size_t find_first_stop(std::string_view text, const std::vector<std::string>& stop) {
  size_t first = std::string_view::npos;
  for (auto& s : stop)
    if (!s.empty()) first = std::min(first, text.find(s));
  return first;
}

std::unique_ptr<Engine> Engine::synthetic(const std::string& preset, uint64_t seed, const EngineOptions& opt,
                                          const std::filesystem::path& tokenizer_dir) {
  check_batch_invariance(opt);
  ModelConfig c = preset_config(preset);
  auto synthetic_tokenizer = [&] {
    auto files = make_synthetic_tokenizer(c.vocab);
    return Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json, "synthetic tokenizer");
  };
  Tokenizer tok = tokenizer_dir.empty() ? synthetic_tokenizer() : Tokenizer::load(tokenizer_dir);
  if (tok.vocab_size() > c.vocab)
    fail("{}: the tokenizer has {} ids, more than the {} of preset {}", tokenizer_dir.string(), tok.vocab_size(),
         c.vocab, preset);
  c.bos_id = tok.bos_id();
  auto eos = tok.eos_ids();
  c.eos_ids.assign(eos.begin(), eos.end());
  // The weights are drawn where the backend keeps them: a GPU draws them on the device, so an 8B model is ready in
  // seconds and needs no host copy (the host model then holds the config alone).
  auto host = std::make_unique<Model>();
  host->cfg = c;
  auto fwd = make_synthetic_forward(c, precision_to_quant(opt), seed, opt.device, opt.stages, *host);
  return std::unique_ptr<Engine>(
      new Engine("synthetic-" + preset, std::move(host), std::move(fwd), std::move(tok), opt));
}

nlohmann::json Engine::memory_report() const {
  // Parameters (matrices and norms, from the tensor table) let reports place runs by model size whatever the
  // precision.
  size_t parameters = 0;
  for (const TensorSpec& t : tensor_specs(model_->cfg)) {
    size_t n = 1;
    for (int64_t d : t.shape) n *= size_t(d);
    parameters += n;
  }
  const MemoryFigures m = fwd_->memory();
  // The stored matrices at the precision run: the decoder linears, the embedding and an untied (or quantized)
  // lm_head. Weights drawn on a GPU are counted there.
  size_t weights = model_->layers.empty() ? m.weight_bytes : 0;
  for (auto& L : model_->layers)
    for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      weights += l->q ? l->q->bytes() : l->weight_bytes();
  if (!model_->layers.empty()) {
    weights += size_t(model_->cfg.vocab) * size_t(model_->cfg.hidden) * dtype_size(model_->embed_dtype);
    if (model_->lm_head.q) weights += model_->lm_head.q->bytes();  // --quantize-lm-head: its own matrix
    else if (!model_->cfg.tie_embeddings) weights += model_->lm_head.weight_bytes();
  }
  nlohmann::json report = {{"device", opt_.device}, {"precision", opt_.precision->name}, {"weight_bytes", weights},
                           {"parameters", parameters}};
  if (opt_.device == "cpu") {
    // What the model holds, apart from what the process does: the host-memory account counts the weights as used
    // (not a 16-bit checkpoint it quantized from), the KV caches, activations and kernel scratch; the resident set
    // adds code, libraries, allocator slack and whatever stored pages are still mapped in.
    const size_t held = m.weight_bytes + m.kv_cache_peak_bytes;
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    report.update({{"weight_bytes", m.weight_bytes},
                   {"kv_cache_peak_bytes", m.kv_cache_peak_bytes},
                   {"activations_peak_bytes", m.allocator_peak_bytes > held ? m.allocator_peak_bytes - held : 0},
                   {"allocator_peak_bytes", m.allocator_peak_bytes},
                   {"host_peak_rss_bytes", size_t(usage.ru_maxrss) * 1024}});  // ru_maxrss is in KiB on Linux
    return report;
  }
  // A GPU: the tracked allocator's peak, and the device's own (its context included).
  report.update({{"kv_cache_peak_bytes", m.kv_cache_peak_bytes},
                 {"allocator_peak_bytes", m.allocator_peak_bytes},
                 {"device_peak_bytes", m.device_peak_bytes},
                 {"device_total_bytes", m.device_total_bytes},
                 {"device_name", m.device_name}});
  if (m.per_device.size() > 1) {  // a pipeline: the totals above, and each stage's layers and its device's figures
    nlohmann::json devices = nlohmann::json::array(), per_device = nlohmann::json::array();
    for (const DeviceMemory& d : m.per_device) {
      devices.push_back(d.device);
      per_device.push_back({{"device", d.device}, {"name", d.name}, {"first_layer", d.first_layer},
                            {"end_layer", d.end_layer}, {"weights_bytes", d.weight_bytes},
                            {"allocator_peak_bytes", d.allocator_peak_bytes},
                            {"device_peak_bytes", d.device_peak_bytes}, {"device_total_bytes", d.device_total_bytes}});
    }
    report.update({{"devices", devices}, {"per_device", per_device}});
  }
  return report;
}

}  // namespace bq
