// One tracked allocator for every device allocation: current and peak bytes held by biomedq, and the device's own
// peak use (CUDA context, cuBLAS workspaces and other processes included) sampled from cudaMemGetInfo; per device
// and over all devices together.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <utility>
#include <vector>

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace bq::cuda {

using StreamHandle = CUstream_st*;

struct MemoryStats {
  size_t current = 0, peak = 0;  // bytes held through the allocator
  size_t device_used_peak = 0;   // max of (total - free) seen at allocations and sample_device_memory() calls
  size_t device_total = 0;
};

// Allocates `bytes` on the current device. Out of memory is a bq::Error naming the device and saying what was asked
// for (`what`), how much the device had free and how much biomedq already held there.
// With a stream (and a device with memory pools), the allocation is stream-ordered: taken from the device's pool
// for work queued on that stream, and freed into the pool after the work queued before the free, without a device
// synchronization or a call into the driver each time (the KV caches opened and closed once per example).
void* device_alloc(size_t bytes, const std::string& what, StreamHandle stream = nullptr);
void device_free(void* p);  // on the device it was allocated on, whichever is current; stream-ordered if allocated so
// Whether device_alloc with a stream is stream-ordered on the current device (else it synchronizes as cudaMalloc).
bool stream_ordered_allocation();
// Over every device biomedq has allocated on: peak is that of the sum held; the device figures are the sums of
// the devices' own.
MemoryStats memory_stats();
MemoryStats memory_stats(int device);  // one device's (zeros for a device never allocated on)
std::vector<int> memory_devices();     // the devices allocated on, ascending
void reset_peak_memory();              // peak := current; device peak := now (every device allocated on)
void sample_device_memory();           // folds each device's current use into its device_used_peak

// Owns one device array of T.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(size_t n, const std::string& what, StreamHandle stream = nullptr) : n_(n) {
    if (n) p_ = static_cast<T*>(device_alloc(n * sizeof(T), what, stream));
  }
  ~DeviceArray() { device_free(p_); }
  DeviceArray(DeviceArray&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      device_free(p_);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Makes `device` current for its scope (cudaSetDevice only where another one is), then restores the previous one.
// A failure is a bq::Error, except with std::nothrow (destructors: a failure there leaves nothing to recover).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  DeviceGuard(int device, std::nothrow_t) noexcept;
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0, device_ = 0;
};

// Number of CUDA devices, 0 when there is no driver or device (never throws).
int device_count();
int current_device();
std::string device_name();  // of the current device
std::string device_name(int device);
size_t device_free_bytes(int device);  // cudaMemGetInfo's free bytes of that device now

}  // namespace bq::cuda
