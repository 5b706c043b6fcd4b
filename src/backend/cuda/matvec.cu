// Linear layers on the device: decode matrix-vector kernels (one pass over the weights, 16-byte loads, every
// format dequantized in registers), LLM.int8's activation decomposition, dequantization to bf16 for prefill GEMMs.
#include <cuda_bf16.h>

#include <algorithm>

#include "backend/cuda/check.h"
#include "backend/cuda/kernel_util.cuh"
#include "backend/cuda/ops.h"
#include "core/error.h"

namespace bq::cuda {

size_t DeviceWeight::bytes() const {
  const size_t n = size_t(out) * size_t(in);
  switch (kind) {
    case WeightKind::BF16: return n * 2;
    case WeightKind::Q4: {
      size_t blocks = (n + size_t(blocksize) - 1) / size_t(blocksize);
      return (n + 1) / 2 + (absmax_q ? blocks + (blocks + 255) / 256 * 4 : blocks * 4);
    }
    default: return n + size_t(out) * 4;
  }
}

namespace {

constexpr int kWarps = 4;  // warps per block of the matrix-vector kernels
constexpr int kUnroll = 4;  // 16-byte chunks per row a lane loads before using them
constexpr int kRowsPerWarp = 2;  // output rows per warp: each x load feeds two weight rows
constexpr int kLaunchRows = 16;  // tokens per launch (register accumulators per token)

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ int warp_sum_i(int v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One weight element, any layout (the ragged-shape path and dequantization).
__device__ __forceinline__ float weight_at(const DeviceWeight& w, int64_t r, int64_t c) {
  const int64_t e = r * w.in + c;
  switch (w.kind) {
    case WeightKind::BF16: return bf16f(w.bf16[e]);
    case WeightKind::Q4: {
      uint8_t byte = w.packed[e / 2];
      int idx = (e % 2 == 0) ? byte >> 4 : byte & 15;
      return w.code[idx] * q4_absmax(w, e / w.blocksize, w.dyn_map);
    }
    default: return float(w.cb[e]) * (w.scb[r] / 127.0f);
  }
}

__device__ __forceinline__ void store_out(float* y, const float* bias, int64_t idx, int64_t r, float v, bool accumulate) {
  if (bias) v += bias[r];
  y[idx] = accumulate ? y[idx] + v : v;
}

// LLM.int8 epilogue for row r, token t: int32 product rescaled, plus the outlier columns in floating point.
__device__ __forceinline__ float llm_int8_outliers(const DeviceWeight& w, const Int8Scratch& s, const float* x,
                                                   int64_t r, int t, int lane) {
  const int n_out = *s.n_outliers;
  const float wscale = w.scb[r] / 127.0f;
  float extra = 0;
  for (int k = lane; k < n_out; k += 32) {
    int c = s.outliers[k];
    extra += x[int64_t(t) * w.in + c] * (float(w.cb[r * w.in + c]) * wscale);
  }
  return warp_sum(extra);
}

// Up to three weights with the same input in one launch (q, k, v; gate, up): consecutive ranges of blocks.
constexpr int kMaxVecGroup = 3;
struct VecGroup {
  DeviceWeight w[kMaxVecGroup];
  float* y[kMaxVecGroup];
  const float* bias[kMaxVecGroup];
  int blocks_before[kMaxVecGroup + 1];
  int count;
};

// Vectorized matrix-vector kernel: each lane takes 16-byte chunks of kRowsPerWarp rows; NT = token count bound.
template <WeightKind K, int NT>
__global__ void __launch_bounds__(kWarps * 32) matvec_kernel(VecGroup G, const float* __restrict__ x, int n,
                                                             bool accumulate, Int8Scratch s8) {
  int wi = 0;
  while (wi + 1 < G.count && int(blockIdx.x) >= G.blocks_before[wi + 1]) ++wi;
  const DeviceWeight& w = G.w[wi];
  float* __restrict__ y = G.y[wi];
  const float* __restrict__ bias = G.bias[wi];
  // Codebook replicated once per bank: lane L reads column L, so lookups never conflict.
  __shared__ float code_lut[16 * 32];
  __shared__ float dyn_map[256];
  if constexpr (K == WeightKind::Q4) {
    for (int i = threadIdx.x; i < 16 * 32; i += blockDim.x) code_lut[i] = w.code[i / 32];
    if (w.absmax_q)
      for (int i = threadIdx.x; i < 256; i += blockDim.x) dyn_map[i] = w.dyn_map[i];
    __syncthreads();
  }
  grid_wait();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r0 = (int64_t(int(blockIdx.x) - G.blocks_before[wi]) * kWarps + warp) * kRowsPerWarp;
  if (r0 >= w.out) return grid_allow_successor();
  constexpr int E = K == WeightKind::BF16 ? 8 : K == WeightKind::Q4 ? 32 : 16;  // elements per 16 bytes
  constexpr size_t chunk_bytes = 16;
  const int64_t chunks = w.in / E;
  const uint8_t* base = K == WeightKind::BF16 ? reinterpret_cast<const uint8_t*>(w.bf16)
                        : K == WeightKind::Q4 ? w.packed
                                              : reinterpret_cast<const uint8_t*>(w.cb);
  const int64_t row_stride = chunks * int64_t(chunk_bytes);
  const int nrows = w.out - r0 < kRowsPerWarp ? int(w.out - r0) : kRowsPerWarp;

  float acc[kRowsPerWarp][NT];
  int iacc[kRowsPerWarp][NT];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[rr][t] = 0, iacc[rr][t] = 0;

  // kUnroll chunks per row are loaded before any is used: enough bytes in flight to cover the memory latency.
  for (int64_t j0 = lane; j0 < chunks; j0 += 32 * kUnroll) {
    uint4 wv_all[kUnroll][kRowsPerWarp];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; ++rr)
        if (rr < nrows && j0 + u * 32 < chunks)
          wv_all[u][rr] = load_stream(base + (r0 + rr) * row_stride + (j0 + u * 32) * chunk_bytes);
    // Block scales of all those chunks next, so that their loads overlap too (a chunk lies in one block).
    float scale_all[kUnroll][kRowsPerWarp];
    if constexpr (K == WeightKind::Q4) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr)
          scale_all[u][rr] = rr < nrows && j0 + u * 32 < chunks
                                 ? q4_absmax(w, ((r0 + rr) * w.in + (j0 + u * 32) * E) >> w.block_shift, dyn_map)
                                 : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = j0 + u * 32;
      if (j >= chunks) break;
      const uint4* wv = wv_all[u];
      const float* scale = scale_all[u];
      const int64_t c0 = j * E;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        if (t >= n) break;
        if constexpr (K == WeightKind::LLMInt8) {
          int4 xq = *reinterpret_cast<const int4*>(s8.xq + int64_t(t) * w.in + c0);
#pragma unroll
          for (int rr = 0; rr < kRowsPerWarp; ++rr) {
            int a = iacc[rr][t];
            a = __dp4a(int(wv[rr].x), xq.x, a);
            a = __dp4a(int(wv[rr].y), xq.y, a);
            a = __dp4a(int(wv[rr].z), xq.z, a);
            a = __dp4a(int(wv[rr].w), xq.w, a);
            iacc[rr][t] = a;
          }
        } else {
          float xv[E];
          const float4* xp = reinterpret_cast<const float4*>(x + int64_t(t) * w.in + c0);
#pragma unroll
          for (int i = 0; i < E / 4; ++i) {
            float4 f = __ldg(xp + i);
            xv[4 * i] = f.x, xv[4 * i + 1] = f.y, xv[4 * i + 2] = f.z, xv[4 * i + 3] = f.w;
          }
#pragma unroll
          for (int rr = 0; rr < kRowsPerWarp; ++rr) {
            const uint32_t wd[4] = {wv[rr].x, wv[rr].y, wv[rr].z, wv[rr].w};
            float sum = 0;
            if constexpr (K == WeightKind::BF16) {
#pragma unroll
              for (int i = 0; i < 4; ++i)
                sum += __uint_as_float(wd[i] << 16) * xv[2 * i] + __uint_as_float(wd[i] & 0xffff0000u) * xv[2 * i + 1];
            } else if constexpr (K == WeightKind::Int8) {
#pragma unroll
              for (int i = 0; i < 16; ++i) sum += int8_to_float(wd[i / 4], i % 4) * xv[i];
            } else {
              // Byte i of the chunk holds elements 2i (high nibble) and 2i + 1 (low nibble).
#pragma unroll
              for (int i = 0; i < 16; ++i) {
                uint32_t byte = (wd[i / 4] >> (8 * (i % 4))) & 0xff;
                sum += code_lut[(byte >> 4) * 32 + lane] * xv[2 * i] + code_lut[(byte & 15) * 32 + lane] * xv[2 * i + 1];
              }
              sum *= scale[rr];
            }
            acc[rr][t] += sum;
          }
        }
      }
    }
  }
  grid_allow_successor();  // the weights are read: the next kernel may start its prologue
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    if (rr >= nrows) break;
    const int64_t r = r0 + rr;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t >= n) break;
      float v;
      if constexpr (K == WeightKind::LLMInt8) {
        int tot = warp_sum_i(iacc[rr][t]);
        float extra = llm_int8_outliers(w, s8, x, r, t, lane);
        v = float(tot) * (s8.sca[t] * w.scb[r] / (127.0f * 127.0f)) + extra;
      } else {
        v = warp_sum(acc[rr][t]);
        if constexpr (K == WeightKind::Int8) v *= w.scb[r] / 127.0f;
      }
      if (lane == 0) store_out(y, bias, int64_t(t) * w.out + r, r, v, accumulate);
    }
  }
}

