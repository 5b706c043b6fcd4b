// A model plus its tokenizer and chat template, generating text: what the CLI and the evaluation harness drive.
#pragma once
#include <filesystem>
#include <memory>
#include <span>
#include <string_view>

#include "backend/stages.h"
#include "backend/forward.h"
#include "generate/generate.h"
#include "generate/text_generator.h"
#include "model/quantize_model.h"
#include "tokenizer/tokenizer.h"

namespace bq {

struct EngineOptions : PrecisionOptions {
  std::string device = "cpu";          // cpu | cuda
  std::vector<PipelineStage> stages;  // cuda: the layer pipeline (none: all layers on the current device)
  bool reuse_prefixes = true;         // prompts that begin alike share the computed prefix (DecodeLoop)
  int max_step_tokens = 0;            // rows of one forward step at most, prompts prefilled in chunks (0: no limit)
  size_t kv_cache_limit = 0;          // bytes the KV cache may hold (0: the device's memory); DecodeLoop preempts
  bool batch_invariant = false;       // answers independent of the batch (backend.h; process-wide, set by the engine)
};

class Engine : public TextGenerator {
 public:
  Engine(const std::filesystem::path& model_dir, const EngineOptions& opt = {});
  // An in-memory model (e.g. synthesize_model) with its tokenizer; `name` stands for the model in outputs.
  Engine(std::string name, Model model, Tokenizer tok, const EngineOptions& opt = {});
  // A random-weight model of a preset's shapes, kept in memory, with the synthetic tokenizer as `synth` writes it,
  // or the tokenizer of `tokenizer_dir` (tokenizer.json and tokenizer_config.json; its ids must fit the preset's
  // vocabulary): random weights then read and write the token counts a real model of that family would.
  static std::unique_ptr<Engine> synthetic(const std::string& preset, uint64_t seed, const EngineOptions& opt,
                                           const std::filesystem::path& tokenizer_dir = {});

  std::string format_prompt(const std::vector<ChatTurn>& turns, bool use_chat_template,
                            std::optional<bool> thinking) const override;
  std::vector<GenerationResult> generate(const std::vector<std::string>& prompts,
                                         const std::vector<SamplingOptions>& opts,
                                         const BatchControl& control = {}) override;
  std::string model_name() const override { return name_; }
  nlohmann::json memory_report() const override;
  int count_tokens(const std::string& text) const override { return int(tok_.encode(text, false).size()); }

  const Model& model() const { return *model_; }
  // The options the model runs with: the precision resolved against a checkpoint saved quantized.
  const EngineOptions& options() const { return opt_; }
  const Tokenizer& tokenizer() const { return tok_; }
  // Prompt text to ids (Tokenizer::encode_prompt).
  std::vector<int32_t> encode_prompt(const std::string& prompt) const;
  // A decode loop over this engine's backend and end-of-sequence ids, for callers that feed it requests as they
  // arrive (the server); it must not outlive the engine, and generate() must not run while it is stepped.
  std::unique_ptr<DecodeLoop> decode_loop(int max_in_flight, StopCheck stop);
  // Generated ids as generate() returns their text: decoded without special tokens, cut at the first stop string.
  std::string answer_text(std::span<const int32_t> generated, const std::vector<std::string>& stop) const;

 private:
  // A model and its forward (null: made over the model, quantized as opt asks).
  Engine(std::string name, std::unique_ptr<Model> model, std::unique_ptr<ForwardBackend> fwd, Tokenizer tok,
         const EngineOptions& opt);
  LoopOptions loop_options(int max_in_flight) const;

  std::string name_;
  std::unique_ptr<Model> model_;
  Tokenizer tok_;
  EngineOptions opt_;
  std::unique_ptr<ForwardBackend> fwd_;
  std::vector<int32_t> eos_;
};

// Where the earliest of the stop strings starts in text (npos: none occurs; empty strings never match).
size_t find_first_stop(std::string_view text, const std::vector<std::string>& stop);

}  // namespace bq
