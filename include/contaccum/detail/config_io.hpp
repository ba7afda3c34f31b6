#pragma once
/// \file
/// \brief Forwarder kept for existing includes: `describe` and `same_config` are public,
///        in <contaccum/config_io.hpp>.

#include <contaccum/config_io.hpp>