// Any shape: one warp per output row, one element per lane step.
__global__ void matvec_scalar_kernel(DeviceWeight w, const float* __restrict__ x, int n, const float* __restrict__ bias,
                                     float* __restrict__ y, bool accumulate, Int8Scratch s8) {
  grid_allow_successor();
  grid_wait();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarps + warp;
  if (r >= w.out) return;
  for (int t = 0; t < n; ++t) {
    float v;
    if (w.kind == WeightKind::LLMInt8) {
      int a = 0;
      for (int64_t c = lane; c < w.in; c += 32) a += int(s8.xq[int64_t(t) * w.in + c]) * int(w.cb[r * w.in + c]);
      a = warp_sum_i(a);
      float extra = llm_int8_outliers(w, s8, x, r, t, lane);
      v = float(a) * (s8.sca[t] * w.scb[r] / (127.0f * 127.0f)) + extra;
    } else {
      float a = 0;
      for (int64_t c = lane; c < w.in; c += 32) a += weight_at(w, r, c) * x[int64_t(t) * w.in + c];
      v = warp_sum(a);
    }
    if (lane == 0) store_out(y, bias, int64_t(t) * w.out + r, r, v, accumulate);
  }
}

VecGroup vec_group(const MatvecTarget* t, int count) {
  VecGroup G{};
  G.count = count;
  const int64_t rows_per_block = int64_t(kWarps) * kRowsPerWarp;
  for (int i = 0; i < count; ++i) {
    G.w[i] = with_block_shift(*t[i].w);
    G.y[i] = t[i].y;
    G.bias[i] = t[i].bias;
    G.blocks_before[i + 1] = G.blocks_before[i] + int((t[i].w->out + rows_per_block - 1) / rows_per_block);
  }
  return G;
}

