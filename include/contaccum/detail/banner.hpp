#pragma once
/// \file
/// \brief Compile-time error helpers: a banner that stands out in a long template backtrace.

namespace contaccum::detail {

/// \brief Always false, but only once T is known: for static_assert in a primary template.
template <class...>
inline constexpr bool dependent_false = false;

}  // namespace contaccum::detail

/// Prefix of every static_assert message the library emits.
#define CONTACCUM_BANNER "====> contaccum: "
