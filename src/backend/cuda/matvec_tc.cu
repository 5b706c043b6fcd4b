// Decode products on the tensor cores: y[n, out] = x[n, in] · Wᵀ for up to 32 tokens, nf4 / fp4 / int8 weights,
// activations and dequantized weights in the 16-bit compute dtype, fp32 accumulation (what bitsandbytes does with
// a 16-bit compute dtype).
//
// Why tensor cores for a matrix-vector product: the CUDA-core kernel spends one shared-memory codebook lookup and
// one fp32 multiply-add per weight element and is bound by its load/store unit at an eighth of DRAM bandwidth
// (docs/benchmarks/NOTES.md). Here a 4-bit byte becomes a pair of 16-bit values with one lookup (256 entries, one
// copy per lane so that lookups never conflict) and one packed multiply by its block scale, and the products and
// sums run as mma.sync. Up to 8 tokens cost the same as one (an m16n8k16 tile has 8 columns); 32 use four tiles.
//
// Work split: a block owns 16 output rows (one m16 tile) at a time. A row's k range is cut into rounds of 128
// elements; lane (g, t) of a warp takes, for rows g and g + 8, the 32 consecutive elements t·32.. of a round, and
// the 8 warps of a block take rounds in turn, so each weight byte is read once. An mma sums over 16 k indices that
// come from the four lanes' spans: any assignment of real columns to k indices gives the same sum as long as A
// (weights) and B (activations) agree, and both are read from lane t's span. The 8 warps' partial tiles are added
// in a fixed order (deterministic results). Blocks are persistent over row tiles (the lookup table is built once),
// and one launch covers up to three weights with the same input (q, k, v or gate, up).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "backend/cuda/check.h"
#include "backend/cuda/kernel_util.cuh"
#include "backend/cuda/ops.h"
#include "core/error.h"