template <WeightKind K>
void launch_vec(const VecGroup& G, const float* x, int n, bool acc, const Int8Scratch& s8, cudaStream_t st) {
  const dim3 grid(unsigned(G.blocks_before[G.count])), block(kWarps * 32);
  if (n == 1) pdl_launch(matvec_kernel<K, 1>, grid, block, st, G, x, n, acc, s8);
  else if (n <= 4) pdl_launch(matvec_kernel<K, 4>, grid, block, st, G, x, n, acc, s8);
  else pdl_launch(matvec_kernel<K, kLaunchRows>, grid, block, st, G, x, n, acc, s8);
}

// Whether the vectorized kernel takes w: whole 16-byte chunks per row, aligned, power-of-two 4-bit blocks.
bool vec_capable(const DeviceWeight& w, const float* x, const Int8Scratch& s) {
  const int E = w.kind == WeightKind::BF16 ? 8 : w.kind == WeightKind::Q4 ? 32 : 16;
  const void* base = w.kind == WeightKind::BF16 ? static_cast<const void*>(w.bf16)
                     : w.kind == WeightKind::Q4 ? static_cast<const void*>(w.packed)
                                                : static_cast<const void*>(w.cb);
  bool vec = w.in % E == 0 && aligned16(base) && aligned16(x) && (w.kind != WeightKind::Q4 || q4_blocks_vectorizable(w));
  if (w.kind == WeightKind::LLMInt8) vec = vec && aligned16(s.xq);
  return vec;
}

