// Batch-invariant mode on the GPU (cuda::set_batch_invariant), through whole forward passes: a sequence's logits are
// the same bits whether its prompt runs alone, in chunks, beside other sequences' prompt and decode rows (launches of
// more than 64 rows, the sequence at any place in them), or after a prefix copied from another sequence; and the
// greedy answers of the trained fixture model are the same at any batch size, with and without prefix reuse and
// chunked prefill. Skips without a GPU.
#ifdef BIOMEDQ_HAVE_CUDA
#include <gtest/gtest.h>

#include <random>

#include "backend/cuda/allocator.h"
#include "backend/cuda/cuda_forward.h"
#include "backend/cuda/ops.h"
#include "core/error.h"
#include "model/model.h"
#include "model/quantize_model.h"
#include "batch_invariance_check.h"
#include "test_util.h"

namespace bq {
namespace {

using test::schedule_differences;

#define REQUIRE_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

struct BatchInvariantOn {
  const bool before = cuda::batch_invariant();
  BatchInvariantOn() { cuda::set_batch_invariant(true); }
  ~BatchInvariantOn() { cuda::set_batch_invariant(before); }
};

// The trained fixture model (widths of 256 and 768: the tiled tensor-core kernel, head_dim 64: the prompt
// attention kernel), bf16 and quantized with 16-bit compute.
TEST(CudaBatchInvariant, LogitsDoNotDependOnTheStep) {
  REQUIRE_GPU();
  BatchInvariantOn on;
  for (const char* p : {"bf16", "nf4/f16", "int8/f16", "nf4/bf16"}) {
    SCOPED_TRACE(p);
    Model m = test::trained_fixture(p);
    CudaForward f(m);
    EXPECT_EQ(schedule_differences(f), std::vector<std::string>{});
  }
}

// Widths the tiled kernel does not take (hidden 96; fp32 compute): the CUDA-core products in launches of up to 32
// rows, and the decode attention where the prompt kernel does not take the head size.
TEST(CudaBatchInvariant, LogitsDoNotDependOnTheStepOnCudaCoreProducts) {
  REQUIRE_GPU();
  BatchInvariantOn on;
  ModelConfig c = preset_config("llama-3.1-8b");
  c.hidden = 96, c.intermediate = 160, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 24;
  c.vocab = 301, c.max_positions = 512;
  Model m = synthesize_model(c, 4, 0.2f);
  {
    CudaForward f(m);
    EXPECT_EQ(schedule_differences(f), std::vector<std::string>{});
  }
  quant::QuantOptions opt;
  opt.scheme = quant::Scheme::NF4;
  quantize_model(m, opt);  // fp32 compute
  CudaForward f(m);
  EXPECT_EQ(schedule_differences(f), std::vector<std::string>{});
}

// LLM.int8 picks its outlier columns over the whole step: refused in this mode, with the reason.
TEST(CudaBatchInvariant, LlmInt8IsRefused) {
  REQUIRE_GPU();
  BatchInvariantOn on;
  Model m = test::trained_fixture("llm-int8");
  CudaForward f(m);
  const int s = f.open_sequence(4);
  ForwardBatch b{{1, 2, 3}, {s, s, s}, {2}};
  std::vector<float> logits(size_t(m.cfg.vocab));
  try {
    f.run(b, logits.data());
    FAIL() << "LLM.int8 ran in batch-invariant mode";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outlier columns over the whole batch"), std::string::npos) << e.what();
  }
}

// The target on the GPU: the greedy answers of prompts that share an instruction, as evaluation sends them,
// are the same one at a time, 5 or 24 in flight, with and without prefix reuse, and in chunks of 7 rows.
TEST(CudaBatchInvariant, GreedyAnswersDoNotDependOnTheBatch) {
  REQUIRE_GPU();
  BatchInvariantOn on;
  for (const char* p : {"bf16", "nf4/f16"}) {
    SCOPED_TRACE(p);
    Model m = test::trained_fixture(p);
    CudaForward f(m);
    EXPECT_EQ(test::greedy_answer_differences(f, 24), std::vector<std::string>{});
  }
}

}  // namespace
}  // namespace bq
#endif
