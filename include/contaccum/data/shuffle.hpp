#pragma once
/// \file
/// \brief Seeded, platform-independent randomness for data order: std::mt19937_64 (whose
///        output the C++ standard fixes bit for bit), an unbiased index draw that does not
///        depend on any standard library's distribution code, and Fisher-Yates shuffling.
///
/// std::shuffle and std::uniform_int_distribution are implementation-defined, so the
/// same seed would give a different epoch order under libstdc++, libc++ and MSVC; these
/// functions give the same order everywhere.

#include <contaccum/detail/error.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace contaccum {

/// \brief A uniform draw from [0, n), n >= 1: rejection sampling on the smallest
///        power-of-two range covering n (unbiased; on average under two draws).
[[nodiscard]] inline std::uint64_t uniform_index(std::mt19937_64& rng, std::uint64_t n) {
  detail::require(n > 0, "uniform_index needs a non-empty range");
  if (n == 1) return 0;
  const std::uint64_t mask = n > (std::uint64_t{1} << 63) ? ~std::uint64_t{0} : std::bit_ceil(n) - 1;
  for (;;) {
    const std::uint64_t x = rng() & mask;
    if (x < n) return x;
  }
}

/// \brief SplitMix64's finaliser: a well-mixed 64-bit value from any 64-bit value.
[[nodiscard]] constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// \brief A seed for one stream of a seeded process, e.g. (seed, epoch, example): distinct
///        streams get unrelated generators, and each is reproducible on its own.
[[nodiscard]] constexpr std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0) {
  return splitmix64(splitmix64(splitmix64(seed) ^ a) ^ b);
}

/// \brief Fisher-Yates shuffle of a random-access range with `rng`.
template <class Range>
void seeded_shuffle(Range& items, std::mt19937_64& rng) {
  const auto n = static_cast<std::uint64_t>(std::size(items));
  for (std::uint64_t i = n; i > 1; --i) {
    const auto j = uniform_index(rng, i);
    using std::swap;
    swap(items[i - 1], items[j]);
  }
}

/// \brief Fisher-Yates shuffle with a fresh generator seeded by `seed`.
///
/// \code
/// std::vector<int> v{1, 2, 3, 4};
/// contaccum::seeded_shuffle(v, 42);  // the same order on every platform
/// \endcode
template <class Range>
void seeded_shuffle(Range& items, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  seeded_shuffle(items, rng);
}

/// \brief The permutation 0..n-1 shuffled with `seed`.
[[nodiscard]] inline std::vector<std::size_t> seeded_permutation(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  seeded_shuffle(order, seed);
  return order;
}

}  // namespace contaccum