void launch_vec_kind(const VecGroup& G, const float* x, int n, bool acc, const Int8Scratch& s, cudaStream_t st) {
  switch (G.w[0].kind) {
    case WeightKind::BF16: return launch_vec<WeightKind::BF16>(G, x, n, acc, s, st);
    case WeightKind::Q4: return launch_vec<WeightKind::Q4>(G, x, n, acc, s, st);
    case WeightKind::Int8: return launch_vec<WeightKind::Int8>(G, x, n, acc, s, st);
    case WeightKind::LLMInt8: return launch_vec<WeightKind::LLMInt8>(G, x, n, acc, s, st);
  }
}

// ---------------------------------------------------------------- LLM.int8 activation decomposition

__device__ __forceinline__ float block_max(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) red[0] = v;
  }
  __syncthreads();
  v = red[0];
  __syncthreads();
  return v;
}

// SCA[t] = max |x[t, c]| over the elements below the threshold (one block per token).
__global__ void int8_sca_kernel(const float* x, int cols, float thr, float* sca) {
  __shared__ float red[32];
  const float* xt = x + int64_t(blockIdx.x) * cols;
  float m = 0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float a = fabsf(xt[c]);
    if (thr <= 0 || a < thr) m = fmaxf(m, a);
  }
  m = block_max(m, red);
  if (threadIdx.x == 0) sca[blockIdx.x] = m;
}

// Column c is an outlier when any token has |x| >= threshold.
__global__ void int8_flags_kernel(const float* x, int n, int cols, float thr, uint8_t* flags) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  uint8_t f = 0;
  if (thr > 0)
    for (int t = 0; t < n; ++t) f |= fabsf(x[int64_t(t) * cols + c]) >= thr;
  flags[c] = f;
}

// round_half_to_even(x * 127 / SCA) in double, exactly as the CPU path; outlier columns zeroed.
__global__ void int8_quant_kernel(const float* x, int n, int cols, const float* sca, const uint8_t* flags, int8_t* xq) {
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * cols) return;
  int t = int(i / cols), c = int(i % cols);
  float s = sca[t];
  int8_t q = 0;
  if (s != 0 && !flags[c]) q = int8_t(__double2int_rn(double(x[i]) * 127.0 / double(s)));
  xq[i] = q;
}

