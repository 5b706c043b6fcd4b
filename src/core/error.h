// One exception type for every user-facing failure: the message names the file and the problem.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace bq {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Memory ran out (a device's, or the KV cache limit a user set): the decode loop can make room by preempting a
// sequence where other failures end the run.
struct OutOfMemory : Error {
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace bq
