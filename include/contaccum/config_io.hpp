#pragma once
/// \file
/// \brief Printing and comparing plain config structs with Boost.PFR: no per-struct
///        boilerplate. `describe(cfg)` gives "{v0, v1, ...}" in declaration order.

#include <boost/pfr.hpp>
#include <sstream>
#include <string>
#include <type_traits>

namespace contaccum {

/// \brief Any aggregate config struct printed field by field, e.g. "{8, 0.0001, 2}".
template <class Config>
  requires std::is_aggregate_v<Config>
[[nodiscard]] std::string describe(const Config& cfg) {
  std::ostringstream os;
  os << boost::pfr::io_fields(cfg);
  return os.str();
}

/// \brief Field-wise equality of two config structs.
template <class Config>
  requires std::is_aggregate_v<Config>
[[nodiscard]] bool same_config(const Config& a, const Config& b) {
  return boost::pfr::eq_fields(a, b);
}

}  // namespace contaccum