// Ascending list of flagged columns (one block of 1024 threads, warp ballots and a running offset).
__global__ void int8_compact_kernel(const uint8_t* flags, int cols, int* list, int* count) {
  __shared__ int warp_counts[32];
  __shared__ int running;
  if (threadIdx.x == 0) running = 0;
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int base = 0; base < cols; base += blockDim.x) {
    int c = base + threadIdx.x;
    bool f = c < cols && flags[c];
    unsigned ballot = __ballot_sync(0xffffffffu, f);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int off = running;
    for (int k = 0; k < warp; ++k) off += warp_counts[k];
    if (f) list[off + __popc(ballot & ((1u << lane) - 1))] = c;
    __syncthreads();
    if (threadIdx.x == 0)
      for (int k = 0; k < int(blockDim.x / 32); ++k) running += warp_counts[k];
    __syncthreads();
  }
  if (threadIdx.x == 0) *count = running;
}

// One block per weight row (grid-stride over rows), threads across the row: no 64-bit divisions per element.
__global__ void dequant_kernel(DeviceWeight w, int64_t row0, int64_t nrows, uint16_t* out) {
  __shared__ float code[16];
  if (threadIdx.x < 16 && w.code) code[threadIdx.x] = w.code[threadIdx.x];
  __syncthreads();
  const int in = int(w.in);
  for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x) {
    const int64_t row = row0 + r;
    uint16_t* dst = out + r * in;
    if (w.kind == WeightKind::Q4) {
      const int64_t e0 = row * in, b0 = e0 / w.blocksize;
      const int off = int(e0 - b0 * w.blocksize);  // position of the row start inside its block
      for (int c = threadIdx.x; c < in; c += blockDim.x) {
        const int64_t e = e0 + c;
        const uint8_t byte = w.packed[e >> 1];
        const int idx = (e & 1) ? byte & 15 : byte >> 4;
        dst[c] = to_bf16_bits(code[idx] * q4_absmax(w, b0 + (off + c) / w.blocksize, w.dyn_map));
      }
    } else if (w.kind == WeightKind::BF16) {
      for (int c = threadIdx.x; c < in; c += blockDim.x) dst[c] = w.bf16[row * in + c];
    } else {
      const float scale = w.scb[row] / 127.0f;
      for (int c = threadIdx.x; c < in; c += blockDim.x) dst[c] = to_bf16_bits(float(w.cb[row * in + c]) * scale);
    }
  }
}

// The same for rows of whole 8-element groups (k a multiple of 32 for 4-bit, of 16 for int8; power-of-two 4-bit
// blocks of at least 32): one thread per group, so that a warp's 16-byte stores of bf16 (and its 4- or 8-byte loads
// of codes) are contiguous. The rows of a tile are contiguous in the weight and in `out` alike. (A thread per
// 32 elements, storing 64 bytes each, ran at about 1.7 TB/s on the H200.)
// K: Q4 or Int8 (int8 codes of either 8-bit scheme).
template <WeightKind K>
__global__ void dequant_vec_kernel(DeviceWeight w, int64_t row0, int64_t nrows, uint16_t* out) {
  __shared__ float code[16];
  if (K == WeightKind::Q4 && threadIdx.x < 16) code[threadIdx.x] = w.code[threadIdx.x];
  __syncthreads();
  const int64_t groups = nrows * w.in / 8, first = row0 * w.in;
  for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = first + g * 8;  // the group's first element in the weight
    uint32_t o[4];
    if constexpr (K == WeightKind::Q4) {
      const uint32_t u = __ldg(reinterpret_cast<const uint32_t*>(w.packed + e / 2));
      const float scale = q4_absmax(w, e >> w.block_shift, w.dyn_map);
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const uint32_t byte = (u >> (8 * b)) & 0xffu;
        o[b] = uint32_t(to_bf16_bits(code[byte >> 4] * scale)) | uint32_t(to_bf16_bits(code[byte & 15] * scale)) << 16;
      }
    } else {
      const uint2 u = __ldg(reinterpret_cast<const uint2*>(reinterpret_cast<const uint8_t*>(w.cb) + e));
      const float scale = w.scb[e / w.in] / 127.0f;
      const uint32_t words[2] = {u.x, u.y};
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const uint32_t word = words[b / 2];
        o[b] = uint32_t(to_bf16_bits(int8_to_float(word, 2 * (b % 2)) * scale)) |
               uint32_t(to_bf16_bits(int8_to_float(word, 2 * (b % 2) + 1) * scale)) << 16;
      }
    }
    reinterpret_cast<uint4*>(out)[g] = make_uint4(o[0], o[1], o[2], o[3]);
  }
}

