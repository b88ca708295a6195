// Force-included into every mlx-c translation unit (see build.rs).
#pragma once

// mlx-c declares float16_t / bfloat16_t (and the array accessors using them)
// only on aarch64, but mlx-rs calls those accessors everywhere. Elsewhere, map
// the names to MLX's own 2-byte software half types.
#if !defined(__aarch64__)
#include "mlx/types/half_types.h"
using float16_t = mlx::core::float16_t;
using bfloat16_t = mlx::core::bfloat16_t;
#define HAS_FLOAT16
#define HAS_BFLOAT16
#endif

// mlx-c's private/io.h uses std::format with plain `{}` placeholders only.
// GCC 12's libstdc++ has no <format>: supply that much of it. Test the
// library's feature macro, not the header: libc++ ships <format> years before
// it declares std::format (Apple's older Command Line Tools build it with
// _LIBCPP_HAS_NO_INCOMPLETE_FORMAT, and the header is then empty), and
// __cpp_lib_format is what says std::format is really there. Where a
// library has std::format without announcing it (libc++ 17/18), the
// fallback below still wins overload resolution for a `const char*` format
// string with forwarded arguments, so the two never clash.
#if __has_include(<version>)
#include <version>
#endif
#if defined(__cpp_lib_format) && __cpp_lib_format >= 201907L
#include <format>
#else
#include <sstream>
#include <string>
namespace std {
namespace finetune_compat {
inline void format_into(std::ostringstream& out, const char* fmt) {
  out << fmt;
}
template <class T, class... Rest>
void format_into(
    std::ostringstream& out,
    const char* fmt,
    const T& value,
    const Rest&... rest) {
  for (; *fmt; ++fmt) {
    if (fmt[0] == '{' && fmt[1] == '}') {
      out << value;
      format_into(out, fmt + 2, rest...);
      return;
    }
    out << *fmt;
  }
}
} // namespace finetune_compat
template <class... Args>
std::string format(const char* fmt, Args&&... args) {
  std::ostringstream out;
  finetune_compat::format_into(out, fmt, args...);
  return out.str();
}
} // namespace std
#endif
