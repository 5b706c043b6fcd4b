#include "backend/kv_pages.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/files.h"

namespace bq {

void kv_limit_reached(size_t limit, size_t held, size_t page) {
  throw OutOfMemory(fmt::format("KV cache limit of {} reached: the open sequences hold {} and one more page needs {} "
                                "(--kv-cache-limit)",
                                size_str(limit), size_str(held), size_str(page)));
}

}  // namespace bq
