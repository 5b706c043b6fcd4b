#include "backend/cuda/allocator.h"

#include <mutex>
#include <unordered_map>

#include "backend/cuda/check.h"
#include "core/error.h"

namespace bq::cuda {

namespace {

struct Tracker {
  std::mutex mu;
  std::unordered_map<void*, size_t> sizes;
  MemoryStats stats;
};

Tracker& tracker() {
  static Tracker t;
  return t;
}

std::string gib(size_t b) { return fmt::format("{:.2f} GiB", double(b) / double(1ull << 30)); }

void sample_locked(Tracker& t) {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return;
  t.stats.device_total = total;
  t.stats.device_used_peak = std::max(t.stats.device_used_peak, total - free);
}

}  // namespace

void fail_cuda(const char* expr, const char* file, int line, const char* what) {
  fail("CUDA error in {} ({}:{}): {}", expr, file, line, what);
}

void* device_alloc(size_t bytes, const std::string& what) {
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the sticky-free error state of the runtime
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    fail("out of GPU memory: {} needs {} but the device has {} free of {} (biomedq holds {})", what, gib(bytes),
         gib(free), gib(total), gib(t.stats.current));
  }
  check(e, "cudaMalloc", __FILE__, __LINE__);
  t.sizes[p] = bytes;
  t.stats.current += bytes;
  t.stats.peak = std::max(t.stats.peak, t.stats.current);
  sample_locked(t);
  return p;
}

void device_free(void* p) {
  if (!p) return;
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  auto it = t.sizes.find(p);
  if (it != t.sizes.end()) {
    t.stats.current -= it->second;
    t.sizes.erase(it);
  }
  cudaFree(p);  // not checked: runs in destructors, and a failed free leaves nothing to recover
}

MemoryStats memory_stats() {
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  return t.stats;
}

void reset_peak_memory() {
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  t.stats.peak = t.stats.current;
  t.stats.device_used_peak = 0;
  sample_locked(t);
}

void sample_device_memory() {
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  sample_locked(t);
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string device_name() {
  cudaDeviceProp p{};
  int dev = 0;
  BQ_CUDA(cudaGetDevice(&dev));
  BQ_CUDA(cudaGetDeviceProperties(&p, dev));
  return p.name;
}

}  // namespace bq::cuda
