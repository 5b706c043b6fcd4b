// Small device helpers shared by the kernel files, and the launch that chains the kernels of a pass.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <mutex>
#include <set>
#include <utility>

#include "backend/cuda/allocator.h"
#include "backend/cuda/check.h"
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

__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
__device__ __forceinline__ uint16_t to_bf16_bits(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

// v rounded to a 16-bit compute dtype (fp16 or bf16), as a bit pattern.
__device__ __forceinline__ uint16_t to_16bit(float v, Compute c) {
  return c == Compute::F16 ? __half_as_ushort(__float2half_rn(v)) : to_bf16_bits(v);
}

// Two floats rounded to a packed pair of 16-bit values (bf16 or fp16), lo in the low half.
template <bool BF>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (BF) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

// c += A(16×16) · B(16×8), fp32 accumulators; register layouts of PTX's m16n8k16.
template <bool BF>
__device__ __forceinline__ void mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                    uint32_t b1) {
  if constexpr (BF)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// cp.async: copies to shared memory in flight while the block computes, waited for by group.
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }
__device__ __forceinline__ void commit_async() { asm volatile("cp.async.commit_group;"); }
// Waits until at most N of the committed groups are still in flight.
template <int N>
__device__ __forceinline__ void wait_async() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

// Programmatic dependent launch (sm_90): a kernel started with pdl_launch may begin while the previous kernel of
// the stream is still running. It first signals that its own successor may start, does only work that reads
// nothing an earlier kernel writes (lookup tables, the first weight loads), and then waits for its predecessor to
// finish. Every kernel started with pdl_launch calls grid_wait() on all paths before it touches activations;
// that makes the wait transitive along the stream.
__device__ __forceinline__ void grid_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void grid_allow_successor() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

template <typename... Params, typename... Args>
void pdl_launch_smem(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t st, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = st;
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = programmatic_launch() ? 1 : 0;
  BQ_CUDA(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}
template <typename... Params, typename... Args>
void pdl_launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t st, Args&&... args) {
  pdl_launch_smem(kernel, grid, block, 0, st, std::forward<Args>(args)...);
}

// More than the default 48 KiB of dynamic shared memory is an opt-in per kernel and device (a pipeline's stages may
// sit on several devices), made once.
template <typename... Params>
void opt_in_smem(void (*kernel)(Params...), int bytes) {
  static std::mutex lock;
  static std::set<std::pair<const void*, int>> done;  // (kernel, device): kernels of one signature share this set
  std::lock_guard<std::mutex> hold(lock);
  const std::pair<const void*, int> key{reinterpret_cast<const void*>(kernel), current_device()};
  if (done.count(key)) return;
  BQ_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  done.insert(key);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// 4-bit blocks the vectorized kernels take: a 16-byte chunk (32 elements) lies in one block, whose index is a shift.
inline bool q4_blocks_vectorizable(const DeviceWeight& w) {
  return w.blocksize % 32 == 0 && (w.blocksize & (w.blocksize - 1)) == 0;
}

// w with block_shift = log2(blocksize) rounded up (the kernels' block index is a shift; callers check that the
// block size is a power of two where they rely on it).
inline DeviceWeight with_block_shift(DeviceWeight w) {
  w.block_shift = 0;
  while ((1 << w.block_shift) < w.blocksize) ++w.block_shift;
  return w;
}

}  // namespace bq::cuda
