// The acceptance test of the CPU engine: logits and greedy continuations equal those of Hugging Face transformers
// (float32 reference) on tiny checkpoints of every architecture variant (fixtures made by
// scripts/make_parity_fixtures.py on the GPU machine).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_forward.h"
#include "core/files.h"
#include "core/npy.h"
#include "generate/generate.h"
#include "test_util.h"

namespace bq {
namespace {

class Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Parity, LogitsAndGreedyMatchTransformers) {
  auto dir = test::source_dir() / "tests/fixtures/parity" / GetParam();
  auto fixture = nlohmann::json::parse(read_file(dir / "fixture.json"));
  NpyArray ref = read_npy(dir / "logits.npy");
  Model m = load_model(dir);
  std::vector<int32_t> ids = fixture["ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(ref.shape, (std::vector<int64_t>{int64_t(ids.size()), m.cfg.vocab}));

  CpuForward fwd(m);
  int seq = fwd.open_sequence(int(ids.size()));
  ForwardBatch b;
  for (size_t i = 0; i < ids.size(); ++i) b.tokens.push_back(ids[i]), b.seq.push_back(seq), b.logit_rows.push_back(int(i));
  std::vector<float> ours(ref.data.size());
  fwd.run(b, ours.data());
  fwd.close_sequence(seq);
  double max_ref = 0, max_diff = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    max_ref = std::max(max_ref, double(std::fabs(ref.data[i])));
    max_diff = std::max(max_diff, double(std::fabs(ref.data[i] - ours[i])));
  }
  EXPECT_LE(max_diff, 1e-3 * max_ref) << "max |ours - ref| = " << max_diff << ", max |ref| = " << max_ref;

  // Greedy continuation: identical while the reference's top-1 margin is clear of our numerical error.
  auto greedy = fixture["greedy"].get<std::vector<int32_t>>();
  auto margins = fixture["greedy_margins"].get<std::vector<double>>();
  size_t comparable = 0;
  while (comparable < margins.size() && margins[comparable] > 1e-3) ++comparable;
  ASSERT_GE(comparable, 8u) << "fixture has too small logit margins to compare continuations";
  SamplingOptions greedy_opt;
  greedy_opt.max_new_tokens = int(comparable);
  auto gen = generate_tokens(fwd, {{ids, greedy_opt}}, /*eos_ids=*/{});
  EXPECT_EQ(gen[0].tokens, std::vector<int32_t>(greedy.begin(), greedy.begin() + long(comparable)));
}

INSTANTIATE_TEST_SUITE_P(Transformers, Parity,
                         ::testing::Values("llama3-sharded", "llama-linear-v4", "qwen2-bias-tied", "phi3-fused",
                                           "mistral", "qwen3-qknorm-tied", "gemma3-sliding",
                                           "gemma3-mm-tower"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace bq
