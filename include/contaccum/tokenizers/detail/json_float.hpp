#pragma once
/// \file
/// \brief A number of a tokenizer.json as the tokenizers library reads it.
///
/// The tokenizers library parses its JSON with serde_json built without the
/// `float_roundtrip` feature. That parser turns a decimal's digits into an integer, converts
/// it to a double and multiplies or divides once by a power of ten. Below 2^53 this is
/// correctly rounded. A 17-digit significand is rounded twice and can land one unit in the
/// last place away from the value the file was written from. About one Unigram score in six
/// of a tokenizer.json that the library trained is read so. Ties between Viterbi paths (the
/// same pieces in another order) then break the other way, so we read the scores as it does.

#include <array>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace contaccum::tokenizers::detail {

// 10^k as the nearest double, k = 0..308 (serde_json's table of literals).
inline const std::array<double, 309>& powers_of_ten() {
  static const auto table = [] {
    std::array<double, 309> t{};
    for (int k = 0; k <= 308; ++k) t[static_cast<std::size_t>(k)] = std::strtod(("1e" + std::to_string(k)).c_str(), nullptr);
    return t;
  }();
  return table;
}

/// \brief The double serde_json reads from the shortest decimal that prints `x` (the form
///        serde_json and Python's json module write): `x` itself, or a neighbour of it.
[[nodiscard]] inline double as_serde_json_reads(double x) {
  std::array<char, 64> buf{};
  const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), x, std::chars_format::scientific);
  // "-d.ddde+XX": the digits, then the decimal exponent of the first one
  const char* p = buf.data();
  const bool negative = *p == '-';
  if (negative) ++p;
  uint64_t significand = 0;
  int digits = 0;
  for (; p < res.ptr && *p != 'e'; ++p) {
    if (*p == '.') continue;
    significand = significand * 10 + static_cast<uint64_t>(*p - '0');
    ++digits;
  }
  int exponent = p < res.ptr ? std::atoi(p + 1) : 0;
  exponent -= digits - 1;  // of the last digit
  double f = static_cast<double>(significand);
  const auto& pow10 = powers_of_ten();
  if (exponent > 308) return x;  // cannot happen for a finite double's shortest digits
  if (exponent >= 0) {
    f *= pow10[static_cast<std::size_t>(exponent)];
  } else {
    while (exponent < -308 && f != 0) {  // subnormal range: serde_json divides by 1e308 first
      f /= 1e308;
      exponent += 308;
    }
    if (exponent >= -308) f /= pow10[static_cast<std::size_t>(-exponent)];
  }
  return negative ? -f : f;
}

}  // namespace contaccum::tokenizers::detail
