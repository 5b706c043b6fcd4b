#include "backend/kv_pages.h"

#include <fmt/format.h>

#include "core/error.h"

namespace bq {

void kv_limit_reached(size_t limit, size_t held, size_t page) {
  auto size = [](size_t bytes) {
    if (bytes >= (size_t(1) << 30)) return fmt::format("{:.2f} GiB", double(bytes) / double(1 << 30));
    if (bytes >= (size_t(1) << 20)) return fmt::format("{:.1f} MiB", double(bytes) / double(1 << 20));
    return fmt::format("{:.1f} KiB", double(bytes) / 1024.0);
  };
  throw OutOfMemory(fmt::format("KV cache limit of {} reached: the open sequences hold {} and one more page needs {} "
                                "(--kv-cache-limit)",
                                size(limit), size(held), size(page)));
}

}  // namespace bq
