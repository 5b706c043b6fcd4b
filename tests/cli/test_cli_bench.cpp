// bench as a driver of the decode loop: its byte and FLOP accounting checked by hand on the tiny preset, on the CPU
// backend (the CUDA figures come from the same code over the same loop).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace {

nlohmann::json bench_json(const std::string& args) {
  std::string out;
  const int rc = bq::test::run_command("OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() +
                                           " bench --device cpu --synthetic tiny --json " + args + " 2>/dev/null",
                                       &out);
  EXPECT_EQ(rc, 0) << out;
  return nlohmann::json::parse(out);
}

TEST(CliBench, CountsWhatTheDecodeLoopDid) {
  const int B = 3, P = 16, G = 5, reps = 2;
  auto j = bench_json("--precision bf16 --batch 3 --prompt-len 16 --gen-len 5 --reps 2");
  // tiny: hidden 64, intermediate 172, 2 layers, 4 heads of 16, 2 KV heads, vocab 512.
  const double H = 64, I = 172, L = 2, KV = 32, V = 512, heads = 4, hd = 16;
  const double linear_params = L * (H * H * 2 + H * KV * 2 + 3 * H * I);
  EXPECT_EQ(j["step_weight_bytes"].get<double>(), 2 * (linear_params + V * H));  // bf16 linears and lm_head
  const double kv_per_position = 2 * 4 * KV * L;                                  // K and V, fp32 on the CPU
  // After the prefill (when bench reads it) each sequence holds the one 64-position page its 16 positions need.
  EXPECT_EQ(j["kv_cache_bytes"].get<double>(), B * 64 * kv_per_position);
  EXPECT_EQ(j["kv_cache_peak_bytes"].get<double>(), B * 64 * kv_per_position) << "20 positions: still one page";
  double kv_read = 0;
  for (int s = 0; s < G - 1; ++s) kv_read += B * (P + s + 1) * kv_per_position;
  EXPECT_DOUBLE_EQ(j["decode_bytes_per_step"].get<double>(), j["step_weight_bytes"].get<double>() + kv_read / (G - 1));
  const double attention = 4 * hd * heads * L * (P * (P + 1) / 2.0) * B;
  EXPECT_DOUBLE_EQ(j["prefill_flops"].get<double>(), 2 * linear_params * B * P + 2 * V * H * B + attention);
  for (const char* k : {"decode_tokens_per_s", "prefill_tokens_per_s", "ttft_ms", "decode_gbs", "prefill_tflops"}) {
    ASSERT_EQ(j[k]["values"].size(), size_t(reps)) << k;
    for (auto& v : j[k]["values"]) EXPECT_GT(v.get<double>(), 0) << k;
  }
  EXPECT_GT(j["copy_gbs"].get<double>(), 0);
  EXPECT_GT(j["gemm_tflops"].get<double>(), 0);
  EXPECT_EQ(j["gemm"], "OpenBLAS fp32");
  EXPECT_EQ(j["device"], "cpu");
  // Quantized: fewer bytes per step than bf16, the same cache.
  auto q = bench_json("--precision nf4 --batch 3 --prompt-len 16 --gen-len 5 --reps 1");
  EXPECT_LT(q["step_weight_bytes"].get<double>(), j["step_weight_bytes"].get<double>() / 2);
  EXPECT_EQ(q["kv_cache_bytes"], j["kv_cache_bytes"]);
  // The load timed: a preset is drawn, in one part.
  EXPECT_GT(j["load_s"]["build"].get<double>(), 0) << j["load_s"].dump();
  EXPECT_DOUBLE_EQ(j["load_s"]["total"].get<double>(), j["load_s"]["build"].get<double>());
}

// A checkpoint's load in its parts: read (mapped), quantized, the forward built; they add up to the total.
TEST(CliBench, TimesEachPartOfLoadingACheckpoint) {
  const auto dir = bq::test::temp_dir("bench-load");
  std::string out;
  ASSERT_EQ(bq::test::run_command(bq::test::biomedq_binary().string() + " synth --preset tiny --out " +
                                      (dir / "m").string(), &out), 0) << out;
  ASSERT_EQ(bq::test::run_command("OMP_NUM_THREADS=1 " + bq::test::biomedq_binary().string() + " bench --device cpu --model " +
                                      (dir / "m").string() + " --precision nf4 --prompt-len 4 --gen-len 2 --reps 1 --json 2>/dev/null",
                                  &out), 0) << out;
  const auto load = nlohmann::json::parse(out)["load_s"];
  double sum = 0;
  for (const char* part : {"read", "quantize", "forward"}) {
    ASSERT_TRUE(load.contains(part)) << load.dump();
    EXPECT_GE(load[part].get<double>(), 0) << part;
    sum += load[part].get<double>();
  }
  EXPECT_GT(load["quantize"].get<double>(), 0);
  EXPECT_NEAR(load["total"].get<double>(), sum, 1e-9);
  std::filesystem::remove_all(dir);
}

TEST(CliBench, RefusesWhatItCannotMeasure) {
  std::string out;
  const std::string bin = bq::test::biomedq_binary().string();
  EXPECT_NE(bq::test::run_command(bin + " bench --device cpu --synthetic tiny --gen-len 1", &out), 0);
  EXPECT_NE(out.find("gen-len >= 2"), std::string::npos) << out;
  EXPECT_NE(bq::test::run_command(bin + " bench --device cpu --synthetic tiny --prompt-len 8190 --gen-len 8", &out), 0);
  EXPECT_NE(out.find("exceeds the model's 8192 positions"), std::string::npos) << out;
  EXPECT_NE(bq::test::run_command(bin + " bench --device cpu --synthetic tiny --devices 0", &out), 0);
  EXPECT_NE(out.find("--devices applies to --device cuda only"), std::string::npos) << out;
}

}  // namespace
