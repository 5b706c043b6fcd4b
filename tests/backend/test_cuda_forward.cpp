// CudaForward against CpuForward at the same precision: the parity checkpoints, quantized variants, a synthetic
// model of real width, several sequences in flight, graph replay. Skips without a GPU.
//
// Tolerances. The GPU keeps the KV cache in bf16 (relative rounding 2^-9 per value) and feeds prefill GEMMs bf16
// activations (the CPU keeps both fp32); everything else is fp32 in another summation order. Those roundings are
// independent across the thousands of terms of each dot product, so the logits move by well under 1% of their
// norm: we require ‖gpu − cpu‖ / ‖cpu‖ ≤ 1.5e-2 after prefill and after decode steps, and the same greedy token
// wherever the CPU's top-1 margin exceeds twice the largest logit difference seen.
#ifdef BIOMEDQ_HAVE_CUDA
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/cpu_forward.h"
#include "backend/cuda/allocator.h"
#include "backend/cuda/cuda_forward.h"
#include "backend/cuda/layout.h"
#include "backend/cuda/ops.h"
#include "backend/kv_layout.h"
#include "core/error.h"
#include "core/files.h"
#include "generate/generate.h"
#include "model/model.h"
#include "model/quantize_model.h"
#include "prefix_copy_check.h"
#include "test_util.h"

