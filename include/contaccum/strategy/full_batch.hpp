#pragma once
/// \file
/// \brief Kept for existing includes: the strategies are schedule x pool aliases now,
///        all declared in strategy/strategies.hpp.

#include <contaccum/strategy/strategies.hpp>
