// Functions that plain C++ and CUDA kernels share (a layout both the launcher and the kernel compute) are marked
// BQ_HOST_DEVICE: __host__ __device__ under nvcc, nothing for the host compiler.
#pragma once

#ifdef __CUDACC__
#define BQ_HOST_DEVICE __host__ __device__
#else
#define BQ_HOST_DEVICE
#endif
