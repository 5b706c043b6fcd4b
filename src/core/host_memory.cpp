#include "core/host_memory.h"

#include <atomic>

namespace bq::host_memory {

namespace {
std::atomic<size_t> g_current{0}, g_peak{0};
}  // namespace

void add(size_t bytes) {
  size_t now = g_current.fetch_add(bytes) + bytes;
  size_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}

void remove(size_t bytes) { g_current.fetch_sub(bytes); }

Stats stats() { return {g_current.load(), g_peak.load()}; }

void reset_peak() { g_peak.store(g_current.load()); }

}  // namespace bq::host_memory
