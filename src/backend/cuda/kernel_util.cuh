// Small device helpers shared by the kernel files.
#pragma once
#include <cstdint>

#include "backend/cuda/ops.h"

namespace bq::cuda {

// Weights are streamed once: 16-byte loads that keep them out of L1 so that the activations stay there.
__device__ __forceinline__ uint4 load_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// Byte k of word u as a signed int8 in fp32, exactly, without the quarter-rate I2F conversion: the biased byte is
// placed in the mantissa of 2^23 and the bias subtracted.
__device__ __forceinline__ float int8_to_float(uint32_t u, int k) {
  return __uint_as_float(__byte_perm(u ^ 0x80808080u, 0x4B000000u, 0x7540u | unsigned(k))) - 8388736.0f;
}

// fp32 absmax of 4-bit block b; no fused multiply-add, as bitsandbytes (and the CPU path) compute it. dyn_map:
// w.dyn_map or a copy of it in shared memory.
__device__ __forceinline__ float q4_absmax(const DeviceWeight& w, int64_t b, const float* dyn_map) {
  if (!w.absmax_q) return w.absmax[b];
  return __fadd_rn(__fmul_rn(dyn_map[w.absmax_q[b]], w.absmax2[b / 256]), w.offset);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// w with block_shift = log2(blocksize) rounded up (the kernels' block index is a shift; callers check that the
// block size is a power of two where they rely on it).
inline DeviceWeight with_block_shift(DeviceWeight w) {
  w.block_shift = 0;
  while ((1 << w.block_shift) < w.blocksize) ++w.block_shift;
  return w;
}

}  // namespace bq::cuda
