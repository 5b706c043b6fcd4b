// CUDA kernels against plain CPU references on fresh random inputs, ragged shapes included. Skips without a GPU.
#ifdef BIOMEDQ_HAVE_CUDA
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/cpu/ops.h"
#include "backend/cpu/qmatmul.h"
#include "backend/cuda/allocator.h"
#include "backend/cuda/check.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/weights.h"
#include "core/error.h"
#include "quant/quant.h"

namespace bq {
namespace {

using namespace cuda;

#define REQUIRE_GPU() \
  if (device_count() == 0) GTEST_SKIP() << "no CUDA device"

template <typename T>
DeviceArray<T> to_device(const std::vector<T>& v) {
  DeviceArray<T> d(v.size(), "test");
  BQ_CUDA(cudaMemcpy(d.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <typename T>
std::vector<T> to_host(const DeviceArray<T>& d, size_t n) {
  std::vector<T> v(n);
  BQ_CUDA(cudaDeviceSynchronize());
  BQ_CUDA(cudaMemcpy(v.data(), d.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

std::vector<float> randn(size_t n, std::mt19937& rng, float std = 1.0f) {
  std::normal_distribution<float> d(0, std);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A weight in one format on the device (through the backend's own upload_linear), with the CPU reference's view
// of it.
struct TestWeight {
  CodeTables tables = CodeTables::upload();
  DevLinear dev;               // the device buffers
  DeviceWeight w;              // the kernels' view of them (a test may change its compute dtype)
  std::vector<uint16_t> bf16;  // host copy (BF16)
  quant::QuantizedMatrix q;    // host copy (quantized)
};

// kind: "bf16", "nf4", "nf4-nodq", "fp4", "int8", "llm-int8"
std::unique_ptr<TestWeight> make_weight(const std::string& kind, int64_t rows, int64_t cols, std::mt19937& rng) {
  auto t = std::make_unique<TestWeight>();
  auto f = randn(size_t(rows * cols), rng, 0.05f);
  t->bf16.resize(f.size());
  for (size_t i = 0; i < f.size(); ++i) t->bf16[i] = f32_to_bf16(f[i]);
  Linear l;
  l.out = rows;
  l.in = cols;
  l.dtype = DType::BF16;
  l.w = t->bf16.data();
  if (kind != "bf16") {
    quant::QuantOptions opt;
    opt.scheme = kind == "fp4" ? quant::Scheme::FP4 : kind == "int8" ? quant::Scheme::Int8
                 : kind == "llm-int8" ? quant::Scheme::LLMInt8 : quant::Scheme::NF4;
    opt.double_quant = kind != "nf4-nodq";
    t->q = quant::quantize(t->bf16.data(), DType::BF16, rows, cols, opt);
    l.q = std::make_shared<const quant::QuantizedMatrix>(t->q);
  }
  t->dev = upload_linear(l, t->tables, "test " + kind);
  t->w = t->dev.w;
  return t;
}

std::vector<float> cpu_product(const TestWeight& t, const std::vector<float>& x, int n) {
  std::vector<float> y(size_t(n) * size_t(t.w.out));
  if (t.w.kind == WeightKind::BF16) cpu::matmul(x.data(), n, t.bf16.data(), DType::BF16, t.w.out, t.w.in, y.data());
  else quant::matmul(t.q, x.data(), n, y.data());
  return y;
}

// The LLM.int8 activation decomposition's buffers for rows × cols.
struct Int8Buffers {
  DeviceArray<int8_t> xq;
  DeviceArray<float> sca;
  DeviceArray<int> outliers, n_outliers;
  DeviceArray<uint8_t> flags;
  Int8Buffers(int64_t rows, int64_t cols)
      : xq(size_t(rows * cols), "test"), sca(size_t(rows), "test"), outliers(size_t(cols), "test"),
        n_outliers(1, "test"), flags(size_t(cols), "test") {}
  Int8Scratch scratch() { return {xq.get(), sca.get(), outliers.get(), n_outliers.get(), flags.get()}; }
};

struct MatvecCase {
  std::string kind;
  int64_t rows, cols;
};

class CudaMatvec : public ::testing::TestWithParam<MatvecCase> {};

// The decode kernels (vectorized and ragged paths) compute the same product as the CPU kernels, for 1..16 rows,
// with bias and with accumulation into the output.
TEST_P(CudaMatvec, MatchesCpu) {
  REQUIRE_GPU();
  const auto& pc = GetParam();
  std::mt19937 rng(std::random_device{}());
  auto t = make_weight(pc.kind, pc.rows, pc.cols, rng);
  const int widest = int(pc.cols);
  Int8Buffers buffers(kMatvecMaxRows, widest);
  const Int8Scratch s8 = buffers.scratch();
  for (int n : {1, 3, 16, 32}) {
    auto x = randn(size_t(n) * size_t(pc.cols), rng);
    if (pc.kind == "llm-int8")  // a few outlier feature columns, as LLM.int8 is built for
      for (int c = 5; c < pc.cols; c += 37) x[size_t(c)] = 9.0f;
    auto bias = randn(size_t(pc.rows), rng);
    auto ref = cpu_product(*t, x, n);
    auto init = randn(ref.size(), rng);
    auto dx = to_device(x);
    auto db = to_device(bias);
    for (bool acc : {false, true}) {
      auto dy = to_device(init);  // poisoned with random values: every output must be written (or added to)
      if (t->w.kind == WeightKind::LLMInt8) llm_int8_prepare(dx.get(), n, int(pc.cols), t->w.threshold, s8, nullptr);
      matvec(t->w, dx.get(), n, db.get(), dy.get(), acc, &s8, nullptr);
      auto got = to_host(dy, ref.size());
      std::vector<float> want(ref.size());
      for (size_t i = 0; i < ref.size(); ++i) want[i] = ref[i] + bias[i % size_t(pc.rows)] + (acc ? init[i] : 0.0f);
      // fp32 accumulation in another order: errors of order 1e-7 relative.
      EXPECT_LT(rel_err(got, want), 2e-6) << pc.kind << " n=" << n << " accumulate=" << acc;
    }
  }
}

// Dequantization to bf16 (the prefill path) equals the CPU dequantization rounded to bf16.
TEST_P(CudaMatvec, DequantizeMatchesCpu) {
  REQUIRE_GPU();
  const auto& pc = GetParam();
  if (pc.kind == "bf16") GTEST_SKIP() << "bf16 weights are not dequantized";
  std::mt19937 rng(std::random_device{}());
  auto t = make_weight(pc.kind, pc.rows, pc.cols, rng);
  std::vector<float> ref(size_t(pc.rows * pc.cols));
  quant::dequantize(t->q, ref.data());
  const int64_t row0 = pc.rows / 3, nr = pc.rows - row0;
  DeviceArray<uint16_t> out(size_t(nr * pc.cols), "test");
  dequantize_rows(t->w, row0, nr, out.get(), nullptr);
  auto got = to_host(out, out.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += got[i] != f32_to_bf16(ref[size_t(row0 * pc.cols) + i]);
  EXPECT_EQ(bad, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaMatvec,
    ::testing::Values(MatvecCase{"bf16", 37, 64}, MatvecCase{"bf16", 130, 200}, MatvecCase{"bf16", 64, 4101},
                      MatvecCase{"nf4", 37, 64}, MatvecCase{"nf4", 130, 200}, MatvecCase{"nf4", 70, 4096},
                      MatvecCase{"nf4-nodq", 33, 256}, MatvecCase{"fp4", 45, 160}, MatvecCase{"fp4", 19, 100},
                      MatvecCase{"int8", 37, 64}, MatvecCase{"int8", 130, 200}, MatvecCase{"int8", 41, 1000},
                      MatvecCase{"llm-int8", 37, 64}, MatvecCase{"llm-int8", 130, 200}, MatvecCase{"llm-int8", 29, 517}),
    [](const auto& info) {
      std::string s = info.param.kind + "_" + std::to_string(info.param.rows) + "x" + std::to_string(info.param.cols);
      for (auto& ch : s)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return s;
    });

struct TcCase {
  std::string kind;
  Compute compute;
  int64_t rows, cols;
};

float round_compute(float v, Compute c) { return c == Compute::F16 ? f16_to_f32(f32_to_f16(v)) : bf16_to_f32(f32_to_bf16(v)); }

class CudaMatvecTc : public ::testing::TestWithParam<TcCase> {};

// The tensor-core products' scratch, counters zeroed as the forward pass allocates them.
struct TcBuffers {
  DeviceArray<uint16_t> xh;
  DeviceArray<float> partial{kTcPartialFloats, "test"};
  DeviceArray<int> counters{4096, "test"};
  explicit TcBuffers(size_t xh_elems) : xh(xh_elems, "test") {
    BQ_CUDA(cudaMemset(counters.get(), 0, counters.bytes()));
  }
  TcScratch scratch() { return TcScratch{xh.get(), partial.get(), partial.size(), counters.get(), counters.size()}; }
  bool counters_zero() {
    auto c = to_host(counters, counters.size());
    return std::all_of(c.begin(), c.end(), [](int v) { return v == 0; });
  }
};

// Turns the tiled tensor-core product (tc_gemm.cu) on for a test's lifetime, with `blocks` a multiprocessor in its
// launches of up to 32 tokens.
struct TiledProductsOn {
  const bool before = tc_gemm_enabled();
  const int blocks_before = tc_gemm_blocks();
  explicit TiledProductsOn(int blocks = 1) {
    set_tc_gemm(true);
    set_tc_gemm_blocks(blocks);
  }
  ~TiledProductsOn() {
    set_tc_gemm(before);
    set_tc_gemm_blocks(blocks_before);
  }
};

// The reference of the tensor-core products: x rounded to the compute dtype times the exactly dequantized weight in
// double, rounded to the compute dtype.
std::vector<float> tc_reference(const std::vector<float>& x, const std::vector<float>& wf, int n, int64_t rows,
                                int64_t cols, Compute c) {
  std::vector<float> ref(size_t(n) * size_t(rows));
  std::vector<float> xr(x.size());
  for (size_t i = 0; i < x.size(); ++i) xr[i] = round_compute(x[i], c);
  for (int i = 0; i < n; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      const float* xi = &xr[size_t(i * cols)];
      const float* wr = &wf[size_t(r * cols)];
      for (int64_t k = 0; k < cols; ++k) s += double(xi[k]) * wr[k];
      ref[size_t(i * rows + r)] = round_compute(float(s), c);
    }
  return ref;
}

// The tensor-core products against the reference, for each token count of `ns` and grid cap of `grids` (0: the
// launcher's own), with bias and with accumulation into the output. Tolerances: int8 weights are exact in the
// compute dtype, so only fp32 summation order and a rounding of the result that may land on the other side (one ulp,
// 2^-11 relative in fp16, 2^-8 in bf16) differ; 4-bit weights are dequantized into the compute dtype as bitsandbytes
// does (code and block scale rounded, then their product), up to 1.5 ulp per weight.
void check_tc_product(const TcCase& pc, std::initializer_list<int> ns, std::initializer_list<int> grids) {
  std::mt19937 rng(std::random_device{}());
  auto t = make_weight(pc.kind, pc.rows, pc.cols, rng);
  t->w.compute = pc.compute;
  ASSERT_TRUE(matvec_tc_supported(t->w, std::max(ns)));
  std::vector<float> wf(size_t(pc.rows * pc.cols));
  quant::dequantize(t->q, wf.data());
  const bool fp16 = pc.compute == Compute::F16;
  const double tol = pc.kind == "int8" ? (fp16 ? 1e-3 : 8e-3) : (fp16 ? 3e-3 : 2.5e-2);
  TcBuffers tcb(size_t(std::max(ns)) * size_t(pc.cols));
  for (int n : ns) {
    auto x = randn(size_t(n) * size_t(pc.cols), rng);
    auto bias = randn(size_t(pc.rows), rng);
    const auto ref = tc_reference(x, wf, n, pc.rows, pc.cols, pc.compute);
    auto init = randn(ref.size(), rng);
    auto dx = to_device(x);
    auto db = to_device(bias);
    for (int max_blocks : grids)
      for (bool acc : {false, true}) {
        auto dy = to_device(init);
        MatvecTarget target{&t->w, dy.get(), db.get()};
        matvec_tc(&target, 1, dx.get(), n, acc, tcb.scratch(), nullptr, max_blocks);
        auto got = to_host(dy, ref.size());
        std::vector<float> want(ref.size());
        for (size_t i = 0; i < ref.size(); ++i) want[i] = ref[i] + bias[i % size_t(pc.rows)] + (acc ? init[i] : 0.0f);
        EXPECT_LT(rel_err(got, want), tol) << pc.kind << " n=" << n << " accumulate=" << acc << " max_blocks=" << max_blocks;
      }
  }
  EXPECT_TRUE(tcb.counters_zero()) << "the kernels leave their counters at zero";
}

std::string tc_case_name(const ::testing::TestParamInfo<TcCase>& info) {
  std::string s = info.param.kind + (info.param.compute == Compute::F16 ? "_f16_" : "_bf16_") +
                  std::to_string(info.param.rows) + "x" + std::to_string(info.param.cols);
  for (auto& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

// The stream-k kernel, 1..32 tokens; grids of 1 and 3 blocks make tiles shared by several warps (partial tiles
// summed by the last to arrive).
TEST_P(CudaMatvecTc, MatchesReference) {
  REQUIRE_GPU();
  check_tc_product(GetParam(), {1, 3, 8, 9, 16, 17, 32}, {0, 1, 3});
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaMatvecTc,
    ::testing::Values(TcCase{"nf4", Compute::F16, 37, 128}, TcCase{"nf4", Compute::F16, 70, 4096},
                      TcCase{"nf4", Compute::BF16, 33, 384}, TcCase{"nf4-nodq", Compute::F16, 45, 256},
                      TcCase{"fp4", Compute::F16, 19, 640}, TcCase{"int8", Compute::F16, 37, 128},
                      TcCase{"int8", Compute::F16, 130, 1536}, TcCase{"int8", Compute::BF16, 41, 256}),
    tc_case_name);

class CudaTcGemm : public ::testing::TestWithParam<TcCase> {};

// The tiled kernel, one launch of 17..64 tokens (kTcGemmMaxRows); shapes of one row block and of several, with k
// splits; one and two blocks a multiprocessor.
TEST_P(CudaTcGemm, MatchesReference) {
  REQUIRE_GPU();
  const TcCase& pc = GetParam();
  ASSERT_LE(tc_gemm_partial_floats((pc.rows + 15) / 16, pc.cols / 128), kTcPartialFloats);
  for (int blocks : {1, 2}) {
    SCOPED_TRACE("blocks " + std::to_string(blocks));
    TiledProductsOn on(blocks);
    check_tc_product(pc, {17, 32, 33, 50, kTcGemmMaxRows}, {0});
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaTcGemm,
    ::testing::Values(TcCase{"nf4", Compute::F16, 37, 128}, TcCase{"nf4", Compute::F16, 600, 4096},
                      TcCase{"nf4", Compute::BF16, 33, 384}, TcCase{"nf4-nodq", Compute::F16, 45, 256},
                      TcCase{"fp4", Compute::F16, 19, 640}, TcCase{"int8", Compute::F16, 37, 128},
                      TcCase{"int8", Compute::F16, 300, 1536}, TcCase{"int8", Compute::BF16, 41, 256}),
    tc_case_name);

// One launch over three weights with the same input (q, k, v) writes what three separate launches write (n tokens,
// `cols` wide input). The split of a launch depends on its shape, so the three weights are small enough that a launch
// of any of them and of all three cut k alike.
void check_group_equals_separate(int n, int64_t cols, std::mt19937& rng) {
  std::vector<std::unique_ptr<TestWeight>> ws;
  for (int64_t rows : {64, 21, 21}) {
    ws.push_back(make_weight("nf4", rows, cols, rng));
    ws.back()->w.compute = Compute::F16;
    ws.back()->w.code = ws[0]->w.code;  // one model's weights share the code tables
    ws.back()->w.dyn_map = ws[0]->w.dyn_map;
  }
  auto dx = to_device(randn(size_t(n * cols), rng));
  TcBuffers tcb(size_t(n * cols));
  std::vector<DeviceArray<float>> sep, grp;
  std::vector<MatvecTarget> targets;
  for (auto& w : ws) {
    sep.push_back(DeviceArray<float>(size_t(n * w->w.out), "test"));
    grp.push_back(DeviceArray<float>(size_t(n * w->w.out), "test"));
    MatvecTarget one{&w->w, sep.back().get(), nullptr};
    matvec_tc(&one, 1, dx.get(), n, false, tcb.scratch(), nullptr);
    targets.push_back({&w->w, grp.back().get(), nullptr});
  }
  matvec_tc(targets.data(), 3, dx.get(), n, false, tcb.scratch(), nullptr);
  for (size_t i = 0; i < ws.size(); ++i) {
    const size_t m = size_t(n * ws[i]->w.out);
    EXPECT_EQ(to_host(sep[i], m), to_host(grp[i], m)) << "weight " << i << ", " << n << " tokens";
  }
}

TEST(CudaMatvecTcGroup, EqualsSeparateLaunches) {
  REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  check_group_equals_separate(5, 512, rng);
}

// Tiles shared by several warps are summed in warp order, not arrival order: the same launch twice gives the same
// bits. Also the input taken as already converted (x == nullptr) gives what converting it gives.
TEST(CudaMatvecTcSplit, DeterministicAndPreconverted) {
  REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  const int64_t rows = 300, cols = 4096;
  const int n = 4;
  auto t = make_weight("nf4", rows, cols, rng);
  t->w.compute = Compute::F16;
  auto dx = to_device(randn(size_t(n * cols), rng));
  TcBuffers tcb(size_t(n * cols));
  DeviceArray<float> a(size_t(n * rows), "test"), b(size_t(n * rows), "test");
  MatvecTarget ta{&t->w, a.get(), nullptr}, tb{&t->w, b.get(), nullptr};
  for (int max_blocks : {2, 5}) {
    matvec_tc(&ta, 1, dx.get(), n, false, tcb.scratch(), nullptr, max_blocks);
    for (int rep = 0; rep < 3; ++rep) {
      matvec_tc(&tb, 1, rep == 0 ? dx.get() : nullptr, n, false, tcb.scratch(), nullptr, max_blocks);
      EXPECT_EQ(to_host(a, a.size()), to_host(b, b.size())) << "max_blocks=" << max_blocks << " rep " << rep;
    }
  }
  EXPECT_TRUE(tcb.counters_zero());
}

// A token's result does not depend on the batch it is in (the k split depends on the weight's shape only, and each
// token's column is summed alike): the first tokens of batches of 17 to 64 give the same bits, and the same launch
// twice too (splits summed in split order, not arrival order), with one or two blocks a multiprocessor (launches of
// up to 32 tokens then run the other variant, and still give the 64-token launch's bits). Also q, k, v in one launch
// write what three launches write.
void check_tiled_batch_invariance(int blocks) {
  TiledProductsOn on(blocks);
  std::mt19937 rng(std::random_device{}());
  const int64_t rows = 300, cols = 2048;
  auto t = make_weight("nf4", rows, cols, rng);
  t->w.compute = Compute::F16;
  auto dx = to_device(randn(size_t(kTcGemmMaxRows * cols), rng));
  TcBuffers tcb(size_t(kTcGemmMaxRows * cols));
  DeviceArray<float> all(size_t(kTcGemmMaxRows * rows), "test"), part(size_t(kTcGemmMaxRows * rows), "test");
  MatvecTarget ta{&t->w, all.get(), nullptr}, tp{&t->w, part.get(), nullptr};
  matvec_tc(&ta, 1, dx.get(), kTcGemmMaxRows, false, tcb.scratch(), nullptr);
  const auto whole = to_host(all, all.size());
  for (int n : {17, 31, 40, 63, kTcGemmMaxRows}) {
    matvec_tc(&tp, 1, dx.get(), n, false, tcb.scratch(), nullptr);
    const auto got = to_host(part, size_t(n * rows));
    EXPECT_TRUE(std::equal(got.begin(), got.end(), whole.begin())) << "the first " << n << " tokens";
  }
  EXPECT_TRUE(tcb.counters_zero());
  check_group_equals_separate(blocks == 1 ? 40 : 24, cols, rng);
}

TEST(CudaTcGemm, BlocksOtherThanOneOrTwoAreRefused) {
  const int before = tc_gemm_blocks();
  EXPECT_THROW(set_tc_gemm_blocks(3), bq::Error);
  EXPECT_THROW(set_tc_gemm_blocks(0), bq::Error);
  EXPECT_EQ(tc_gemm_blocks(), before);
}

TEST(CudaTcGemm, BatchInvariantDeterministicGrouped) {
  REQUIRE_GPU();
  for (int blocks : {1, 2}) {
    SCOPED_TRACE("blocks " + std::to_string(blocks));
    check_tiled_batch_invariance(blocks);
  }
}

// Batch-invariant mode (set_batch_invariant) for a test's lifetime.
struct BatchInvariantOn {
  const bool before = batch_invariant();
  BatchInvariantOn() { set_batch_invariant(true); }
  ~BatchInvariantOn() { set_batch_invariant(before); }
};

// In batch-invariant mode every tensor-core product, bf16 weights too, runs as the tiled kernel in launches of up to
// kTcGemmTokens tokens, for any number of tokens: against the reference (bf16 weights: x rounded to bf16, the sums
// left in fp32), then the bits of each token's result whatever the tokens around it: the products of windows of
// 1..100 tokens, at several offsets, equal the same rows of one product of 150.
TEST(CudaBatchInvariant, TiledProductsOfAnyRowsMatchReferenceAndEachOther) {
  REQUIRE_GPU();
  BatchInvariantOn on;
  std::mt19937 rng(std::random_device{}());
  const int most = 150;
  for (const TcCase& pc : {TcCase{"bf16", Compute::F32, 300, 1536}, TcCase{"bf16", Compute::F32, 37, 128},
                           TcCase{"nf4", Compute::F16, 600, 4096}, TcCase{"int8", Compute::F16, 41, 256},
                           TcCase{"nf4", Compute::BF16, 33, 384}}) {
    SCOPED_TRACE(pc.kind + " " + std::to_string(pc.rows) + "x" + std::to_string(pc.cols));
    auto t = make_weight(pc.kind, pc.rows, pc.cols, rng);
    if (pc.kind != "bf16") t->w.compute = pc.compute;
    const Compute c = product_compute(t->w);
    ASSERT_EQ(c, pc.kind == "bf16" ? Compute::BF16 : pc.compute);
    ASSERT_TRUE(matvec_tc_supported(t->w, most));
    std::vector<float> wf(size_t(pc.rows * pc.cols));
    if (pc.kind == "bf16")
      for (size_t i = 0; i < wf.size(); ++i) wf[i] = bf16_to_f32(t->bf16[i]);
    else
      quant::dequantize(t->q, wf.data());
    auto x = randn(size_t(most) * size_t(pc.cols), rng);
    std::vector<float> ref = tc_reference(x, wf, most, pc.rows, pc.cols, c);
    if (pc.kind == "bf16") {  // the same sums, not rounded to bf16 at the end
      std::vector<float> xr(x.size());
      for (size_t i = 0; i < x.size(); ++i) xr[i] = round_compute(x[i], c);
      for (int i = 0; i < most; ++i)
        for (int64_t r = 0; r < pc.rows; ++r) {
          double sum = 0;
          for (int64_t k = 0; k < pc.cols; ++k) sum += double(xr[size_t(i * pc.cols + k)]) * wf[size_t(r * pc.cols + k)];
          ref[size_t(i * pc.rows + r)] = float(sum);
        }
    }
    TcBuffers tcb(size_t(most) * size_t(pc.cols));
    auto dx = to_device(x);
    DeviceArray<float> all(size_t(most * pc.rows), "test"), part(size_t(most * pc.rows), "test");
    MatvecTarget ta{&t->w, all.get(), nullptr};
    matvec_tc(&ta, 1, dx.get(), most, false, tcb.scratch(), nullptr);
    const auto whole = to_host(all, all.size());
    EXPECT_LT(rel_err(whole, ref), pc.kind == "bf16" ? 1e-5 : pc.compute == Compute::F16 ? 3e-3 : 2.5e-2);
    for (auto [offset, n] : {std::pair{0, 1}, {0, 16}, {0, 17}, {0, 64}, {0, 65}, {5, 1}, {37, 3}, {63, 2}, {49, 100}}) {
      MatvecTarget tp{&t->w, part.get(), nullptr};
      matvec_tc(&tp, 1, dx.get() + int64_t(offset) * pc.cols, n, false, tcb.scratch(), nullptr);
      const auto got = to_host(part, size_t(n * pc.rows));
      EXPECT_TRUE(std::equal(got.begin(), got.end(), whole.begin() + int64_t(offset) * pc.rows))
          << n << " tokens from token " << offset;
    }
    EXPECT_TRUE(tcb.counters_zero());
  }
}

// Widths the tiled kernel does not take run, in batch-invariant mode, as the CUDA-core kernel (matvec: launches of up
// to 16 rows; Stage::linear calls it 32 rows at a time): its sums do not depend on the tokens of the launch either.
// The bits of each token's result from calls of 1, 3, 16, 17 and 1 tokens at several offsets, against one of 32.
TEST(CudaBatchInvariant, CudaCoreProductsOfAnyRowsEqualEachOther) {
  REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  for (const MatvecCase& pc : {MatvecCase{"bf16", 130, 200}, MatvecCase{"nf4", 37, 64}, MatvecCase{"int8", 41, 1000},
                               MatvecCase{"bf16", 64, 4101}}) {
    SCOPED_TRACE(pc.kind + " " + std::to_string(pc.rows) + "x" + std::to_string(pc.cols));
    auto t = make_weight(pc.kind, pc.rows, pc.cols, rng);
    const int most = kMatvecMaxRows;
    auto dx = to_device(randn(size_t(most) * size_t(pc.cols), rng));
    DeviceArray<float> all(size_t(most * pc.rows), "test"), part(size_t(most * pc.rows), "test");
    matvec(t->w, dx.get(), most, nullptr, all.get(), false, nullptr, nullptr);
    const auto whole = to_host(all, all.size());
    for (auto [offset, n] : {std::pair{0, 1}, {4, 3}, {0, 16}, {15, 17}, {31, 1}}) {
      matvec(t->w, dx.get() + int64_t(offset) * pc.cols, n, nullptr, part.get(), false, nullptr, nullptr);
      const auto got = to_host(part, size_t(n * pc.rows));
      EXPECT_TRUE(std::equal(got.begin(), got.end(), whole.begin() + int64_t(offset) * pc.rows))
          << n << " tokens from token " << offset;
    }
  }
}

// LLM.int8 prefill through cuBLAS' int8 product (exact int32), the rescaling epilogue and the gathered outlier GEMM:
// the CPU's numbers, also when the output rows do not fit the accumulator scratch at once (chunks), and when not even
// the gathered outlier columns fit it (the epilogue's own outlier loop).
TEST(CudaLlmInt8, GemmMatchesCpu) {
  REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  const int64_t rows = 132, cols = 200;
  const int n = 45;
  auto t = make_weight("llm-int8", rows, cols, rng);
  auto x = randn(size_t(n * cols), rng);
  for (int c = 3; c < cols; c += 41) x[size_t(7 * cols + c)] = 8.0f;  // outlier feature columns
  auto ref = cpu_product(*t, x, n);
  auto bias = randn(size_t(rows), rng);
  Int8Buffers buffers(n, cols);
  const Int8Scratch s8 = buffers.scratch();
  auto dx = to_device(x);
  auto db = to_device(bias);
  for (size_t acc_elems : {size_t(n * (rows + 20)), size_t(n * 40), size_t(n * 8)}) {  // one chunk, chunks, no room
    DeviceArray<int32_t> acc(acc_elems, "test");
    auto dy = to_device(std::vector<float>(ref.size(), 0.0f));
    llm_int8_prepare(dx.get(), n, int(cols), t->w.threshold, s8, nullptr);
    cublasHandle_t h;
    BQ_CUBLAS(cublasCreate(&h));
    const bool ran = llm_int8_gemm(h, t->w, dx.get(), n, s8, acc.get(), acc_elems, db.get(), dy.get(), false, nullptr);
    auto got = to_host(dy, ref.size());
    cublasDestroy(h);
    ASSERT_TRUE(ran) << "cuBLAS has no int8 product here";
    std::vector<float> want(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) want[i] = ref[i] + bias[i % size_t(rows)];
    EXPECT_LT(rel_err(got, want), 2e-6) << acc_elems << " accumulator elements";
  }
}

// The cuBLAS product (bf16 operands, fp32 accumulation) against a double-precision product of the same bf16 values,
// also writing a column tile of a wider output (ldy > m) and accumulating.
TEST(CudaGemm, MatchesCpuOnBf16Inputs) {
  REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  const int n = 45, m = 70, k = 136, ldy = 100;
  auto xf = randn(size_t(n * k), rng), wf = randn(size_t(m * k), rng);
  std::vector<uint16_t> xb(xf.size()), wb(wf.size());
  for (size_t i = 0; i < xf.size(); ++i) xb[i] = f32_to_bf16(xf[i]);
  for (size_t i = 0; i < wf.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
  auto init = randn(size_t(n * ldy), rng);
  std::vector<float> want = init;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) {
      double s = 0;
      for (int c = 0; c < k; ++c) s += double(bf16_to_f32(xb[size_t(i * k + c)])) * bf16_to_f32(wb[size_t(j * k + c)]);
      want[size_t(i * ldy + j)] += float(s);
    }
  cublasHandle_t h;
  BQ_CUBLAS(cublasCreate(&h));
  auto dx = to_device(xb);
  auto dw = to_device(wb);
  auto dy = to_device(init);
  gemm_bf16(h, dx.get(), dw.get(), n, m, k, dy.get(), ldy, true);
  auto got = to_host(dy, init.size());
  cublasDestroy(h);
  EXPECT_LT(rel_err(got, want), 1e-5);
}

TEST(CudaOps, RmsnormActivationsArgmax) {
  REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  const int n = 5, d = 1000;
  auto x = randn(size_t(n * d), rng), w = randn(size_t(d), rng), u = randn(size_t(n * d), rng),
       base = randn(size_t(n * d), rng);
  std::vector<float> ref(x.size()), sref(x.size()), gref(x.size()), added(base);
  cpu::rmsnorm(x.data(), w.data(), ref.data(), n, d, 1e-5f);
  cpu::silu_mul(x.data(), u.data(), sref.data(), n * d);
  cpu::gelu_tanh_mul(x.data(), u.data(), gref.data(), n * d);
  for (size_t i = 0; i < added.size(); ++i) added[i] += ref[i];
  auto dx = to_device(x), dw = to_device(w), du = to_device(u), dbase = to_device(base);
  DeviceArray<float> out(x.size(), "test");
  rmsnorm(dx.get(), dw.get(), out.get(), n, d, 1e-5f, nullptr);
  EXPECT_LT(rel_err(to_host(out, x.size()), ref), 1e-6);
  rmsnorm_add(dx.get(), dw.get(), dbase.get(), n, d, 1e-5f, nullptr);
  EXPECT_LT(rel_err(to_host(dbase, x.size()), added), 1e-6) << "rmsnorm_add";
  auto dg = to_device(x);
  gated_act(Activation::GeluTanh, dg.get(), du.get(), n * d, nullptr);
  EXPECT_LT(rel_err(to_host(dg, x.size()), gref), 1e-6) << "gelu_tanh";
  gated_act(Activation::Silu, dx.get(), du.get(), n * d, nullptr);
  EXPECT_LT(rel_err(to_host(dx, x.size()), sref), 1e-6) << "silu";
  DeviceArray<int> idx(n, "test");
  x[size_t(3 * d + 17)] = 100, x[size_t(3 * d + 900)] = 100;  // ties go to the first
  auto dx2 = to_device(x);
  argmax_rows(dx2.get(), n, d, idx.get(), nullptr);
  auto got = to_host(idx, size_t(n));
  for (int r = 0; r < n; ++r)
    EXPECT_EQ(got[size_t(r)], int(std::max_element(x.begin() + r * d, x.begin() + (r + 1) * d) - (x.begin() + r * d)));
}

// A row holding NaN or inf anywhere gives -1 (issue 14): the host stops instead of emitting a token.
TEST(CudaOps, ArgmaxFlagsNonFiniteRows) {
  REQUIRE_GPU();
  const int n = 4, d = 5000;
  std::vector<float> x(size_t(n * d), 0.5f);
  x[size_t(1 * d + 4999)] = std::nanf("");
  x[size_t(2 * d + 0)] = INFINITY;
  x[size_t(3 * d + 2500)] = -INFINITY;
  x[size_t(0 * d + 7)] = 2.0f;
  auto dx = to_device(x);
  DeviceArray<int> idx(n, "test");
  argmax_rows(dx.get(), n, d, idx.get(), nullptr);
  EXPECT_EQ(to_host(idx, size_t(n)), (std::vector<int>{7, -1, -1, -1}));
}

// Rows of any length, a vocabulary's among them, on both of the kernel's paths (lengths of a multiple of 4 are read
// 16 bytes a load): the first maximum, ties planted within one thread's elements and across threads.
TEST(CudaOps, ArgmaxOfRaggedAndVocabularySizedRowsKeepsTheFirstMaximum) {
  REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  for (int d : {1, 3, 1001, 4099, 4100, 128256}) {
    const int n = 6;
    auto x = randn(size_t(n) * size_t(d), rng);
    auto plant = [&](int r, int i) {
      if (i < d) x[size_t(r) * size_t(d) + size_t(i)] = 50;
    };
    plant(1, d - 1);
    plant(2, 6), plant(2, 7);                  // one load's elements
    plant(3, 4 * 1024 + 9), plant(3, 9);        // one thread's loads
    plant(4, 4 * 700 + 2), plant(4, 4 * 300 + 1);  // two threads
    auto dx = to_device(x);
    DeviceArray<int> idx(n, "test");
    argmax_rows(dx.get(), n, d, idx.get(), nullptr);
    auto got = to_host(idx, size_t(n));
    for (int r = 0; r < n; ++r) {
      auto row = x.begin() + int64_t(r) * d;
      EXPECT_EQ(got[size_t(r)], int(std::max_element(row, row + d) - row)) << "length " << d << ", row " << r;
    }
  }
}

uint16_t host_16bit(float v, Compute c) { return c == Compute::F16 ? f32_to_f16(v) : f32_to_bf16(v); }

// The 16-bit copies that RMSNorm and SwiGLU write for the tensor-core products are their fp32 results rounded.
TEST(CudaOps, SixteenBitCopiesAreTheRoundedResults) {
  REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  const int n = 3, d = 4096;
  auto x = randn(size_t(n * d), rng), w = randn(size_t(d), rng), u = randn(size_t(n * d), rng);
  for (Compute c : {Compute::F16, Compute::BF16}) {
    auto dx = to_device(x), dw = to_device(w), du = to_device(u);
    DeviceArray<float> out(x.size(), "test");
    DeviceArray<uint16_t> out16(x.size(), "test");
    rmsnorm(dx.get(), dw.get(), out.get(), n, d, 1e-5f, nullptr, out16.get(), c);
    auto f = to_host(out, x.size());
    auto h = to_host(out16, x.size());
    size_t bad = 0;
    for (size_t i = 0; i < f.size(); ++i) bad += h[i] != host_16bit(f[i], c);
    EXPECT_EQ(bad, 0u) << "rmsnorm";
    gated_act(Activation::Silu, dx.get(), du.get(), int64_t(n) * d, nullptr, out16.get(), c);
    f = to_host(dx, x.size());
    h = to_host(out16, x.size());
    bad = 0;
    for (size_t i = 0; i < f.size(); ++i) bad += h[i] != host_16bit(f[i], c);
    EXPECT_EQ(bad, 0u) << "silu_mul";
  }
}

// A sequence's cache in pages (kv_layout.h) drawn at random, on the host and on the device. The pages are uploaded
// in a shuffled order, so that only the page table puts them in place.
struct PagedCache {
  KvShape shape;
  int cap = 0, kv_dim = 0;
  std::vector<std::vector<uint16_t>> host;  // by table entry
  std::vector<DeviceArray<uint16_t>> pages;
  DeviceArray<uint16_t*> table;

  PagedCache(const KvShape& s, int capacity, int kv, std::mt19937& rng) : shape(s), cap(capacity), kv_dim(kv) {
    for (int e = 0; e < s.table_pages(cap); ++e) {
      host.emplace_back(size_t(s.page_rows(e >= s.full_pages(cap)) * kv_dim));
      for (auto& h : host.back()) h = f32_to_bf16(std::normal_distribution<float>(0, 1)(rng));
    }
  }
  uint16_t* key(const KvLayer& l, int pos) { return kv_key(host_table().data(), l, pos, cap, kv_dim); }
  uint16_t* value(const KvLayer& l, int pos) { return kv_value(host_table().data(), l, pos, cap, kv_dim); }
  std::vector<uint16_t*> host_table() {
    std::vector<uint16_t*> t;
    for (auto& h : host) t.push_back(h.data());
    return t;
  }
  // The host pages to the device (again), and the table of where they went.
  void upload(std::mt19937& rng) {
    std::vector<int> order(host.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<uint16_t*> t(host.size());
    pages.clear();
    for (int e : order) pages.push_back(to_device(host[size_t(e)])), t[size_t(e)] = pages.back().get();
    table = to_device(t);
  }
  // The CPU kernel's rows of positions [first, first + n) of layer l, in fp32.
  struct Rows {
    std::vector<float> k, v;
    std::vector<const float*> kp, vp;
  };
  Rows rows(const KvLayer& l, int first, int n) {
    Rows r;
    for (int p = first; p < first + n; ++p) {
      const uint16_t *kh = key(l, p), *vh = value(l, p);
      for (int i = 0; i < kv_dim; ++i) r.k.push_back(bf16_to_f32(kh[i])), r.v.push_back(bf16_to_f32(vh[i]));
    }
    for (int i = 0; i < n; ++i)
      r.kp.push_back(r.k.data() + size_t(i) * size_t(kv_dim)), r.vp.push_back(r.v.data() + size_t(i) * size_t(kv_dim));
    return r;
  }
};

// The layer a test's kernels run on: the second of a cache of two, after a full layer: a full one, or with a ring a
// sliding one (rings of any length, not only the whole pages kv_shape makes).
KvLayer second_layer(int ring) {
  if (ring == 0) return KvLayer{KvShape{2, 0, 0}, 1, false};
  return KvLayer{KvShape{1, 1, ring}, 0, true};
}

// Rows of sequences of different capacities, so chunked differently (capacity 64: one chunk; 100: two; 700: 11 of
// 64 positions; 2000: 16 of 128), each with its own paged cache.
void attention_case(int hd) {
  std::mt19937 rng(std::random_device{}());
  const int n_heads = 8, n_kv = 2, kv_dim = n_kv * hd;
  struct Row {
    int pos, cap;
  };
  const std::vector<Row> rows = {{0, 700}, {5, 64}, {699, 700}, {300, 700}, {99, 100}, {1500, 2000}};
  const int n = int(rows.size());
  auto q = randn(size_t(n * n_heads * hd), rng);
  auto dq = to_device(q);
  const int row_floats = n_heads * hd;
  struct Case {
    int window, ring;
  };
  // Windows: none, one shorter than most rows' positions (ragged, not a multiple of a chunk), one past them all;
  // rings of slots (a sliding layer's cache, kv_layout.h) that the window wraps around for some rows.
  for (auto [window, ring] : std::vector<Case>{{0, 0}, {37, 0}, {1000, 0}, {37, 100}, {300, 400}}) {
    const KvLayer layer = second_layer(ring);
    std::vector<PagedCache> caches;
    for (const Row& r : rows) caches.emplace_back(layer.shape, r.cap, kv_dim, rng), caches.back().upload(rng);
    const Compute c16 = ring ? Compute::BF16 : Compute::F16;
    const float scale = window ? 0.21f : 1.0f / std::sqrt(float(hd));  // gemma's query_pre_attn_scalar differs
    // The rows [first, first + count) in one launch, with `splits` (at least what their capacities need).
    auto run = [&](int first, int count, int splits, std::vector<uint16_t>* got16) {
      std::vector<RowInfo> info;
      for (int r = first; r < first + count; ++r)
        info.push_back({rows[size_t(r)].pos, rows[size_t(r)].cap, caches[size_t(r)].table.get(), 0, r - first});
      auto drows = to_device(info);
      DeviceArray<float> partial(attention_partial_floats(count, n_heads, hd, splits), "test");
      auto dout = to_device(randn(size_t(count * row_floats), rng));
      DeviceArray<uint16_t> out16(size_t(count * row_floats), "test");
      attention(dq.get() + size_t(first * row_floats), drows.get(), count, layer, n_heads, n_kv, hd, scale, window,
                splits, partial.get(), dout.get(), nullptr, out16.get(), c16);
      if (got16) *got16 = to_host(out16, size_t(count * row_floats));
      return to_host(dout, size_t(count * row_floats));
    };
    std::vector<uint16_t> got16;
    const auto got = run(0, n, attention_splits(2000), &got16);
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) bad += got16[i] != host_16bit(got[i], c16);
    EXPECT_EQ(bad, 0u) << "the 16-bit copy is the rounded output";
    std::vector<float> ref(q.size());
    for (int r = 0; r < n; ++r) {
      const int end = rows[size_t(r)].pos + 1, first = window ? std::max(0, end - window) : 0, np = end - first;
      const PagedCache::Rows kv = caches[size_t(r)].rows(layer, first, np);
      std::vector<float> scratch(size_t(n_heads * np));
      cpu::attention(q.data() + r * row_floats, kv.kp.data(), kv.vp.data(), np, n_heads, n_kv, hd, scale,
                     ref.data() + r * row_floats, scratch.data());
    }
    EXPECT_LT(rel_err(got, ref), 1e-5) << "window " << window << ", ring " << ring << ", head_dim " << hd;
    // A row's result has the same bits alone, beside other rows, and under a launch with more splits than needed.
    for (int r = 0; r < n; ++r) {
      const std::vector<float> mine(got.begin() + long(r) * row_floats, got.begin() + long(r + 1) * row_floats);
      EXPECT_EQ(run(r, 1, attention_row_splits(rows[size_t(r)].cap), nullptr), mine) << "row " << r << " alone";
      EXPECT_EQ(run(r, 1, kAttentionMaxSplits, nullptr), mine) << "row " << r << ", " << kAttentionMaxSplits << " splits";
    }
  }
}

// Attention over a paged bf16 cache (split along the positions) against the CPU kernel on the same bf16 values: the
// lane-split kernel (head_dim 64, 96, 128, 256) and the general one (16); a row's result does not depend on the
// rows beside it.
TEST(CudaOps, AttentionMatchesCpu) {
  REQUIRE_GPU();
  for (int hd : {64, 96, 128, 256, 16}) attention_case(hd);
}

// Prompt rows on the tensor-core kernel, a decode row beside them on the decode kernel, against the CPU kernel on the
// same paged bf16 cache: two prompts (one continuing a cached prefix), ragged tiles, windows and rings. Cache slots
// past a prompt hold NaN, which must not reach the sums. The rows' results do not depend on how they are tiled.
void prefill_attention_case(int hd) {
  std::mt19937 rng(std::random_device{}());
  const int n_heads = 8, n_kv = 2, kv_dim = n_kv * hd, cap = 700;
  const uint16_t nan_bits = 0x7fc1;
  struct Seq {
    int first_pos, rows;
  };
  const std::vector<Seq> prompts = {{0, 100}, {300, 71}};
  const int decode_pos = 699;
  std::vector<int> seq, pos;
  for (size_t s = 0; s < prompts.size(); ++s)
    for (int i = 0; i < prompts[s].rows; ++i) seq.push_back(int(s)), pos.push_back(prompts[s].first_pos + i);
  seq.push_back(2), pos.push_back(decode_pos);
  const int n = int(seq.size());
  std::vector<bool> prompt_row(size_t(n), true);
  prompt_row.back() = false;
  const auto tiles = attention_tiles(seq, prompt_row);
  ASSERT_EQ(tiles.size(), 4u);  // 64 + 36 rows, 64 + 7 rows
  // The same rows tiled another way: the first prompt cut after 10 rows, the second after 1.
  const std::vector<AttentionTile> other = {{0, 10}, {10, 64}, {74, 26}, {100, 1}, {101, 64}, {165, 6}};
  auto q = randn(size_t(n * n_heads * hd), rng);
  auto dq = to_device(q);
  struct Case {
    int window, ring;
  };
  for (auto [window, ring] : std::vector<Case>{{0, 0}, {37, 0}, {1000, 0}, {37, 164}}) {
    const KvLayer layer = second_layer(ring);
    std::vector<PagedCache> caches;  // the two prompts', then the decode row's
    for (int s = 0; s < 3; ++s) caches.emplace_back(layer.shape, cap, kv_dim, rng);
    if (ring == 0)  // positions after each prompt are never valid keys of its rows
      for (size_t s = 0; s < prompts.size(); ++s)
        for (int p = prompts[s].first_pos + prompts[s].rows; p < cap; ++p) {
          std::fill_n(caches[s].key(layer, p), kv_dim, nan_bits);
          std::fill_n(caches[s].value(layer, p), kv_dim, nan_bits);
        }
    for (auto& c : caches) c.upload(rng);
    std::vector<RowInfo> info;
    for (int r = 0; r < n; ++r)
      info.push_back({pos[size_t(r)], cap, caches[size_t(seq[size_t(r)])].table.get(), int(prompt_row[size_t(r)]),
                      prompt_row[size_t(r)] ? -1 : 0});  // one decode row
    auto drows = to_device(info);
    const float scale = window ? 0.21f : 1.0f / std::sqrt(float(hd));
    const int splits = attention_splits(cap);
    DeviceArray<float> partial(attention_partial_floats(1, n_heads, hd, splits), "test");
    auto run = [&](const std::vector<AttentionTile>& t, std::vector<uint16_t>* got16) {
      auto dt = to_device(t);
      auto dout = to_device(randn(q.size(), rng));
      DeviceArray<uint16_t> out16(q.size(), "test");
      attention_prefill(dq.get(), drows.get(), dt.get(), int(t.size()), layer, n_heads, n_kv, hd, scale, window,
                        dout.get(), nullptr, out16.get(), Compute::BF16);
      attention(dq.get(), drows.get(), n, layer, n_heads, n_kv, hd, scale, window, splits, partial.get(),
                dout.get(), nullptr, out16.get(), Compute::BF16);
      if (got16) *got16 = to_host(out16, q.size());
      return to_host(dout, q.size());
    };
    std::vector<uint16_t> got16;
    const auto got = run(tiles, &got16);
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) bad += got16[i] != host_16bit(got[i], Compute::BF16);
    EXPECT_EQ(bad, 0u) << "the 16-bit copy is the rounded output";
    std::vector<float> ref(q.size());
    for (int r = 0; r < n; ++r) {
      const int end = pos[size_t(r)] + 1, first = window ? std::max(0, end - window) : 0, np = end - first;
      const PagedCache::Rows kv = caches[size_t(seq[size_t(r)])].rows(layer, first, np);
      std::vector<float> scratch(size_t(n_heads * np));
      cpu::attention(q.data() + r * n_heads * hd, kv.kp.data(), kv.vp.data(), np, n_heads, n_kv, hd, scale,
                     ref.data() + r * n_heads * hd, scratch.data());
    }
    // q and the probabilities in bf16 (8 significant bits), as FlashAttention computes: a few 1e-3.
    EXPECT_LT(rel_err(got, ref), 8e-3) << "window " << window << ", ring " << ring << ", head_dim " << hd;
    const size_t decode_at = size_t(n - 1) * size_t(n_heads * hd);
    const std::vector<float> got_decode(got.begin() + long(decode_at), got.end()),
        ref_decode(ref.begin() + long(decode_at), ref.end());
    EXPECT_LT(rel_err(got_decode, ref_decode), 1e-5) << "the decode row keeps the fp32 kernel";
    EXPECT_EQ(run(other, nullptr), got) << "tiling changed a row's result; window " << window << ", ring " << ring;
  }
}

TEST(CudaOps, PrefillAttentionMatchesCpu) {
  REQUIRE_GPU();
  for (int hd : {16, 64, 128}) prefill_attention_case(hd);
}

TEST(CudaAllocator, OutOfMemoryIsAClearError) {
  REQUIRE_GPU();
  auto before = memory_stats().current;
  try {
    DeviceArray<uint8_t> huge(size_t(1) << 50, "a test buffer");
    FAIL() << "1 PiB allocation succeeded";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("a test buffer needs 1048576.00 GiB"), std::string::npos) << m;
    EXPECT_NE(m.find("free of"), std::string::npos) << m;
  }
  EXPECT_EQ(memory_stats().current, before);
  DeviceArray<float> a(1000, "test");
  EXPECT_GE(memory_stats().current, before + 4000);
  EXPECT_GE(memory_stats().peak, memory_stats().current);
}

// Stream-ordered allocations (the KV caches): counted as the plain ones, freed without synchronizing, and what is
// freed is kept in the pool for the next one. A value written by a kernel queued before the free is still read
// right by work queued before it; a later allocation of the same size on the same stream reuses the memory.
TEST(CudaAllocator, StreamOrderedAllocationsAreCountedAndReused) {
  REQUIRE_GPU();
  ASSERT_TRUE(stream_ordered_allocation()) << "sm_90 devices have memory pools";
  cudaStream_t st = nullptr;
  BQ_CUDA(cudaStreamCreate(&st));
  const size_t before = memory_stats().current, n = size_t(64) << 20;
  {
    DeviceArray<uint16_t> a(n, "test", st);
    EXPECT_EQ(memory_stats().current, before + n * sizeof(uint16_t));
    fill_normal_bf16(a.get(), n, 1, 1.0f, st);
    std::vector<uint16_t> head(16);
    BQ_CUDA(cudaMemcpyAsync(head.data(), a.get(), sizeof(uint16_t) * head.size(), cudaMemcpyDeviceToHost, st));
    BQ_CUDA(cudaStreamSynchronize(st));
    EXPECT_TRUE(std::any_of(head.begin(), head.end(), [](uint16_t h) { return h != 0; }));
  }
  EXPECT_EQ(memory_stats().current, before);
  cudaMemPool_t pool = nullptr;
  BQ_CUDA(cudaDeviceGetDefaultMemPool(&pool, current_device()));
  auto reserved = [&] {
    uint64_t v = 0;
    BQ_CUDA(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &v));
    return v;
  };
  const uint64_t kept = reserved();
  EXPECT_GE(kept, n * sizeof(uint16_t)) << "the pool keeps what was freed";
  DeviceArray<uint16_t> b(n, "test", st);
  EXPECT_EQ(reserved(), kept) << "the next allocation on the stream reuses it";
  b = DeviceArray<uint16_t>();
  BQ_CUDA(cudaStreamSynchronize(st));
  BQ_CUDA(cudaStreamDestroy(st));
}

// The totals are the sums over the devices allocated on; an allocation counts on the device it was made on, and a
// free there too, whichever device is current.
TEST(CudaAllocator, PerDeviceFiguresAddUp) {
  REQUIRE_GPU();
  const int last = device_count() - 1;
  DeviceArray<float> on_last;
  {
    DeviceGuard on(last);
    EXPECT_EQ(current_device(), last);
    on_last = DeviceArray<float>(1 << 20, "test");
  }
  EXPECT_GE(memory_stats(last).current, size_t(4) << 20);
  sample_device_memory();
  MemoryStats sum;
  for (int d : memory_devices()) {
    const MemoryStats s = memory_stats(d);
    sum.current += s.current;
    sum.peak += s.peak;
    sum.device_used_peak += s.device_used_peak;
    sum.device_total += s.device_total;
    EXPECT_GE(s.peak, s.current);
  }
  const MemoryStats total = memory_stats();
  EXPECT_EQ(total.current, sum.current);
  EXPECT_LE(total.peak, sum.peak);  // the peak of the sum: at most the sum of the peaks
  EXPECT_GE(total.peak, total.current);
  EXPECT_EQ(total.device_used_peak, sum.device_used_peak);
  EXPECT_EQ(total.device_total, sum.device_total);
  EXPECT_EQ(memory_stats(device_count()).current, 0u);  // no such device: nothing held
  const size_t before = memory_stats(last).current;
  on_last = DeviceArray<float>();
  EXPECT_EQ(memory_stats(last).current, before - (size_t(4) << 20));
  try {
    DeviceArray<uint8_t> huge(size_t(1) << 50, "a test buffer");
    FAIL() << "1 PiB allocation succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fmt::format("on device {}", current_device())), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bq
#endif
