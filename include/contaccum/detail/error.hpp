#pragma once
/// \file
/// \brief Private message helpers: `detail::cat` and `detail::require`. The public
///        exception types live in <contaccum/error.hpp>.

#include <contaccum/error.hpp>

#include <sstream>
#include <string>
#include <utility>

namespace contaccum::detail {

template <class... Parts>
[[nodiscard]] std::string cat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}

/// \brief Throws invalid_input with a "contaccum: " prefix when `ok` is false.
template <class... Parts>
void require(bool ok, Parts&&... parts) {
  if (!ok) throw invalid_input(cat("contaccum: ", std::forward<Parts>(parts)...));
}

}  // namespace contaccum::detail
