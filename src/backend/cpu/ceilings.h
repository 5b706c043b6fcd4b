// The two ceilings a CPU benchmark compares against, measured in the same run (the CUDA ones: cuda/ceilings.h).
#pragma once

namespace bq::cpu {

// memcpy of a large buffer, counting bytes read plus bytes written, in GB/s (1e9 bytes); the best of three.
double measure_copy_gbs();
// A large fp32 GEMM through OpenBLAS (all threads, random data), in TFLOP/s; the best of three.
double measure_gemm_tflops();

}  // namespace bq::cpu
