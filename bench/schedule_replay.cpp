// The decode loop's scheduling of an evaluation, replayed without a model: eval's prompts (the data's test splits,
// zero-shot instruction prompts, the tokenizer's chat template) and answers stopped at their gold lengths, one loop
// per task as eval runs them, through a backend that computes nothing. Prints what the run's results.json would
// count (steps, prefill and decode, mean decode batch, prompt tokens computed and reused), and the CUDA passes of
// more than 64 rows those steps make for the preset (cuda::max_rows_per_pass: each dequantizes every quantized
// weight), as JSON, so that a change of scheduling can be weighed without a GPU. On the suite it gives the H200
// runs' counts to the token.
// Usage: schedule_replay DATA_DIR TOKENIZER_DIR TASKS_DIR [BATCH=64] [PRESET=llama-3.1-8b]
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>

#include "backend/cuda/layout.h"
#include "eval/run.h"
#include "generate/generate.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

using namespace bq;

namespace {

// Sequences as lengths only; every greedy pick is token 0, never an end of sequence, so answers run to their limit.
class NoComputeBackend : public ForwardBackend {
 public:
  explicit NoComputeBackend(ModelConfig c) : cfg_(std::move(c)) {}
  int open_sequence(int) override {
    for (size_t i = 0; i < length_.size(); ++i)
      if (length_[i] < 0) return length_[i] = 0, int(i);
    length_.push_back(0);
    return int(length_.size() - 1);
  }
  void close_sequence(int id) override { length_[size_t(id)] = -1; }
  int sequence_length(int id) const override { return length_[size_t(id)]; }
  void run(const ForwardBatch&, float*) override { fail("schedule_replay: greedy steps only"); }
  void run_greedy(const ForwardBatch& b, int32_t* next) override {
    step_rows.push_back(int(b.tokens.size()));
    for (int s : b.seq) length_[size_t(s)]++;
    std::fill(next, next + b.logit_rows.size(), 0);
  }
  bool copy_prefix(int, int to, int positions) override { return length_[size_t(to)] = positions, true; }
  void set_kv_cache_limit(size_t) override {}
  const ModelConfig& config() const override { return cfg_; }
  MemoryFigures memory() const override { return {}; }
  std::vector<int> step_rows;  // rows of each step

 private:
  ModelConfig cfg_;
  std::vector<int> length_;  // -1: closed
};

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 4) fail("usage: schedule_replay DATA_DIR TOKENIZER_DIR TASKS_DIR [BATCH=64] [PRESET=llama-3.1-8b]");
  eval::EvalConfig cfg;
  cfg.data_dir = argv[1];
  cfg.tasks_dir = argv[3];
  const int batch = argc > 4 ? std::stoi(argv[4]) : 64;
  const Tokenizer tok = Tokenizer::load(argv[2]);
  std::map<std::string, std::vector<TokenRequest>> by_task;
  for (const nlohmann::json& r : eval::export_prompts(cfg)) {
    TokenRequest q;  // as eval renders and encodes its prompts (thinking off)
    q.prompt = tok.encode_prompt(render_chat(tok, {{"user", r["prompt"]}}, false));
    q.opt.max_new_tokens = std::max<int>(1, int(tok.encode(r["answer"].get<std::string>()).size()));
    by_task[r["task"]].push_back(std::move(q));
  }
  ModelConfig c = preset_config(argc > 5 ? argv[5] : "llama-3.1-8b");
  const int pass_rows = cuda::max_rows_per_pass(c);
  c.max_positions = 1 << 30;  // lengths only
  NoComputeBackend backend(c);
  LoopStats s;
  for (auto& [task, reqs] : by_task)
    generate_tokens(backend, reqs, /*eos_ids=*/{}, nullptr, LoopOptions{.max_in_flight = batch}, nullptr, nullptr, &s);
  size_t passes = 0;  // of the steps that do not fit one tensor-core product launch
  for (int rows : backend.step_rows)
    if (rows > cuda::kTcGemmMaxRows) passes += size_t((rows + pass_rows - 1) / pass_rows);
  const nlohmann::json out = {
      {"batch", batch},
      {"preset", argc > 5 ? argv[5] : "llama-3.1-8b"},
      {"pass_rows", pass_rows},
      {"passes", passes},
      {"prefill_steps", s.prefill_steps},
      {"decode_steps", s.decode_steps},
      {"mean_decode_batch", s.decode_steps ? double(s.decode_rows) / double(s.decode_steps) : 0.0},
      {"prompt_tokens", s.prompt_tokens},
      {"prompt_tokens_reused", s.prompt_tokens_reused},
      {"generated_tokens", s.generated_tokens}};
  std::printf("%s\n", out.dump(1).c_str());
} catch (const std::exception& e) {
  std::fprintf(stderr, "schedule_replay: %s\n", e.what());
  return 1;
}
