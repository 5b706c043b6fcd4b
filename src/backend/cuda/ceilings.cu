#include "backend/cuda/ceilings.h"

#include "backend/cuda/allocator.h"
#include "backend/cuda/check.h"
#include "backend/cuda/ops.h"

namespace bq::cuda {

namespace {

// Milliseconds per call of f, timed with events over `reps` calls after `warmup` calls.
template <typename F>
double time_ms(F&& f, int warmup, int reps, cudaStream_t st) {
  for (int i = 0; i < warmup; ++i) f();
  cudaEvent_t a, b;
  BQ_CUDA(cudaEventCreate(&a));
  BQ_CUDA(cudaEventCreate(&b));
  BQ_CUDA(cudaEventRecord(a, st));
  for (int i = 0; i < reps; ++i) f();
  BQ_CUDA(cudaEventRecord(b, st));
  BQ_CUDA(cudaEventSynchronize(b));
  float ms = 0;
  BQ_CUDA(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return double(ms) / reps;
}

}  // namespace

double measure_copy_gbs() {
  const size_t bytes = size_t(1) << 30;
  DeviceArray<uint8_t> src(bytes, "bandwidth test"), dst(bytes, "bandwidth test");
  fill_bytes(src.get(), bytes, 1, 0, 255, nullptr);
  double ms = time_ms([&] { BQ_CUDA(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, nullptr)); },
                      3, 20, nullptr);
  return 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
}

double measure_gemm_tflops() {
  const int n = 8192;
  const size_t e = size_t(n) * n;
  DeviceArray<uint16_t> x(e, "GEMM test"), w(e, "GEMM test");
  DeviceArray<float> y(e, "GEMM test");
  fill_normal_bf16(x.get(), e, 1, 1.0f, nullptr);
  fill_normal_bf16(w.get(), e, 2, 1.0f, nullptr);
  cublasHandle_t h;
  BQ_CUBLAS(cublasCreate(&h));
  double ms = time_ms([&] { gemm_bf16(h, x.get(), w.get(), n, n, n, y.get(), n, false); }, 3, 10, nullptr);
  cublasDestroy(h);
  return 2.0 * double(n) * n * n / (ms * 1e-3) / 1e12;
}

}  // namespace bq::cuda
