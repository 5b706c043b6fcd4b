// The two ceilings a benchmark compares against, measured on the device in the same run.
#pragma once

namespace bq::cuda {

// Device-to-device copy of a large buffer, counting bytes read plus bytes written, in GB/s (1e9 bytes).
double measure_copy_gbs();
// A large bf16 GEMM through cuBLAS (bf16 operands, fp32 accumulation and output, random data), in TFLOP/s.
double measure_gemm_tflops();

}  // namespace bq::cuda