namespace bq {
namespace {

#define REQUIRE_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

struct Compare {
  double rel = 0, max_diff = 0;
  int decided = 0, agree = 0;
};

Compare compare_logits(const std::vector<float>& gpu, const std::vector<float>& cpu, int vocab) {
  Compare c;
  double num = 0, den = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    double d = double(gpu[i]) - cpu[i];
    num += d * d, den += double(cpu[i]) * cpu[i];
    c.max_diff = std::max(c.max_diff, std::isfinite(d) ? std::fabs(d) : INFINITY);
  }
  c.rel = std::sqrt(num / den);
  for (size_t r = 0; r * size_t(vocab) < cpu.size(); ++r) {
    auto row = cpu.begin() + long(r) * vocab;
    auto grow = gpu.begin() + long(r) * vocab;
    std::vector<float> s(row, row + vocab);
    std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
    if (s[0] - s[1] <= 2 * c.max_diff) continue;
    ++c.decided;
    c.agree += std::max_element(row, row + vocab) - row == std::max_element(grow, grow + vocab) - grow;
  }
  return c;
}

// Prefills `ids` (logits of every row), then decodes `extra` tokens one at a time, on both backends.
void check_against_cpu(const Model& m, const std::vector<int32_t>& ids, int extra, double tol = 1.5e-2) {
  CpuForward cpu(m);
  CudaForward gpu(m);
  const int V = m.cfg.vocab;
  const int cap = int(ids.size()) + extra;
  int sc = cpu.open_sequence(cap), sg = gpu.open_sequence(cap);
  ForwardBatch b;
  for (size_t i = 0; i < ids.size(); ++i) b.tokens.push_back(ids[i]), b.seq.push_back(sc), b.logit_rows.push_back(int(i));
  std::vector<float> lc(ids.size() * size_t(V)), lg(lc.size());
  cpu.run(b, lc.data());
  for (auto& s : b.seq) s = sg;
  gpu.run(b, lg.data());
  auto c = compare_logits(lg, lc, V);
  EXPECT_LE(c.rel, tol) << "prefill";
  EXPECT_EQ(c.agree, c.decided) << "prefill";
  std::mt19937 rng(11);
  for (int step = 0; step < extra; ++step) {
    int32_t t = int32_t(rng() % uint32_t(V));
    std::vector<float> dc(static_cast<size_t>(V)), dg(static_cast<size_t>(V));
    cpu.run({{t}, {sc}, {0}}, dc.data());
    gpu.run({{t}, {sg}, {0}}, dg.data());
    auto d = compare_logits(dg, dc, V);
    EXPECT_LE(d.rel, tol) << "decode step " << step;
    EXPECT_EQ(d.agree, d.decided) << "decode step " << step;
  }
  EXPECT_EQ(gpu.sequence_length(sg), cap);
}

std::vector<int32_t> fixture_ids(const std::string& name) {
  auto j = nlohmann::json::parse(read_file(test::source_dir() / "tests/fixtures/parity" / name / "fixture.json"));
  return j["ids"].get<std::vector<int32_t>>();
}

class CudaParity : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaParity, Bf16MatchesCpu) {
  REQUIRE_GPU();
  Model m = load_model(test::source_dir() / "tests/fixtures/parity" / GetParam());
  check_against_cpu(m, fixture_ids(GetParam()), 6);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaParity,
                         ::testing::Values("llama3-sharded", "llama-linear-v4", "qwen2-bias-tied", "phi3-fused",
                                           "mistral", "qwen3-qknorm-tied", "gemma3-sliding", "gemma3-mm-tower"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

class CudaQuantParity : public ::testing::TestWithParam<std::string> {};

// Same quantized weights on both backends (quantize_model), so the comparison isolates the GPU kernels.
TEST_P(CudaQuantParity, MatchesCpu) {
  REQUIRE_GPU();
  const std::string fixture = "llama3-sharded";
  Model m = load_model(test::source_dir() / "tests/fixtures/parity" / fixture);
  quant::QuantOptions opt;
  const std::string& p = GetParam();
  opt.scheme = p == "fp4" ? quant::Scheme::FP4 : p.rfind("int8", 0) == 0 ? quant::Scheme::Int8
               : p == "llm-int8" ? quant::Scheme::LLMInt8 : quant::Scheme::NF4;
  opt.double_quant = p != "nf4-nodq";
  // "/f16": bitsandbytes' fp16 compute dtype (the tensor-core kernels where the shapes allow, on both backends).
  if (p.size() > 4 && p.substr(p.size() - 4) == "/f16") opt.compute = DType::F16;
  quantize_model(m, opt);
  // LLM.int8 rounds activations to int8 codes of step max|x| / 127: upstream bf16 roundings that move a value across
  // a rounding boundary change it by a whole step, so the logits wander further than with weight-only formats
  // (its kernels alone match the CPU to 2e-6, see CudaMatvec). Measured 2.7-3.7% on H100; allowed 6%.
  check_against_cpu(m, fixture_ids(fixture), 4, p == "llm-int8" ? 6e-2 : 1.5e-2);
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaQuantParity, ::testing::Values("nf4", "nf4-nodq", "fp4", "int8", "llm-int8", "nf4/f16",
                                                                  "int8/f16"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// The newer architectures quantized (the tensor-core kernels with fp16 compute, and LLM.int8): Qwen3's q/k norms
// after quantized q and k products, with heads x head_dim unlike hidden; Gemma 3's sandwich norms, GELU and
// sliding layers.
class CudaQuantParityArch : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaQuantParityArch, MatchesCpu) {
  REQUIRE_GPU();
  for (const char* p : {"nf4/f16", "int8/f16", "llm-int8"}) {
    SCOPED_TRACE(p);
    Model m = load_model(test::source_dir() / "tests/fixtures/parity" / GetParam());
    quant::QuantOptions opt;
    opt.scheme = std::string(p) == "llm-int8" ? quant::Scheme::LLMInt8
                 : std::string(p) == "int8/f16" ? quant::Scheme::Int8 : quant::Scheme::NF4;
    if (std::string(p) != "llm-int8") opt.compute = DType::F16;
    quantize_model(m, opt);
    check_against_cpu(m, fixture_ids(GetParam()), 4, std::string(p) == "llm-int8" ? 6e-2 : 1.5e-2);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaQuantParityArch, ::testing::Values("qwen3-qknorm-tied", "gemma3-sliding"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

ModelConfig real_width() {
  ModelConfig c = preset_config("llama-3.1-8b");
  c.n_layers = 2;
  c.intermediate = 5632;
  c.vocab = 512;
  c.max_positions = 4096;
  return c;
}

// Real width exercises the vectorized kernels, many blocks and the llama3 RoPE of the 8B model.
TEST(CudaForwardTest, RealWidthBf16AndNf4) {
  REQUIRE_GPU();
  Model m = synthesize_model(real_width(), 5, 0.02f);
  std::vector<int32_t> ids(40);
  std::mt19937 rng(2);
  for (auto& t : ids) t = int32_t(rng() % 512);
  check_against_cpu(m, ids, 3);
  quant::QuantOptions opt;
  opt.scheme = quant::Scheme::NF4;
  quantize_model(m, opt);
  check_against_cpu(m, ids, 3);
  for (auto scheme : {quant::Scheme::NF4, quant::Scheme::Int8}) {  // the tensor-core kernels, fp16 compute
    Model mq = synthesize_model(real_width(), 5, 0.02f);
    opt.scheme = scheme;
    opt.compute = DType::F16;
    quantize_model(mq, opt);
    check_against_cpu(mq, ids, 3);
  }
}

// The tiled tensor-core products (cuda::set_tc_gemm) in a whole forward pass: a 40-token prompt (one launch of 40
// tokens per product) and a 24-token one (the launches of up to 32 tokens, with one and two blocks a
// multiprocessor), and the decode steps after them, nf4 and int8 with fp16 compute, against the CPU.
TEST(CudaForwardTest, TiledProductsMatchCpu) {
  REQUIRE_GPU();
  const bool before = cuda::tc_gemm_enabled();
  const int blocks_before = cuda::tc_gemm_blocks();
  cuda::set_tc_gemm(true);
  std::mt19937 rng(3);
  for (auto [tokens, blocks] : {std::pair{40, 1}, std::pair{24, 1}, std::pair{24, 2}}) {
    SCOPED_TRACE(fmt::format("{} tokens, {} blocks", tokens, blocks));
    cuda::set_tc_gemm_blocks(blocks);
    std::vector<int32_t> ids(static_cast<size_t>(tokens));
    for (auto& t : ids) t = int32_t(rng() % 512);
    for (auto scheme : {quant::Scheme::NF4, quant::Scheme::Int8}) {
      Model m = synthesize_model(real_width(), 5, 0.02f);
      quant::QuantOptions opt;
      opt.scheme = scheme;
      opt.compute = DType::F16;
      quantize_model(m, opt);
      check_against_cpu(m, ids, 3);
    }
  }
  cuda::set_tc_gemm(before);
  cuda::set_tc_gemm_blocks(blocks_before);
}

// Gemma 3 of three layers, two of them sliding (window 40: rings of 1,088 slots), head_dim 64 (the lanes attention
// kernel).
ModelConfig small_gemma3() {
  ModelConfig c = preset_config("medgemma-4b");
  c.hidden = 128, c.intermediate = 256, c.n_layers = 3, c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 64;
  c.vocab = 300, c.query_pre_attn_scalar = 48, c.sliding_window = 40, c.max_positions = 4096;
  c.sliding_layers = {true, false, true};
  return c;
}

// Gemma 3's sliding layers past their ring (window 40 + 1024 slots): a 2200-token prompt prefilled in passes of 1024
// rows, then decoded across the wrap, on the lanes attention kernel (head_dim 64) and with nf4 weights.
TEST(CudaForwardTest, SlidingLayersRingMatchesCpu) {
  REQUIRE_GPU();
  const ModelConfig c = small_gemma3();
  std::mt19937 rng(8);
  std::vector<int32_t> ids(2200);
  for (auto& t : ids) t = int32_t(rng() % uint32_t(c.vocab));
  {
    Model m = synthesize_model(c, 3, 0.1f);
    check_against_cpu(m, ids, 24);
  }
  Model q = synthesize_model(c, 3, 0.1f);
  quant::QuantOptions opt;
  opt.scheme = quant::Scheme::NF4;
  opt.compute = DType::F16;
  quantize_model(q, opt);
  check_against_cpu(q, ids, 8);
}

// A prefix copied from a sequence whose sliding layers' rings have wrapped (1,302 positions in rings of 1,088 slots),
// into a sequence of another capacity: the ring pages holding the prefix's last window are copied, the full layers'
// pages shared.
TEST(CudaForwardTest, SlidingLayersPrefixCopyEqualsPrefill) {
  REQUIRE_GPU();
  const ModelConfig c = small_gemma3();
  Model m = synthesize_model(c, 3, 0.1f);
  CudaForward f(m);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 1500; ++i) prompt.push_back(int32_t((i * 131 + 7) % c.vocab));
  for (int shared : {100, 1300}) {
    auto got = test::prefix_copy_logits(f, prompt, shared);
    auto cmp = compare_logits(got.continued, got.whole, c.vocab);
    EXPECT_LE(cmp.rel, 1e-2) << shared;
    EXPECT_EQ(cmp.agree, cmp.decided) << shared;
  }
  EXPECT_EQ(f.memory().kv_cache_bytes, 0u);
}

// Programmatic dependent launch only moves kernel starts earlier: decode steps give the same bits with it and
// without it (a missing wait in some kernel would show here as a race).
TEST(CudaForwardTest, ProgrammaticLaunchChangesNothing) {
  REQUIRE_GPU();
  quant::QuantOptions nf4;
  nf4.scheme = quant::Scheme::NF4;
  nf4.compute = DType::F16;
  // nf4 with fp16 compute: the tensor-core products; bf16: the CUDA-core products, grouped.
  for (const std::optional<quant::QuantOptions>& opt : {std::optional<quant::QuantOptions>(nf4),
                                                        std::optional<quant::QuantOptions>()}) {
    SCOPED_TRACE(opt ? "nf4" : "bf16");
    std::vector<std::vector<float>> runs;
    for (bool pdl : {true, false, true}) {
      cuda::set_programmatic_launch(pdl);
      auto f = CudaForward::synthetic(real_width(), opt, 7);
      const int s = f->open_sequence(64);
      std::vector<float> all;
      for (int step = 0; step < 6; ++step) {
        ForwardBatch b;
        const int n = step == 0 ? 20 : 1;
        for (int i = 0; i < n; ++i) b.tokens.push_back(int32_t((step * 31 + i * 7) % 512)), b.seq.push_back(s);
        b.logit_rows = {n - 1};
        std::vector<float> l(size_t(real_width().vocab));
        f->run(b, l.data());
        all.insert(all.end(), l.begin(), l.end());
      }
      runs.push_back(all);
    }
    cuda::set_programmatic_launch(true);
    EXPECT_EQ(runs[0], runs[1]);
    EXPECT_EQ(runs[0], runs[2]);
  }
}

// Sequences of different lengths in one step, a closed slot reused, with and without graphs: same logits as the
// CPU running the same steps.
TEST(CudaForwardTest, SeveralSequencesAndSlotReuse) {
  REQUIRE_GPU();
  Model m = load_model(test::source_dir() / "tests/fixtures/parity/mistral");
  const int V = m.cfg.vocab;
  for (bool graphs : {true, false}) {
    CpuForward cpu(m);
    CudaForward gpu(m);
    gpu.set_use_graphs(graphs);
    std::mt19937 rng(5);
    auto tok = [&] { return int32_t(rng() % uint32_t(V)); };
    std::vector<int> sc = {cpu.open_sequence(40), cpu.open_sequence(30), cpu.open_sequence(30)};
    std::vector<int> sg = {gpu.open_sequence(40), gpu.open_sequence(30), gpu.open_sequence(30)};
    auto step = [&](const std::vector<std::pair<int, int>>& seq_counts) {  // (sequence index, tokens)
      ForwardBatch bc, bg;
      for (auto [s, count] : seq_counts)
        for (int i = 0; i < count; ++i) {
          int32_t t = tok();
          bc.tokens.push_back(t), bg.tokens.push_back(t);
          bc.seq.push_back(sc[size_t(s)]), bg.seq.push_back(sg[size_t(s)]);
        }
      for (int r = int(bc.tokens.size()) - 1; r >= 0; r -= 2) bc.logit_rows.push_back(r), bg.logit_rows.push_back(r);
      std::vector<float> lc(bc.logit_rows.size() * size_t(V)), lg(lc.size());
      cpu.run(bc, lc.data());
      gpu.run(bg, lg.data());
      EXPECT_LE(compare_logits(lg, lc, V).rel, 1.5e-2) << "graphs " << graphs;
    };
    step({{0, 9}, {1, 3}, {2, 20}});
    for (int i = 0; i < 3; ++i) step({{0, 1}, {1, 1}, {2, 1}});
    cpu.close_sequence(sc[1]), gpu.close_sequence(sg[1]);
    sc[1] = cpu.open_sequence(25), sg[1] = gpu.open_sequence(25);
    step({{1, 5}});
    for (int i = 0; i < 4; ++i) step({{0, 1}, {1, 1}, {2, 1}});
    EXPECT_EQ(gpu.sequence_length(sg[0]), 16);
    EXPECT_EQ(gpu.sequence_length(sg[1]), 9);
  }
}

TEST(CudaForwardTest, SyntheticOnDeviceRunsAndCountsMemory) {
  REQUIRE_GPU();
  ModelConfig c = real_width();
  for (std::optional<quant::QuantOptions> q : {std::optional<quant::QuantOptions>{},
                                               std::optional<quant::QuantOptions>{quant::QuantOptions{quant::Scheme::NF4}}}) {
    auto f = CudaForward::synthetic(c, q, 1);
    int s = f->open_sequence(64);
    std::vector<int32_t> ids(20, 3);
    ForwardBatch b{ids, std::vector<int>(ids.size(), s), {19}};
    int32_t first = -1;
    f->run_greedy(b, &first);
    EXPECT_GE(first, 0);
    EXPECT_LT(first, c.vocab);
    EXPECT_GT(cuda::memory_stats().peak, f->weight_bytes());
    EXPECT_EQ(f->kv_cache_bytes(), size_t(2) * 2 * c.n_layers * 64 * c.kv_dim());
    const MemoryFigures m = f->memory();  // what reports read, through the backend interface
    EXPECT_EQ(m.weight_bytes, f->weight_bytes());
    EXPECT_EQ(m.kv_cache_bytes, f->kv_cache_bytes());
    EXPECT_GE(m.kv_cache_peak_bytes, m.kv_cache_bytes);
    EXPECT_GE(m.allocator_peak_bytes, m.weight_bytes + m.kv_cache_bytes);
    EXPECT_GE(m.device_peak_bytes, m.allocator_peak_bytes);
    ASSERT_EQ(m.per_device.size(), 1u);
    EXPECT_EQ(m.per_device[0].end_layer, c.n_layers);
    EXPECT_FALSE(m.device_name.empty());
  }
}

// The pipeline tests: a model of four layers (narrow, but wide enough for the tensor-core products) split into
// stages on device 0, which must give the very bits of one stage.
ModelConfig pipeline_config() {
  ModelConfig c = preset_config("small-100m");
  c.n_layers = 4;
  c.vocab = 512;
  c.max_positions = 8192;  // room for a prompt of two passes (cuda::max_rows_per_pass: 4,096 rows)
  return c;
}

const std::vector<std::vector<PipelineStage>>& pipeline_layouts() {
  static const std::vector<std::vector<PipelineStage>> layouts = {
      {}, {{0, 0, 1}, {0, 1, 4}}, {{0, 0, 1}, {0, 1, 3}, {0, 3, 4}}};
  return layouts;
}

// Logits (and greedy tokens) of a fixed sequence of steps: two sequences of different lengths prefilled in one
// batch (logit rows apart: normed one by one), a prompt of two passes (over max_rows_per_pass rows, logit rows in both
// passes), decode steps of all three (graphs), a step with logit rows out of order, and greedy tokens through
// run_greedy.
std::vector<float> pipeline_steps(CudaForward& f) {
  const int V = f.config().vocab;
  std::mt19937 rng(17);
  std::vector<float> all;
  auto step = [&](const std::vector<std::pair<int, int>>& seq_counts, std::vector<int> logit_rows) {
    ForwardBatch b;
    for (auto [s, count] : seq_counts)
      for (int i = 0; i < count; ++i) b.tokens.push_back(int32_t(rng() % uint32_t(V))), b.seq.push_back(s);
    b.logit_rows = std::move(logit_rows);
    std::vector<float> l(b.logit_rows.size() * size_t(V));
    f.run(b, l.data());
    all.insert(all.end(), l.begin(), l.end());
  };
  const int pass = cuda::max_rows_per_pass(f.config()), prompt = pass + 76;
  const int a = f.open_sequence(64), b = f.open_sequence(48), c = f.open_sequence(prompt + 100);
  step({{a, 9}, {b, 20}}, {8, 28});
  step({{c, prompt}}, {pass - 2, pass - 1, pass, pass + 1});
  for (int i = 0; i < 5; ++i) step({{a, 1}, {b, 1}, {c, 1}}, {0, 1, 2});
  step({{a, 1}, {b, 2}}, {2, 0});
  for (int i = 0; i < 3; ++i) {
    ForwardBatch d{{int32_t(rng() % uint32_t(V)), int32_t(rng() % uint32_t(V))}, {a, c}, {0, 1}};
    int32_t next[2] = {-1, -1};
    f.run_greedy(d, next);
    for (int32_t t : next) all.push_back(float(t));
  }
  EXPECT_EQ(f.sequence_length(a), 18);
  EXPECT_EQ(f.sequence_length(c), prompt + 8);
  return all;
}

// Stages of one model on one device compute what one stage computes, bit for bit: the hand-off copies the hidden
// states exactly and every stage runs the same kernels on its layers. bf16 (CUDA-core decode, cuBLAS prefill) and
// nf4 with fp16 compute (tensor-core decode, dequantized tiles in prefill); host embeddings.
TEST(CudaPipeline, StagesOnOneDeviceEqualOneStage) {
  REQUIRE_GPU();
  for (bool nf4 : {false, true}) {
    SCOPED_TRACE(nf4 ? "nf4" : "bf16");
    Model m = synthesize_model(pipeline_config(), 3, 0.02f);
    if (nf4) {
      quant::QuantOptions opt;
      opt.scheme = quant::Scheme::NF4;
      opt.compute = DType::F16;
      quantize_model(m, opt);
    }
    std::vector<float> reference;
    for (const auto& layout : pipeline_layouts()) {
      SCOPED_TRACE(fmt::format("{} stages", std::max<size_t>(layout.size(), 1)));
      CudaForward f(m, layout);
      auto got = pipeline_steps(f);
      if (reference.empty()) reference = got;
      else EXPECT_TRUE(got == reference) << "logits differ from one stage";
    }
  }
}

// A synthetic model: its first stage hashes the embeddings on the device, and each layer gets the same weights
// whichever stage holds it. Without graphs as well.
TEST(CudaPipeline, SyntheticStagesEqualOneStage) {
  REQUIRE_GPU();
  for (bool graphs : {true, false}) {
    std::vector<float> reference;
    for (const auto& layout : pipeline_layouts()) {
      auto f = CudaForward::synthetic(pipeline_config(), std::nullopt, 9, layout);
      f->set_use_graphs(graphs);
      auto got = pipeline_steps(*f);
      if (reference.empty()) reference = got;
      else EXPECT_TRUE(got == reference) << layout.size() << " stages, graphs " << graphs;
    }
  }
}

// A prompt continued from a copied prefix (on every stage's layers) computes what the whole prompt computes. The copy
// itself is exact; the prefix was computed in a prefill of another shape, which cuBLAS may sum in another order, so
// the logits agree to the parity tolerance, with the same greedy token where the margin decides it.
TEST(CudaPipeline, PrefixCopyEqualsPrefill) {
  REQUIRE_GPU();
  for (bool nf4 : {false, true}) {
    Model m = synthesize_model(pipeline_config(), 5, 0.02f);
    if (nf4) {
      quant::QuantOptions opt;
      opt.scheme = quant::Scheme::NF4;
      quantize_model(m, opt);
    }
    std::vector<int32_t> prompt;
    for (int i = 0; i < 300; ++i) prompt.push_back(int32_t((i * 131 + 7) % m.cfg.vocab));
    for (const auto& layout : pipeline_layouts()) {
      SCOPED_TRACE(fmt::format("{}, {} stages", nf4 ? "nf4" : "bf16", std::max<size_t>(layout.size(), 1)));
      CudaForward f(m, layout);
      for (int shared : {16, 64, 100, 128, 299}) {  // in the first page, whole pages, pages and a part
        auto got = test::prefix_copy_logits(f, prompt, shared);
        auto c = compare_logits(got.continued, got.whole, m.cfg.vocab);
        EXPECT_LE(c.rel, 1e-2) << shared;
        EXPECT_EQ(c.agree, c.decided) << shared;
      }
      EXPECT_EQ(f.memory().kv_cache_bytes, 0u);
    }
  }
}

// The decode loop on the GPU with and without prefix reuse: prompts of one instruction and different examples, as
// evaluation sends them; the same greedy answers.
TEST(CudaPipeline, PrefixReuseKeepsGreedyAnswers) {
  REQUIRE_GPU();
  Model m = load_model(test::source_dir() / "tests/fixtures/trained-llama");
  CudaForward f(m);
  std::vector<TokenRequest> reqs;
  std::mt19937 rng(3);
  std::vector<int32_t> instruction;
  for (int i = 0; i < 120; ++i) instruction.push_back(int32_t(rng() % uint32_t(m.cfg.vocab)));
  for (int example = 0; example < 24; ++example) {
    TokenRequest r{instruction, {}};
    for (int i = 0; i < 10 + example; ++i) r.prompt.push_back(int32_t(rng() % uint32_t(m.cfg.vocab)));
    r.opt.max_new_tokens = 12;
    reqs.push_back(r);
  }
  LoopStats on, off;
  const auto with = generate_tokens(f, reqs, {}, nullptr, {.max_in_flight = 8}, nullptr, nullptr, &on);
  const auto without = generate_tokens(f, reqs, {}, nullptr, {.max_in_flight = 8, .reuse_prefixes = false}, nullptr,
                                       nullptr, &off);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(with[i].tokens, without[i].tokens) << i;
  EXPECT_GE(on.prompt_tokens_reused, 120u * 7);  // at least the first wave's (answers that end at once leave no donor)
  EXPECT_EQ(off.prompt_tokens_reused, 0u);
}

// 12 greedy requests of random prompts of 20, 29, ... 119 tokens.
std::vector<TokenRequest> ragged_requests(const ModelConfig& c, uint32_t seed, int max_new) {
  std::vector<TokenRequest> reqs;
  std::mt19937 rng(seed);
  for (int example = 0; example < 12; ++example) {
    TokenRequest r;
    for (int i = 0; i < 20 + 9 * example; ++i) r.prompt.push_back(int32_t(rng() % uint32_t(c.vocab)));
    r.opt.max_new_tokens = max_new;
    reqs.push_back(r);
  }
  return reqs;
}

// Chunked prefill on the GPU (prompt chunks beside decoding rows): the greedy answers of whole-prompt steps, on the
// trained fixture model. Chunks of one row take the decode kernels (fp32 attention, one-row products), which sum
// in another order than a prompt's: there the first token of every answer is the same (H200, 2026-12-05: two of
// the 12 answers then went another way, at their 3rd and 10th token).
TEST(CudaPipeline, ChunkedPrefillKeepsGreedyAnswers) {
  REQUIRE_GPU();
  Model m = load_model(test::source_dir() / "tests/fixtures/trained-llama");
  CudaForward f(m);
  const std::vector<TokenRequest> reqs = ragged_requests(m.cfg, 5, 10);
  const auto whole = generate_tokens(f, reqs, {}, nullptr, {.max_in_flight = 6});
  for (int budget : {1, 7, 64}) {
    const auto chunked = generate_tokens(f, reqs, {}, nullptr, {.max_in_flight = 6, .max_step_tokens = budget});
    for (size_t i = 0; i < reqs.size(); ++i) {
      if (budget > 1) EXPECT_EQ(chunked[i].tokens, whole[i].tokens) << budget << " " << i;
      else EXPECT_EQ(chunked[i].tokens.at(0), whole[i].tokens.at(0)) << i;
    }
  }
  EXPECT_EQ(f.memory().kv_cache_bytes, 0u);
}

// Under a KV cache limit of 7 pages, where 6 requests in flight would hold up to 18: the loop preempts and
// recomputes, and the greedy answers are those without the limit (the trained fixture model, whose margins decide).
TEST(CudaPipeline, KvCacheLimitKeepsGreedyAnswers) {
  REQUIRE_GPU();
  Model m = load_model(test::source_dir() / "tests/fixtures/trained-llama");
  const std::vector<TokenRequest> reqs = ragged_requests(m.cfg, 9, 30);
  CudaForward free_run(m);
  const auto expected = generate_tokens(free_run, reqs, {}, nullptr, {.max_in_flight = 6});
  CudaForward limited(m);
  const size_t page = limited.memory().kv_position_bytes * kKvPageSlots;
  limited.set_kv_cache_limit(7 * page);
  LoopStats stats;
  const auto got = generate_tokens(limited, reqs, {}, nullptr, {.max_in_flight = 6}, nullptr, nullptr, &stats);
  EXPECT_GT(stats.preemptions, 0u);
  EXPECT_LE(limited.memory().kv_cache_peak_bytes, 7 * page);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(got[i].tokens, expected[i].tokens) << i;
  EXPECT_EQ(limited.memory().kv_cache_bytes, 0u);
}

// Each stage holds its layers' weights and cache: the stages' figures add up to one stage's.
TEST(CudaPipeline, StageFiguresAddUp) {
  REQUIRE_GPU();
  const ModelConfig c = pipeline_config();
  quant::QuantOptions nf4;
  nf4.scheme = quant::Scheme::NF4;
  auto one = CudaForward::synthetic(c, nf4, 1);
  auto three = CudaForward::synthetic(c, nf4, 1, pipeline_layouts()[2]);
  for (auto* f : {one.get(), three.get()}) {  // pages come as positions are written: 100 and 37 of them
    const int a = f->open_sequence(100), b = f->open_sequence(37);
    ForwardBatch batch{std::vector<int32_t>(137, 3), std::vector<int>(100, a), {99, 136}};
    batch.seq.insert(batch.seq.end(), 37, b);
    int32_t next[2];
    f->run_greedy(batch, next);
  }
  const auto stages = three->stages();
  ASSERT_EQ(stages.size(), 3u);
  size_t weights = 0, kv = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    EXPECT_EQ(stages[i].device, 0);
    EXPECT_EQ(stages[i].first_layer, pipeline_layouts()[2][i].first_layer);
    EXPECT_EQ(stages[i].end_layer, pipeline_layouts()[2][i].end_layer);
    const size_t layers = size_t(stages[i].end_layer - stages[i].first_layer);
    EXPECT_EQ(stages[i].kv_cache_bytes, size_t(2) * 2 * layers * (2 + 1) * kKvPageSlots * size_t(c.kv_dim()))
        << "two pages and one";
    weights += stages[i].weight_bytes;
    kv += stages[i].kv_cache_bytes;
  }
  EXPECT_GT(stages[2].weight_bytes, stages[0].weight_bytes);  // one layer each, the last with lm_head
  EXPECT_EQ(weights, one->weight_bytes());
  EXPECT_EQ(weights, three->weight_bytes());
  EXPECT_EQ(kv, one->kv_cache_bytes());
  EXPECT_EQ(kv, three->kv_cache_bytes());
  EXPECT_EQ(three->step_weight_bytes(), one->step_weight_bytes());
  ASSERT_EQ(one->stages().size(), 1u);
  EXPECT_EQ(one->stages()[0].end_layer, c.n_layers);
}

TEST(CudaPipeline, BadStagesAreRejected) {
  REQUIRE_GPU();
  const ModelConfig c = pipeline_config();
  EXPECT_THROW(CudaForward::synthetic(c, std::nullopt, 1, {{0, 0, 2}}), Error);  // layers 2..3 missing
  EXPECT_THROW(CudaForward::synthetic(c, std::nullopt, 1, {{0, 0, 2}, {cuda::device_count(), 2, 4}}), Error);
}

}  // namespace
}  // namespace bq
#endif