// Up to kLaunchRows tokens in one launch.
void matvec_rows(const DeviceWeight& w, const float* x, int n, const float* bias, float* y, bool accumulate,
                 const Int8Scratch& s, cudaStream_t st) {
  if (!vec_capable(w, x, s)) {
    return pdl_launch(matvec_scalar_kernel, dim3(unsigned((w.out + kWarps - 1) / kWarps)), dim3(kWarps * 32), st, w, x,
                      n, bias, y, accumulate, s);
  }
  const MatvecTarget t{&w, y, bias};
  launch_vec_kind(vec_group(&t, 1), x, n, accumulate, s, st);
}

// LLM.int8 epilogue of a GEMM: int32 products of rows [r0, r0 + m) rescaled by SCA · SCB / 127², plus, unless a
// gathered GEMM adds them afterwards (outliers_after), the outlier columns in fp32 as the matrix-vector kernel
// computes them (one thread per output).
__global__ void llm_int8_epilogue_kernel(DeviceWeight w, Int8Scratch s, const float* __restrict__ x,
                                         const int32_t* __restrict__ acc, int n, int64_t r0, int64_t m,
                                         const float* __restrict__ bias, float* __restrict__ y, bool accumulate,
                                         bool outliers_after) {
  // Consecutive threads take consecutive tokens of one row: the row's outlier weights are one broadcast load
  // each, the tokens' activations are L2 hits.
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * m) return;
  const int64_t rr = i / n;
  const int t = int(i - rr * n);
  const int64_t r = r0 + rr;
  const int n_out = outliers_after ? 0 : *s.n_outliers;
  const float wscale = w.scb[r] / 127.0f;
  float extra = 0;
  for (int k = 0; k < n_out; ++k) {
    const int c = s.outliers[k];
    extra += x[int64_t(t) * w.in + c] * (float(w.cb[r * w.in + c]) * wscale);
  }
  const float v = float(acc[int64_t(t) * m + rr]) * (s.sca[t] * w.scb[r] / (127.0f * 127.0f)) + extra;
  store_out(y, bias, int64_t(t) * w.out + r, r, v, accumulate);
}

// xo[t, k] = x[t, outliers[k]]: the activations of the outlier columns, for the gathered GEMM.
__global__ void gather_outlier_x_kernel(const float* __restrict__ x, int n, int64_t cols, const int* __restrict__ list,
                                        int n_out, float* __restrict__ xo) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * n_out) return;
  const int64_t t = i / n_out;
  xo[i] = x[t * cols + list[i - t * n_out]];
}

// wo[rr, k] = CB[r0 + rr, outliers[k]] · SCB / 127: the dequantized int8 weights of the outlier columns (as the CPU
// computes them).
__global__ void gather_outlier_w_kernel(DeviceWeight w, int64_t r0, int64_t m, const int* __restrict__ list, int n_out,
                                        float* __restrict__ wo) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * n_out) return;
  const int64_t rr = i / n_out, r = r0 + rr;
  wo[i] = float(w.cb[r * w.in + list[i - rr * n_out]]) * (w.scb[r] / 127.0f);
}

}  // namespace

