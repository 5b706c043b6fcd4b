// Quantized matmul throughput: decode (n = 1) over Llama-7B-sized projections, reported as GB/s of weight bytes
// read (the quantity that bounds decoding speed), plus one prefill shape in GFLOP/s.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <random>

#include "backend/cpu/qmatmul.h"
#include "quant/quant.h"

using namespace bq;
using namespace bq::quant;

namespace {

// Quantized once per (scheme, shape) and kept: quantizing 45M weights is slower than the measurement.
const QuantizedMatrix& weights(Scheme s, int64_t rows, int64_t cols) {
  static std::map<std::tuple<int, int64_t, int64_t>, std::unique_ptr<QuantizedMatrix>> cache;
  auto& slot = cache[{int(s), rows, cols}];
  if (!slot) {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<uint16_t> w(static_cast<size_t>(rows * cols));
    for (auto& h : w) h = f32_to_bf16(nd(rng));
    slot = std::make_unique<QuantizedMatrix>(quantize(w.data(), DType::BF16, rows, cols, {s}));
  }
  return *slot;
}

void BM_Matmul(benchmark::State& state, Scheme s, int64_t rows, int64_t cols, int64_t n) {
  const auto& q = weights(s, rows, cols);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * cols)), y(static_cast<size_t>(n * rows));
  for (auto& v : x) v = nd(rng);
  for (auto _ : state) {
    matmul(q, x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(q.bytes()));
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(rows * cols * n) * double(state.iterations()), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1000);
}

void register_all() {
  const std::pair<Scheme, const char*> schemes[] = {
      {Scheme::NF4, "nf4_dq"}, {Scheme::FP4, "fp4_dq"}, {Scheme::Int8, "int8"}, {Scheme::LLMInt8, "llm_int8"}};
  for (auto [s, name] : schemes) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{4096, 4096}, {11008, 4096}})
      benchmark::RegisterBenchmark(
          (std::string("decode/") + name + "/" + std::to_string(rows) + "x" + std::to_string(cols)).c_str(),
          [s = s, rows = rows, cols = cols](benchmark::State& st) { BM_Matmul(st, s, rows, cols, 1); })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    benchmark::RegisterBenchmark((std::string("prefill64/") + name + "/4096x4096").c_str(),
                                 [s = s](benchmark::State& st) { BM_Matmul(st, s, 4096, 4096, 64); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
