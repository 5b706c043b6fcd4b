// synth, generate, logits: the commands that load (or make) a model and run it.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "backend/backend.h"
#include "backend/forward.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "core/npy.h"
#include "plan/memory_planner.h"
#include "generate/engine.h"
#include "model/quantize_checkpoint.h"
#include "model/quantize_model.h"
#include "quant/precision.h"
#include "tokenizer/tokenizer.h"

namespace bq::cli {

namespace {

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(item);
      ids.push_back(int32_t(v));
    } catch (const std::exception&) {
      fail("--ids: '{}' is not a token id", item);
    }
  }
  if (ids.empty()) fail("--ids: no token ids given");
  return ids;
}

struct SynthArgs {
  std::string arch, preset, out;  // arch: the preset's (tiny: llama) unless given
  int hidden = 0, layers = 0, heads = 0, kv_heads = 0, intermediate = 0, vocab = 0;
  uint64_t seed = 0;
  size_t shard_mb = 2048;
  bool force = false;
};

void run_synth(const SynthArgs& a) {
  check_output_folder(a.out, a.force);
  ModelConfig c;
  if (!a.preset.empty()) {
    c = preset_config(a.preset);
  } else {
    if (!a.hidden || !a.layers || !a.heads || !a.intermediate || !a.vocab)
      fail("synth: give --preset, or all of --hidden --layers --heads --intermediate --vocab");
    c = preset_config("tiny");
    c.hidden = a.hidden;
    c.n_layers = a.layers;
    c.n_heads = a.heads;
    c.n_kv_heads = a.kv_heads ? a.kv_heads : a.heads;
    c.head_dim = a.hidden / a.heads;
    c.intermediate = a.intermediate;
    c.vocab = a.vocab;
    if (c.hidden % c.n_heads || c.n_heads % c.n_kv_heads) fail("synth: heads must divide hidden and kv-heads heads");
  }
  if (!a.arch.empty() && a.arch != c.arch) {
    const Architecture* arch = &find_architecture(a.arch, "synth --arch");
    if (!arch->text_tower_of.empty()) arch = &find_architecture(arch->text_tower_of, "synth --arch");
    apply_architecture(c, *arch);
  }
  // The synthetic tokenizer decides the special ids; the config agrees with it.
  auto tok_files = make_synthetic_tokenizer(c.vocab);
  Tokenizer tok = Tokenizer::from_json(tok_files.tokenizer_json, tok_files.tokenizer_config_json, "synthetic tokenizer");
  c.bos_id = tok.bos_id();
  auto eos = tok.eos_ids();
  c.eos_ids.assign(eos.begin(), eos.end());
  std::filesystem::path out = a.out;
  std::filesystem::create_directories(out);
  Model m = synthesize_model(c, a.seed);
  save_synthetic_checkpoint(m, out, a.shard_mb << 20);
  write_file_atomic(out / "tokenizer.json", tok_files.tokenizer_json);
  write_file_atomic(out / "tokenizer_config.json", tok_files.tokenizer_config_json);
  std::printf("wrote %s: %s, %d layers, hidden %d, vocab %d\n", out.c_str(), c.arch.c_str(), c.n_layers, c.hidden, c.vocab);
}

struct GenerateArgs {
  std::string model, prompt, system;
  bool chat = false;
  SamplingOptions opt;
  EngineOptions engine;
};

void run_generate(const GenerateArgs& a) {
  Engine engine(a.model, a.engine);
  std::vector<ChatTurn> turns;
  if (!a.system.empty()) turns.push_back({"system", a.system});
  turns.push_back({"user", a.prompt});
  std::string prompt = engine.format_prompt(turns, a.chat, std::nullopt);
  auto r = engine.generate({prompt}, {a.opt})[0];
  std::printf("%s\n", r.text.c_str());
  double tps = r.decode_ms > 0 ? 1000.0 * std::max(0, r.generated_tokens - 1) / r.decode_ms : 0;
  std::fprintf(stderr, "[%d prompt tokens, %d generated (%s); prefill %.1f ms, decode %.1f tokens/s]\n",
               r.prompt_tokens, r.generated_tokens, r.finish_reason.c_str(), r.prefill_ms, tps);
}

struct LogitsArgs {
  std::string model, ids, out;
  EngineOptions engine;
};

void run_logits(const LogitsArgs& a) {
  Model m = load_model(a.model);
  auto ids = parse_ids(a.ids);
  for (int32_t id : ids)
    if (id >= m.cfg.vocab) fail("--ids: {} is outside the vocabulary of {}", id, m.cfg.vocab);
  if (auto q = precision_to_quant(resolve_precision(a.engine, checkpoint_quantization(a.model), a.model)))
    quantize_model(m, *q);
  set_batch_invariant(a.engine.batch_invariant);
  auto fwd_ptr = make_forward(m, a.engine.device);
  ForwardBackend& fwd = *fwd_ptr;
  ForwardBatch b;
  int seq = fwd.open_sequence(int(ids.size()));
  for (size_t i = 0; i < ids.size(); ++i) {
    b.tokens.push_back(ids[i]);
    b.seq.push_back(seq);
    b.logit_rows.push_back(int(i));
  }
  std::vector<float> logits(ids.size() * size_t(m.cfg.vocab));
  fwd.run(b, logits.data());
  write_npy_f32(a.out, logits.data(), {int64_t(ids.size()), m.cfg.vocab});
  std::printf("wrote %s: [%zu, %d] float32 logits\n", a.out.c_str(), ids.size(), m.cfg.vocab);
}

}  // namespace