void matvec(const DeviceWeight& w, const float* x, int n, const float* bias, float* y, bool accumulate,
            const Int8Scratch* s8, cudaStream_t st) {
  if (n < 1 || n > kMatvecMaxRows) fail("matvec: {} rows (1..{})", n, kMatvecMaxRows);
  if (w.kind == WeightKind::LLMInt8 && !s8) fail("matvec: LLM.int8 needs its activation scratch");
  for (int r0 = 0; r0 < n; r0 += kLaunchRows) {
    Int8Scratch s = s8 ? *s8 : Int8Scratch{};
    if (s8) s.xq += int64_t(r0) * w.in, s.sca += r0;
    matvec_rows(w, x + int64_t(r0) * w.in, std::min(kLaunchRows, n - r0), bias, y + int64_t(r0) * w.out, accumulate,
                s, st);
  }
}

bool matvec_grouped(const MatvecTarget* targets, int count, const float* x, int n, cudaStream_t st) {
  if (count < 1 || count > kMaxVecGroup || n < 1 || n > kLaunchRows) return false;
  const DeviceWeight& w0 = *targets[0].w;
  for (int i = 0; i < count; ++i) {
    const DeviceWeight& w = *targets[i].w;
    if (w.kind == WeightKind::LLMInt8 || w.kind != w0.kind || w.in != w0.in || !vec_capable(w, x, Int8Scratch{}) ||
        (w.kind == WeightKind::Q4 && (w.code != w0.code || w.dyn_map != w0.dyn_map)))
      return false;
  }
  launch_vec_kind(vec_group(targets, count), x, n, false, Int8Scratch{}, st);
  return true;
}

void llm_int8_prepare(const float* x, int n, int cols, float threshold, const Int8Scratch& s, cudaStream_t st) {
  int8_sca_kernel<<<n, 256, 0, st>>>(x, cols, threshold, s.sca);
  BQ_LAUNCHED();
  int8_flags_kernel<<<(cols + 255) / 256, 256, 0, st>>>(x, n, cols, threshold, s.flags);
  BQ_LAUNCHED();
  int64_t total = int64_t(n) * cols;
  int8_quant_kernel<<<unsigned((total + 255) / 256), 256, 0, st>>>(x, n, cols, s.sca, s.flags, s.xq);
  BQ_LAUNCHED();
  int8_compact_kernel<<<1, 1024, 0, st>>>(s.flags, cols, s.outliers, s.n_outliers);
  BQ_LAUNCHED();
}

void dequantize_rows(const DeviceWeight& w, int64_t row0, int64_t nrows, uint16_t* out, cudaStream_t st) {
  if (w.kind != WeightKind::BF16 && aligned16(out)) {
    const DeviceWeight wk = with_block_shift(w);
    const bool q4 = w.kind == WeightKind::Q4;
    const bool ok = q4 ? w.in % 32 == 0 && aligned16(w.packed) && q4_blocks_vectorizable(w)
                       : w.in % 16 == 0 && aligned16(w.cb);
    if (ok) {
      const int64_t groups = nrows * w.in / 8;
      const unsigned blocks = unsigned(std::min<int64_t>((groups + 255) / 256, 132 * 16));
      if (q4) dequant_vec_kernel<WeightKind::Q4><<<blocks, 256, 0, st>>>(wk, row0, nrows, out);
      else dequant_vec_kernel<WeightKind::Int8><<<blocks, 256, 0, st>>>(wk, row0, nrows, out);
      BQ_LAUNCHED();
      return;
    }
  }
  unsigned blocks = unsigned(std::min<int64_t>(nrows, 132 * 16));
  dequant_kernel<<<blocks, 256, 0, st>>>(w, row0, nrows, out);
  BQ_LAUNCHED();
}

