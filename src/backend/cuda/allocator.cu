#include "backend/cuda/allocator.h"

#include <map>
#include <mutex>
#include <unordered_map>

#include "backend/cuda/check.h"
#include "core/error.h"

namespace bq::cuda {

namespace {

struct Allocation {
  size_t bytes = 0;
  int device = 0;
  cudaStream_t stream = nullptr;  // stream-ordered (cudaMallocAsync) on this stream
};

struct Tracker {
  std::mutex mu;
  std::unordered_map<void*, Allocation> allocations;
  std::map<int, MemoryStats> devices;  // every device allocated on
  size_t current = 0, peak = 0;        // all devices together
};

Tracker& tracker() {
  static Tracker t;
  return t;
}

std::string gib(size_t b) { return fmt::format("{:.2f} GiB", double(b) / double(1ull << 30)); }

// cudaMemGetInfo reports the current device: the caller has made `device` current.
void sample_current_locked(MemoryStats& s) {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return;
  s.device_total = total;
  s.device_used_peak = std::max(s.device_used_peak, total - free);
}

void sample_all_locked(Tracker& t) {
  for (auto& [device, s] : t.devices) {
    DeviceGuard on(device, std::nothrow);  // a sample is best effort, as cudaMemGetInfo's
    sample_current_locked(s);
  }
}

// The device's default memory pool, set up once to keep what is freed into it for the next stream-ordered
// allocation (the default threshold of 0 would hand it back to the driver at every synchronization); null where
// the device has no memory pools.
cudaMemPool_t pool_of(int device) {
  static std::map<int, cudaMemPool_t> pools;  // under the tracker's lock
  if (auto it = pools.find(device); it != pools.end()) return it->second;
  int supported = 0;
  cudaMemPool_t pool = nullptr;
  if (cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device) == cudaSuccess && supported &&
      cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
    uint64_t keep = UINT64_MAX;
    if (cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) != cudaSuccess) pool = nullptr;
  }
  cudaGetLastError();  // a device without pools: plain allocations, no sticky error
  return pools[device] = pool;
}

// Memory the pool keeps but nothing holds goes back to the driver, so that a plain allocation can have it.
void trim_pool(int device) {
  if (cudaMemPool_t pool = pool_of(device)) {
    cudaDeviceSynchronize();  // stream-ordered frees still in flight
    cudaMemPoolTrimTo(pool, 0);
  }
  cudaGetLastError();
}

}  // namespace

void fail_cuda(const char* expr, const char* file, int line, const char* what) {
  fail("CUDA error in {} ({}:{}): {}", expr, file, line, what);
}

void* device_alloc(size_t bytes, const std::string& what, StreamHandle stream) {
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  const int device = current_device();
  MemoryStats& s = t.devices[device];
  const cudaStream_t st = pool_of(device) ? stream : nullptr;
  void* p = nullptr;
  auto attempt = [&] { return st ? cudaMallocAsync(&p, bytes, st) : cudaMalloc(&p, bytes); };
  cudaError_t e = attempt();
  if (e == cudaErrorMemoryAllocation) {  // once more after giving the pool's unused memory back
    cudaGetLastError();
    trim_pool(device);
    e = attempt();
  }
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the sticky-free error state of the runtime
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    throw OutOfMemory(fmt::format(
        "out of GPU memory on device {}: {} needs {} but the device has {} free of {} (biomedq holds {} there)", device,
        what, gib(bytes), gib(free), gib(total), gib(s.current)));
  }
  check(e, st ? "cudaMallocAsync" : "cudaMalloc", __FILE__, __LINE__);
  t.allocations[p] = Allocation{bytes, device, st};
  s.current += bytes;
  s.peak = std::max(s.peak, s.current);
  t.current += bytes;
  t.peak = std::max(t.peak, t.current);
  sample_current_locked(s);
  return p;
}

void device_free(void* p) {
  if (!p) return;
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  auto it = t.allocations.find(p);
  if (it == t.allocations.end()) {
    cudaFree(p);
    return;
  }
  t.devices[it->second.device].current -= it->second.bytes;
  t.current -= it->second.bytes;
  DeviceGuard on(it->second.device, std::nothrow);
  const cudaStream_t st = it->second.stream;
  t.allocations.erase(it);
  // Not checked: runs in destructors, and a failed free leaves nothing to recover.
  if (st) cudaFreeAsync(p, st);
  else cudaFree(p);
}

bool stream_ordered_allocation() {
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  return pool_of(current_device()) != nullptr;
}

MemoryStats memory_stats() {
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  MemoryStats total;
  total.current = t.current;
  total.peak = t.peak;
  for (auto& [device, s] : t.devices) {
    total.device_used_peak += s.device_used_peak;
    total.device_total += s.device_total;
  }
  return total;
}

MemoryStats memory_stats(int device) {
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  auto it = t.devices.find(device);
  return it == t.devices.end() ? MemoryStats{} : it->second;
}

std::vector<int> memory_devices() {
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  std::vector<int> out;
  for (auto& [device, s] : t.devices) out.push_back(device);
  return out;
}

void reset_peak_memory() {
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  t.peak = t.current;
  for (auto& [device, s] : t.devices) {
    s.peak = s.current;
    s.device_used_peak = 0;
  }
  sample_all_locked(t);
}

void sample_device_memory() {
  Tracker& t = tracker();
  std::lock_guard lock(t.mu);
  sample_all_locked(t);
}

DeviceGuard::DeviceGuard(int device) : previous_(current_device()), device_(device) {
  if (device_ != previous_) BQ_CUDA(cudaSetDevice(device_));
}

DeviceGuard::DeviceGuard(int device, std::nothrow_t) noexcept : device_(device) {
  if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = device_;  // then nothing to switch or restore
  if (device_ != previous_) cudaSetDevice(device_);
}

DeviceGuard::~DeviceGuard() {
  if (device_ != previous_) cudaSetDevice(previous_);  // not checked: a destructor, and the device was usable
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

int current_device() {
  int dev = 0;
  BQ_CUDA(cudaGetDevice(&dev));
  return dev;
}

std::string device_name() { return device_name(current_device()); }

std::string device_name(int device) {
  cudaDeviceProp p{};
  BQ_CUDA(cudaGetDeviceProperties(&p, device));
  return p.name;
}

size_t device_free_bytes(int device) {
  DeviceGuard on(device);
  size_t free = 0, total = 0;
  BQ_CUDA(cudaMemGetInfo(&free, &total));
  return free;
}

}  // namespace bq::cuda
