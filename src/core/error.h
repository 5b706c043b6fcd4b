// One exception type for every user-facing failure: the message names the file and the problem.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace bq {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace bq