bool llm_int8_gemm(cublasHandle_t h, const DeviceWeight& w, const float* x, int n, const Int8Scratch& s,
                   int32_t* acc, size_t acc_elems, const float* bias, float* y, bool accumulate, cudaStream_t st) {
  if (w.in % 4 != 0 || w.out % 4 != 0) return false;  // cuBLAS' int8 products want leading dimensions of 4
  // The outlier columns as one fp32 GEMM over the gathered columns (bitsandbytes' 16-bit product of the outlier
  // part) rather than a loop per output: that needs their count on the host, which a graph capture cannot read.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  BQ_CUDA(cudaStreamIsCapturing(st, &capture));
  int n_out = -1;  // -1: the epilogue adds the outlier columns itself
  if (capture == cudaStreamCaptureStatusNone) {
    BQ_CUDA(cudaMemcpyAsync(&n_out, s.n_outliers, sizeof(int), cudaMemcpyDeviceToHost, st));
    BQ_CUDA(cudaStreamSynchronize(st));
  }
  // acc holds, with the gathered GEMM: xo [n, n_out] fp32, then per chunk of m rows the int32 products [n, m] and
  // wo [m, n_out] fp32.
  const int64_t xo_elems = n_out > 0 ? int64_t(n) * n_out : 0;
  int64_t chunk = n_out >= 0 ? (int64_t(acc_elems) - xo_elems) / (n + std::max(n_out, 0)) / 4 * 4 : 0;
  if (chunk < 4) n_out = -1, chunk = int64_t(acc_elems) / n / 4 * 4;  // too many outliers: the per-output loop
  chunk = std::min<int64_t>(chunk, w.out);
  if (chunk < 4) return false;
  float* xo = reinterpret_cast<float*>(acc);
  int32_t* acc_chunk = acc + (n_out > 0 ? xo_elems : 0);
  float* wo = reinterpret_cast<float*>(acc_chunk + int64_t(n) * chunk);
  if (n_out > 0) {
    gather_outlier_x_kernel<<<unsigned((xo_elems + 255) / 256), 256, 0, st>>>(x, n, w.in, s.outliers, n_out, xo);
    BQ_LAUNCHED();
  }
  const int32_t one = 1, zero = 0;
  const float onef = 1.0f;
  for (int64_t r0 = 0; r0 < w.out; r0 += chunk) {
    const int64_t m = std::min(chunk, w.out - r0);
    // Row-major acc[n, m] = xq[n, k] · W[r0.., k]ᵀ, exact in int32 (outlier columns of xq are zero).
    cublasStatus_t status = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(m), n, int(w.in), &one, w.cb + r0 * w.in,
                                         CUDA_R_8I, int(w.in), s.xq, CUDA_R_8I, int(w.in), &zero, acc_chunk,
                                         CUDA_R_32I, int(m), CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT);
    if (status == CUBLAS_STATUS_NOT_SUPPORTED && r0 == 0) return false;
    BQ_CUBLAS(status);
    const int64_t total = int64_t(n) * m;
    llm_int8_epilogue_kernel<<<unsigned((total + 255) / 256), 256, 0, st>>>(w, s, x, acc_chunk, n, r0, m, bias, y,
                                                                            accumulate, n_out >= 0);
    BQ_LAUNCHED();
    if (n_out > 0) {
      // y[:, r0..] += xo · woᵀ, plain fp32 (column-major: yᵀ = wo(n_out×m)ᵀ · xoᵀ).
      gather_outlier_w_kernel<<<unsigned((m * n_out + 255) / 256), 256, 0, st>>>(w, r0, m, s.outliers, n_out, wo);
      BQ_LAUNCHED();
      BQ_CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(m), n, n_out, &onef, wo, CUDA_R_32F, n_out, xo,
                             CUDA_R_32F, n_out, &onef, y + r0, CUDA_R_32F, int(w.out), CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT));
    }
  }
  return true;
}

void gemm_bf16(cublasHandle_t h, const uint16_t* x, const uint16_t* w, int n, int m, int k, float* y, int ldy,
               bool accumulate) {
  // Row-major y[n, m] = x[n, k] · w[m, k]ᵀ is column-major yᵀ[m, n] = w(k×m col-major)ᵀ · xᵀ(k×n col-major).
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  BQ_CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w, CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, y,
                         CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace bq::cuda