namespace bq::cuda {

namespace {

constexpr int kWarps = 8;
constexpr int kTileRows = 16;
constexpr int kRoundElems = 128;   // k elements of one round: 4 lanes × 32
constexpr int kLutEntries = 256;   // byte -> two 16-bit values
constexpr int kMaxGroup = 3;

struct Group {
  DeviceWeight w[kMaxGroup];
  float* y[kMaxGroup];
  const float* bias[kMaxGroup];
  int tiles_before[kMaxGroup + 1];  // prefix sums of row tiles
  int count;
};

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

template <bool BF>
__device__ __forceinline__ uint32_t mul2(uint32_t a, uint32_t b) {
  if constexpr (BF) {
    __nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  } else {
    __half2 r = __hmul2(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
  }
}

template <bool BF>
__device__ __forceinline__ float round_to(float v) {
  if constexpr (BF) return __bfloat162float(__float2bfloat16_rn(v));
  else return __half2float(__float2half_rn(v));
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

// Bytes per lane per round and row: 32 elements.
template <WeightKind K>
__host__ __device__ constexpr int lane_bytes() {
  return K == WeightKind::Q4 ? 16 : 32;
}

// Pair p (elements 2p, 2p + 1 of the lane's 32) as two 16-bit values, weights of one row.
template <WeightKind K, bool BF>
__device__ __forceinline__ uint32_t weight_pair(const uint32_t* words, int p, uint32_t scale2, const uint32_t* lut,
                                                int lane) {
  if constexpr (K == WeightKind::Q4) {
    const uint32_t byte = (words[p / 4] >> (8 * (p % 4))) & 0xffu;  // high nibble: element 2p
    return mul2<BF>(lut[byte * 32 + uint32_t(lane)], scale2);
  } else {
    const int k = 2 * (p % 2);
    if constexpr (BF) {
      return pack2<true>(int8_to_float(words[p / 2], k), int8_to_float(words[p / 2], k + 1));
    } else {
      // 0x64 above a biased byte u is the fp16 value 1024 + u: minus 1152 gives the signed byte, exactly.
      const uint32_t u = words[p / 2] ^ 0x80808080u;
      uint32_t h = __byte_perm(u, 0x64646464u, unsigned(k) | (4u << 4) | (unsigned(k + 1) << 8) | (5u << 12));
      __half2 r = __hsub2(*reinterpret_cast<__half2*>(&h), __half2half2(__ushort_as_half(0x6480)));
      return *reinterpret_cast<uint32_t*>(&r);
    }
  }
}

template <WeightKind K, bool BF, int NTILES>
__global__ void __launch_bounds__(kWarps * 32) matvec_tc_kernel(Group G, const uint32_t* __restrict__ xh, int n,
                                                                bool accumulate) {
  constexpr int LB = lane_bytes<K>(), V = LB / 16, U = 64 / LB;  // U rounds of loads in flight per warp
  __shared__ uint32_t lut[K == WeightKind::Q4 ? kLutEntries * 32 : 1];
  __shared__ float red[kWarps / 2][32][NTILES * 4];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  if constexpr (K == WeightKind::Q4) {
    const float* code = G.w[0].code;
    for (int i = threadIdx.x; i < kLutEntries * 32; i += blockDim.x) {
      const int e = i / 32;
      lut[i] = pack2<BF>(__ldg(code + (e >> 4)), __ldg(code + (e & 15)));
    }
    __syncthreads();
  }
  const int64_t in = G.w[0].in;
  const int rounds = int(in / kRoundElems);
  const int64_t x_words = in / 2;  // 16-bit pairs per token
  const int total = G.tiles_before[G.count];
  for (int tile = blockIdx.x; tile < total; tile += gridDim.x) {
    int wi = 0;
    while (tile >= G.tiles_before[wi + 1]) ++wi;
    const DeviceWeight& w = G.w[wi];
    const int64_t row0 = int64_t(tile - G.tiles_before[wi]) * kTileRows;
    // Rows past the end load the last row and are not stored.
    const int64_t ra = min(row0 + g, w.out - 1), rb = min(row0 + g + 8, w.out - 1);
    const uint8_t* base = K == WeightKind::Q4 ? w.packed : reinterpret_cast<const uint8_t*>(w.cb);
    const int64_t row_bytes = in * LB / 32;
    const uint8_t* pa = base + ra * row_bytes + t * LB;
    const uint8_t* pb = base + rb * row_bytes + t * LB;
    float c[NTILES][4];
#pragma unroll
    for (int j = 0; j < NTILES; ++j) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0;

    for (int r0 = warp; r0 < rounds; r0 += kWarps * U) {
      uint4 wa[U][V], wb[U][V];
      float sa[U], sb[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int r = r0 + u * kWarps;
        if (r < rounds)
#pragma unroll
          for (int v = 0; v < V; ++v) {
            wa[u][v] = load_stream(pa + int64_t(r) * 4 * LB + v * 16);
            wb[u][v] = load_stream(pb + int64_t(r) * 4 * LB + v * 16);
          }
      }
      if constexpr (K == WeightKind::Q4) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t col = int64_t(r0 + u * kWarps) * kRoundElems + t * 32;
          const bool ok = r0 + u * kWarps < rounds;
          sa[u] = ok ? q4_absmax(w, (ra * in + col) >> w.block_shift, w.dyn_map) : 0.0f;
          sb[u] = ok ? q4_absmax(w, (rb * in + col) >> w.block_shift, w.dyn_map) : 0.0f;
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int r = r0 + u * kWarps;
        if (r >= rounds) break;
        uint32_t xw[NTILES][16];
#pragma unroll
        for (int j = 0; j < NTILES; ++j) {
          const int token = j * 8 + g;
          const uint4* xp = reinterpret_cast<const uint4*>(xh + int64_t(token) * x_words + (int64_t(r) * kRoundElems + t * 32) / 2);
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            uint4 v = token < n ? __ldg(xp + q) : make_uint4(0, 0, 0, 0);
            xw[j][4 * q] = v.x, xw[j][4 * q + 1] = v.y, xw[j][4 * q + 2] = v.z, xw[j][4 * q + 3] = v.w;
          }
        }
        const uint32_t* wda = reinterpret_cast<const uint32_t*>(wa[u]);
        const uint32_t* wdb = reinterpret_cast<const uint32_t*>(wb[u]);
        uint32_t s2a = 0, s2b = 0;
        if constexpr (K == WeightKind::Q4) s2a = pack2<BF>(sa[u], sa[u]), s2b = pack2<BF>(sb[u], sb[u]);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const uint32_t a0 = weight_pair<K, BF>(wda, 2 * i, s2a, lut, lane);
          const uint32_t a1 = weight_pair<K, BF>(wdb, 2 * i, s2b, lut, lane);
          const uint32_t a2 = weight_pair<K, BF>(wda, 2 * i + 1, s2a, lut, lane);
          const uint32_t a3 = weight_pair<K, BF>(wdb, 2 * i + 1, s2b, lut, lane);
#pragma unroll
          for (int j = 0; j < NTILES; ++j) mma<BF>(c[j], a0, a1, a2, a3, xw[j][2 * i], xw[j][2 * i + 1]);
        }
      }
    }
    // Warps 4..7 into 0..3, then 2..3 into 0..1, then 1 into 0.
    for (int half = kWarps / 2; half >= 1; half /= 2) {
      if (warp >= half && warp < 2 * half)
#pragma unroll
        for (int j = 0; j < NTILES; ++j)
#pragma unroll
          for (int k = 0; k < 4; ++k) red[warp - half][lane][j * 4 + k] = c[j][k];
      __syncthreads();
      if (warp < half)
#pragma unroll
        for (int j = 0; j < NTILES; ++j)
#pragma unroll
          for (int k = 0; k < 4; ++k) c[j][k] += red[warp][lane][j * 4 + k];
      __syncthreads();
    }
    if (warp == 0) {
      float* y = G.y[wi];
      const float* bias = G.bias[wi];
#pragma unroll
      for (int j = 0; j < NTILES; ++j)
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const int64_t row = row0 + g + (k >= 2 ? 8 : 0);
          const int token = j * 8 + 2 * t + (k & 1);
          if (row >= w.out || token >= n) continue;
          float v = c[j][k];
          if constexpr (K == WeightKind::Int8) v *= w.scb[row] / 127.0f;
          v = round_to<BF>(v);  // bitsandbytes' product leaves in the compute dtype
          if (bias) v += bias[row];
          const int64_t idx = int64_t(token) * w.out + row;
          y[idx] = accumulate ? y[idx] + v : v;
        }
    }
  }
}

