// The generation interface the evaluation harness drives; the engine implements it.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace bq {

struct SamplingOptions {
  float temperature = 0.0f;  // 0 = greedy
  float top_p = 1.0f;
  int top_k = 0;
  uint64_t seed = 0;
  int max_new_tokens = 128;
  std::vector<std::string> stop;
};

struct GenerationResult {
  std::string text;
  int prompt_tokens = 0;
  int generated_tokens = 0;
  std::string finish_reason;  // "eos" | "stop" | "length"
  double prefill_ms = 0, decode_ms = 0;
};

// What a decode loop's steps did, for throughput reports. A step that admits prompts prefills them (decoding the
// live sequences alongside); a decode step only decodes, and its rows over its count is the batch it kept busy.
struct LoopStats {
  size_t prefill_steps = 0, decode_steps = 0;
  size_t prompt_tokens = 0;     // prefilled
  size_t prompt_tokens_reused = 0;  // taken from another request's cache instead (prefix reuse)
  size_t decode_rows = 0;       // sequences decoded, summed over decode steps
  size_t generated_tokens = 0;  // by every step
  double prefill_ms = 0, decode_ms = 0;  // wall time in each kind of step
  double cache_ms = 0;  // wall time opening, prefix-copying and closing the sequences' caches (between steps)
  size_t preemptions = 0;  // sequences set back to the queue when the KV cache was full (DecodeLoop)
};

// How many prompts are decoded together: at most max_in_flight sequences (0: every prompt at once), a new prompt
// admitted as soon as another finishes (continuous batching); on_finish(i, result) is called as prompt i finishes,
// on_step(n) after every forward step with the n tokens it generated (progress while answers are long); the steps
// are added to *stats when given.
struct BatchControl {
  int max_in_flight = 0;
  std::function<void(size_t, const GenerationResult&)> on_finish;
  std::function<void(size_t)> on_step;
  LoopStats* stats = nullptr;
};

struct ChatTurn {
  std::string role, content;
};

class TextGenerator {
 public:
  virtual ~TextGenerator() = default;
  // Renders a chat with the model's own template (or plain concatenation when chat is off). `thinking` sets the
  // template's enable_thinking (Qwen3's reasoning switch); unset, the template decides.
  virtual std::string format_prompt(const std::vector<ChatTurn>& turns, bool use_chat_template,
                                    std::optional<bool> thinking) const = 0;
  // Generates for several prompts (batched where the engine can). One SamplingOptions per prompt (seeds differ for SC).
  // Results come back in prompt order, and through control.on_finish as each prompt ends.
  virtual std::vector<GenerationResult> generate(const std::vector<std::string>& prompts,
                                                 const std::vector<SamplingOptions>& opts,
                                                 const BatchControl& control = {}) = 0;
  virtual std::string model_name() const = 0;
  virtual nlohmann::json memory_report() const = 0;
  // Tokens of text as an answer (no BOS): how long a gold answer would be in this model's tokens.
  virtual int count_tokens(const std::string& text) const = 0;  // peak bytes etc., whatever the backend measures
};

}  // namespace bq
