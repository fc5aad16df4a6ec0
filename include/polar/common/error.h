// polar::Error: the one exception type for bad input and failed invariants. Messages name the
// file/line/key and what was expected; the CLI prints them and exits non-zero.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace polar {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace polar

// POLAR_CHECK(cond, parts...): throw polar::Error(concat(parts...)) when cond is false.
#define POLAR_CHECK(cond, ...)                                               \
  do {                                                                       \
    if (!(cond)) throw ::polar::Error(::polar::detail::concat(__VA_ARGS__)); \
  } while (0)