template <bool BF>
__global__ void to_compute_kernel(const float* __restrict__ x, int64_t n, uint16_t* __restrict__ out) {
  int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 2;
  if (i + 1 < n) {
    const float2 v = *reinterpret_cast<const float2*>(x + i);
    *reinterpret_cast<uint32_t*>(out + i) = pack2<BF>(v.x, v.y);
  }
}

int sm_count() {
  static int n = [] {
    int dev = 0, v = 0;
    BQ_CUDA(cudaGetDevice(&dev));
    BQ_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    return v;
  }();
  return n;
}

template <WeightKind K, bool BF, int NTILES>
void launch(const Group& G, const uint32_t* xh, int n, bool accumulate, cudaStream_t st) {
  static int per_sm = [] {
    int b = 0;
    BQ_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, matvec_tc_kernel<K, BF, NTILES>, kWarps * 32, 0));
    return std::max(b, 1);
  }();
  const int total = G.tiles_before[G.count];
  const int grid = std::min(total, sm_count() * per_sm);
  matvec_tc_kernel<K, BF, NTILES><<<unsigned(grid), kWarps * 32, 0, st>>>(G, xh, n, accumulate);
  BQ_LAUNCHED();
}

template <WeightKind K, bool BF>
void launch_tiles(const Group& G, const uint32_t* xh, int n, bool accumulate, cudaStream_t st) {
  if (n <= 8) return launch<K, BF, 1>(G, xh, n, accumulate, st);
  if (n <= 16) return launch<K, BF, 2>(G, xh, n, accumulate, st);
  return launch<K, BF, 4>(G, xh, n, accumulate, st);
}

}  // namespace

bool matvec_tc_supported(const DeviceWeight& w, int n) {
  if (n < 1 || n > kMatvecMaxRows || w.compute == Compute::F32 || w.in % kRoundElems != 0) return false;
  switch (w.kind) {
    case WeightKind::Int8: return aligned16(w.cb) && aligned16(w.scb);
    case WeightKind::Q4:
      return aligned16(w.packed) && w.blocksize % 32 == 0 && (w.blocksize & (w.blocksize - 1)) == 0;
    default: return false;  // bf16: the CUDA-core kernel and cuBLAS; LLM.int8: its own decomposition
  }
}

void matvec_tc(const MatvecTarget* targets, int count, const float* x, int n, bool accumulate, uint16_t* xh,
               cudaStream_t st) {
  if (count < 1 || count > kMaxGroup) fail("matvec_tc: {} weights in one launch (1..{})", count, kMaxGroup);
  if (!xh || !aligned16(xh)) fail("matvec_tc: needs an aligned 16-bit activation scratch");
  const DeviceWeight& w0 = *targets[0].w;
  Group G{};
  G.count = count;
  for (int i = 0; i < count; ++i) {
    const DeviceWeight& w = *targets[i].w;
    if (!matvec_tc_supported(w, n) || w.kind != w0.kind || w.in != w0.in || w.compute != w0.compute ||
        (w.kind == WeightKind::Q4 && (w.code != w0.code || w.dyn_map != w0.dyn_map)))
      fail("matvec_tc: weight {} of the group cannot share the launch", i);
    G.w[i] = with_block_shift(w);
    G.y[i] = targets[i].y;
    G.bias[i] = targets[i].bias;
    G.tiles_before[i + 1] = G.tiles_before[i] + int((w.out + kTileRows - 1) / kTileRows);
  }
  const int64_t elems = int64_t(n) * w0.in;
  const bool bf = w0.compute == Compute::BF16;
  const unsigned blocks = unsigned((elems / 2 + 255) / 256);
  if (bf) to_compute_kernel<true><<<blocks, 256, 0, st>>>(x, elems, xh);
  else to_compute_kernel<false><<<blocks, 256, 0, st>>>(x, elems, xh);
  BQ_LAUNCHED();
  const uint32_t* xw = reinterpret_cast<const uint32_t*>(xh);
  if (w0.kind == WeightKind::Q4)
    return bf ? launch_tiles<WeightKind::Q4, true>(G, xw, n, accumulate, st)
              : launch_tiles<WeightKind::Q4, false>(G, xw, n, accumulate, st);
  return bf ? launch_tiles<WeightKind::Int8, true>(G, xw, n, accumulate, st)
            : launch_tiles<WeightKind::Int8, false>(G, xw, n, accumulate, st);
}

}  // namespace bq::cuda
