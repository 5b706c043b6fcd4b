#include <gtest/gtest.h>

#include <cmath>

#include "backend/backend.h"
#include "backend/cpu/cpu_forward.h"
#include "core/error.h"
#include "model/quantize_model.h"
#include "batch_invariance_check.h"
#include "prefix_copy_check.h"
#include "test_util.h"
#ifdef BIOMEDQ_HAVE_CUDA
#include "backend/cuda/allocator.h"
#endif

namespace bq {
namespace {

// The batch checks both forwards share: positions follow each sequence's fill, and each bad batch names its fault.
TEST(Backend, RowPositionsFollowTheCachesAndNameBadRows) {
  const std::vector<CacheFill> caches = {{true, 3, 8}, {false, 0, 0}, {true, 0, 2}};
  ForwardBatch b{{5, 6, 7, 8}, {0, 2, 0, 2}, {1, 3}};
  EXPECT_EQ(row_positions(b, caches, 10), (std::vector<int>{3, 0, 4, 1}));
  auto error = [&](ForwardBatch bad) { return test::error_of([&] { row_positions(bad, caches, 10); }); };
  EXPECT_NE(error({{5}, {1}, {}}).find("row 0 names no open sequence (1)"), std::string::npos);
  EXPECT_NE(error({{5}, {3}, {}}).find("row 0 names no open sequence (3)"), std::string::npos);
  EXPECT_NE(error({{5, 6, 7}, {2, 2, 2}, {}}).find("sequence 2 is full (2 positions)"), std::string::npos);
  EXPECT_NE(error({{10}, {0}, {}}).find("token id 10 outside the vocabulary of 10"), std::string::npos);
  EXPECT_NE(error({{1}, {0}, {1}}).find("logit row 1 outside the batch of 1"), std::string::npos);
  EXPECT_NE(error({{1, 2}, {0}, {}}).find("tokens and seq differ in length"), std::string::npos);
}

// Batch-invariant mode on the CPU: a sequence's logits are the same bits alone, in chunks (one-row steps take the
// matrix-vector products otherwise), beside other rows and after a copied prefix, at every precision but LLM.int8,
// which is refused. Off, the one-row steps sum otherwise (the check sees it, so it can fail).
TEST(Backend, CpuBatchInvariantModeLogitsDoNotDependOnTheStep) {
  const bool before = batch_invariant();
  set_batch_invariant(true);
  for (const char* p : {"bf16", "nf4", "nf4/f16", "int8/bf16", "fp4-nodq"}) {
    SCOPED_TRACE(p);
    Model m = synthesize_model(preset_config("tiny"), 31, 0.3f);
    const std::string name = p;
    if (name != "bf16") {
      quant::QuantOptions opt;
      opt.scheme = name.rfind("int8", 0) == 0 ? quant::Scheme::Int8
                   : name.rfind("fp4", 0) == 0 ? quant::Scheme::FP4 : quant::Scheme::NF4;
      opt.double_quant = name.find("nodq") == std::string::npos;
      opt.compute = name.find("/f16") != std::string::npos ? DType::F16
                    : name.find("/bf16") != std::string::npos ? DType::BF16 : DType::F32;
      quantize_model(m, opt);
    }
    CpuForward f(m);
    EXPECT_EQ(test::schedule_differences(f), std::vector<std::string>{});
  }
  Model m = synthesize_model(preset_config("tiny"), 31, 0.3f);
  quant::QuantOptions llm_int8;
  llm_int8.scheme = quant::Scheme::LLMInt8;
  quantize_model(m, llm_int8);
  CpuForward f(m);
  const int s = f.open_sequence(4);
  ForwardBatch b{{1, 2, 3}, {s, s, s}, {2}};
  std::vector<float> logits(static_cast<size_t>(m.cfg.vocab));
  EXPECT_NE(test::error_of([&] { f.run(b, logits.data()); }).find("outlier columns over the whole batch"),
            std::string::npos);
  set_batch_invariant(false);
  Model plain = synthesize_model(preset_config("tiny"), 31, 0.3f);
  CpuForward g(plain);
  EXPECT_FALSE(test::schedule_differences(g).empty()) << "without the mode, one-row steps sum otherwise";
  set_batch_invariant(before);
}

// The target on the CPU: the trained fixture model's greedy answers (10 prompts), bf16 and nf4, are the same
// at any batch size, with and without prefix reuse and chunked prefill, in batch-invariant mode.
TEST(Backend, CpuBatchInvariantModeGreedyAnswersDoNotDependOnTheBatch) {
  const bool before = batch_invariant();
  set_batch_invariant(true);
  for (const char* p : {"bf16", "nf4/f16"}) {
    SCOPED_TRACE(p);
    Model m = test::trained_fixture(p);
    CpuForward f(m);
    EXPECT_EQ(test::greedy_answer_differences(f, 10), std::vector<std::string>{});
  }
  set_batch_invariant(before);
}

// A prompt continued from a copied prefix gets the logits of the whole prompt: each position's keys and values depend
// on the positions before it only. Only to fp32 rounding: a prefill of another length may take another BLAS kernel
// and sum in another order.
TEST(Backend, CpuPrefixCopyEqualsPrefill) {
  Model m = synthesize_model(preset_config("tiny"), 31, 0.3f);
  CpuForward f(m);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 201; ++i) prompt.push_back(int32_t((i * 37 + 11) % m.cfg.vocab));
  // Within the first 64-position page, a whole page, pages shared and the rest of the prefix copied.
  for (int shared : {1, 17, 40, 64, 100, 128, 200}) {
    auto got = test::prefix_copy_logits(f, prompt, shared);
    double num = 0, den = 0;
    for (size_t i = 0; i < got.whole.size(); ++i)
      num += std::pow(double(got.continued[i]) - got.whole[i], 2), den += std::pow(double(got.whole[i]), 2);
    EXPECT_LE(std::sqrt(num / den), 1e-5) << shared << " positions copied";
    EXPECT_GT(den, 0.0);
  }
  EXPECT_EQ(f.memory().kv_cache_bytes, 0u);
}

TEST(Backend, PrefixCopyNamesWhatIsWrong) {
  Model m = synthesize_model(preset_config("tiny"), 31, 0.3f);
  CpuForward f(m);
  const int a = f.open_sequence(8), b = f.open_sequence(4), closed = f.open_sequence(4);
  f.close_sequence(closed);
  f.run({{1, 2, 3, 4, 5, 6}, std::vector<int>(6, a), {5}}, std::vector<float>(size_t(m.cfg.vocab)).data());
  auto error = [&](int from, int to, int n) { return test::error_of([&] { f.copy_prefix(from, to, n); }); };
  EXPECT_NE(error(a, closed, 2).find(fmt::format("sequence {} is not open", closed)), std::string::npos);
  EXPECT_NE(error(a, a, 2).find("onto itself"), std::string::npos);
  EXPECT_NE(error(a, b, 7).find(fmt::format("7 positions from sequence {} (holding 6)", a)), std::string::npos);
  EXPECT_NE(error(a, b, 5).find("(room for 4)"), std::string::npos);
  EXPECT_NE(error(a, b, 0).find("0 positions"), std::string::npos);
  ASSERT_TRUE(f.copy_prefix(a, b, 3));
  EXPECT_NE(error(a, b, 2).find(fmt::format("sequence {} already holds 3 positions", b)), std::string::npos);
}

TEST(Backend, PicksDeviceOrSaysWhy) {
  Model m = synthesize_model(preset_config("tiny"), 1);
  EXPECT_NE(dynamic_cast<CpuForward*>(make_forward(m, "cpu").get()), nullptr);
  try {
    make_forward(m, "tpu");
    FAIL() << "unknown device accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown device 'tpu'"), std::string::npos);
  }
  try {
    make_forward(m, "cpu", {{0, 0, 2}});
    FAIL() << "a CUDA pipeline accepted for the CPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--devices applies to --device cuda only"), std::string::npos);
  }
#ifdef BIOMEDQ_HAVE_CUDA
  if (cuda::device_count() > 0) {
    EXPECT_NE(make_forward(m, "cuda"), nullptr);
  }
#else
  try {
    make_forward(m, "cuda");
    FAIL() << "cuda accepted without a CUDA build";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-DBIOMEDQ_CUDA=ON"), std::string::npos);
  }
#endif
}

}  // namespace
}  // namespace bq
