// Every CUDA runtime and cuBLAS call goes through BQ_CUDA / BQ_CUBLAS: a failure becomes a bq::Error naming the call.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace bq::cuda {

[[noreturn]] void fail_cuda(const char* expr, const char* file, int line, const char* what);

inline void check(cudaError_t e, const char* expr, const char* file, int line) {
  if (e != cudaSuccess) fail_cuda(expr, file, line, cudaGetErrorString(e));
}
inline void check(cublasStatus_t s, const char* expr, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) fail_cuda(expr, file, line, cublasGetStatusString(s));
}

}  // namespace bq::cuda

#define BQ_CUDA(expr) ::bq::cuda::check((expr), #expr, __FILE__, __LINE__)
#define BQ_CUBLAS(expr) ::bq::cuda::check((expr), #expr, __FILE__, __LINE__)
// After each kernel launch: launch-configuration errors surface here, not at the next synchronization.
#define BQ_LAUNCHED() ::bq::cuda::check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
