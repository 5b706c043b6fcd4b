// The host memory the CPU engine holds (weights, KV caches, activation scratch), counted as buffers come and go:
// the CPU counterpart of the CUDA allocator's account, reported as allocator_peak_bytes and predicted by `plan`.
// One account per process, like the device allocator's.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

namespace bq::host_memory {

struct Stats {
  size_t current = 0, peak = 0;
};

void add(size_t bytes);
void remove(size_t bytes);
Stats stats();
void reset_peak();  // peak := current

// Counts every allocation of a container in the account (activation scratch, KV caches, logits).
template <typename T>
struct TrackedAllocator {
  using value_type = T;
  TrackedAllocator() = default;
  template <typename U>
  TrackedAllocator(const TrackedAllocator<U>&) noexcept {}
  T* allocate(size_t n) {
    T* p = std::allocator<T>().allocate(n);
    add(n * sizeof(T));
    return p;
  }
  void deallocate(T* p, size_t n) noexcept {
    remove(n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }
  template <typename U>
  bool operator==(const TrackedAllocator<U>&) const noexcept {
    return true;
  }
};

// Holds bytes allocated elsewhere (mapped checkpoint files, model weights) in the account for its lifetime.
class Hold {
 public:
  explicit Hold(size_t bytes = 0) : bytes_(bytes) { add(bytes_); }
  ~Hold() { remove(bytes_); }
  Hold(const Hold&) = delete;
  Hold& operator=(const Hold&) = delete;
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_;
};

}  // namespace bq::host_memory

namespace bq {
template <typename T>
using tracked_vector = std::vector<T, host_memory::TrackedAllocator<T>>;
}  // namespace bq