void add_precision_options(CLI::App* cmd, PrecisionOptions& e) {
  cmd->add_option_function<std::string>(
         "--precision",
         [&e](const std::string& v) {
           e.precision = &quant::precision_named(v);
           e.precision_given = true;
         },
         "bf16 | fp16 | fp32 (stored weights) | int8 | llm-int8 | nf4 | fp4 (default: a checkpoint saved quantized "
         "runs as stored, any other at bf16)")
      ->check(CLI::IsMember(quant::precision_names()));
  cmd->add_option_function<std::string>(
         "--double-quant",
         [&e](const std::string& v) {
           e.double_quant = v == "on";
           e.double_quant_given = true;
         },
         "4-bit: quantize the block maxima too (on | off; default on, as in the study, or as stored)")
      ->check(CLI::IsMember({"on", "off"}));
  cmd->add_option("--blocksize", e.blocksize, "4-bit block size (32..4096, default 64, or as stored)")
      ->each([&e](const std::string&) { e.blocksize_given = true; });
  cmd->add_option("--compute-dtype", e.compute_dtype,
                  "quantized linears: activations in and results out rounded to fp16 | bf16 | fp32 "
                  "(bitsandbytes' compute dtype; default fp16, as in the study; on CUDA fp16/bf16 use the tensor cores)")
      ->check(CLI::IsMember({"fp16", "bf16", "fp32"}));
  cmd->add_flag("--quantize-lm-head", e.quantize_lm_head, "quantize lm_head too (bitsandbytes keeps it 16-bit)");
}

void add_engine_options(CLI::App* cmd, EngineOptions& e) {
  cmd->add_option("--device", e.device, "cpu | cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  add_precision_options(cmd, e);
  cmd->add_flag("!--no-prefix-reuse", e.reuse_prefixes,
                "compute every prompt whole, even where it begins like another live prompt (for A/B checks)");
  cmd->add_option("--max-step-tokens", e.max_step_tokens,
                  "rows of one forward step at most, and so sequences live at once: prompts are prefilled in chunks "
                  "beside the decoding sequences, so a long prompt does not stall the others (0 = no limit)")
      ->check(CLI::Range(0, 1 << 24));
  cmd->add_flag("--batch-invariant", e.batch_invariant,
                "answers that do not depend on the batch size, prefix reuse or chunked prefill: every product and "
                "attention sums each row alike (slower prefill of large batches; not with llm-int8)");
  cmd->add_option_function<std::string>(
      "--kv-cache-limit",
      [&e](const std::string& size) { e.kv_cache_limit = plan::parse_memory_size(size, "--kv-cache-limit"); },
      "the most memory the KV cache may take (e.g. 8GB, 512MiB; default: what the device has); requests past it wait, "
      "the newest live one set back to recompute later");
}

void register_model_commands(CLI::App& app) {
  auto synth = std::make_shared<SynthArgs>();
  auto* s = app.add_subcommand("synth", "Write a random-weight Hugging Face checkpoint with a working tokenizer");
  s->add_option("--arch", synth->arch, "architecture (model_type)")->check(CLI::IsMember(architecture_names()));
  std::string presets;
  for (auto& p : preset_names()) presets += (presets.empty() ? "" : ", ") + p;
  s->add_option("--preset", synth->preset, "Real model shapes: " + presets);
  s->add_option("--hidden", synth->hidden);
  s->add_option("--layers", synth->layers);
  s->add_option("--heads", synth->heads);
  s->add_option("--kv-heads", synth->kv_heads);
  s->add_option("--intermediate", synth->intermediate);
  s->add_option("--vocab", synth->vocab);
  s->add_option("--seed", synth->seed);
  s->add_option("--shard-mb", synth->shard_mb, "Largest shard size in MiB");
  s->add_option("--out", synth->out, "Output folder")->required();
  s->add_flag("--force", synth->force, "Write into an output folder that already holds files");
  s->callback([synth] { run_synth(*synth); });

  auto gen = std::make_shared<GenerateArgs>();
  auto* g = app.add_subcommand("generate", "Generate text from a prompt");
  g->add_option("--model", gen->model, "Checkpoint folder")->required();
  g->add_option("--prompt", gen->prompt, "Prompt text")->required();
  g->add_flag("--chat", gen->chat, "Wrap the prompt in the model's chat template");
  g->add_option("--system", gen->system, "System message (with --chat)");
  g->add_option("--max-new-tokens", gen->opt.max_new_tokens)->check(CLI::Range(0, 1 << 20));
  g->add_option("--temperature", gen->opt.temperature, "0 = greedy")->check(CLI::Range(0.0, 100.0));
  g->add_option("--top-p", gen->opt.top_p)->check(CLI::Range(0.0, 1.0));
  g->add_option("--top-k", gen->opt.top_k)->check(CLI::Range(0, 1 << 30));
  g->add_option("--seed", gen->opt.seed);
  g->add_option("--stop", gen->opt.stop, "Stop string (repeatable)");
  add_engine_options(g, gen->engine);
  g->callback([gen] { run_generate(*gen); });

  auto lg = std::make_shared<LogitsArgs>();
  auto* l = app.add_subcommand("logits", "Write next-token logits at every position as a float32 .npy [n_ids, vocab]");
  l->add_option("--model", lg->model, "Checkpoint folder")->required();
  l->add_option("--ids", lg->ids, "Comma-separated token ids")->required();
  l->add_option("--out", lg->out, "Output .npy file")->required();
  add_engine_options(l, lg->engine);
  l->callback([lg] { run_logits(*lg); });
}

}  // namespace bq::cli
