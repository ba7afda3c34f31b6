#pragma once
// The command line the examples share: `--name value` options, `--flag`s and positional
// arguments; numbers and comma-separated lists read with errors that name the option.

#include <contaccum/detail/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <vector>

namespace example {

/// `text` as a positive (finite) number of type T (an integer type rejects "2.5"); `what` names
/// the option in the error.
template <class T>
[[nodiscard]] T positive_number(const std::string& text, const std::string& what) {
  std::size_t end = 0;
  T v{};
  try {
    if constexpr (std::is_integral_v<T>) v = static_cast<T>(std::stoll(text, &end));
    else v = static_cast<T>(std::stod(text, &end));
  } catch (const std::exception&) {
    end = 0;
  }
  bool finite = true;
  if constexpr (std::is_floating_point_v<T>) finite = std::isfinite(v);  // "inf" and "nan" parse
  contaccum::detail::require(!text.empty() && end == text.size() && v > 0 && finite, what, " needs a positive ",
                             std::is_integral_v<T> ? "integer" : "number", ", got '", text, "'");
  return v;
}

/// "a,b,c" -> {"a", "b", "c"} (empty items dropped).
[[nodiscard]] inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

/// "32,64,128" -> {32, 64, 128}, every item a positive number.
template <class T>
[[nodiscard]] std::vector<T> list_of(const std::string& text, const std::string& what) {
  std::vector<T> out;
  for (const auto& item : split_list(text)) out.push_back(positive_number<T>(item, what));
  contaccum::detail::require(!out.empty(), what, " needs a comma-separated list, got '", text, "'");
  return out;
}

/// Whether `--help` or `-h` is among the arguments: the example then prints its usage and
/// exits 0, whatever else the line holds.
[[nodiscard]] inline bool wants_help(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") return true;
  return false;
}

/// The command line from argv[first]: options take the next argument as their value,
/// the names in `flags` take none, and anything not starting with "--" is positional.
class Args {
public:
  Args(int argc, char** argv, int first, std::vector<std::string> flags) : flags_(std::move(flags)) {
    for (int i = first; i < argc; ++i) {
      const std::string a = argv[i];
      if (a.rfind("--", 0) != 0) {
        positional.push_back(a);
      } else if (std::find(flags_.begin(), flags_.end(), a) != flags_.end()) {
        values_[a] = "1";
      } else {
        contaccum::detail::require(i + 1 < argc, "option ", a, " needs a value");
        values_[a] = argv[++i];
      }
    }
  }
  /// Whether the option was given at all (it still has to be read to count as used).
  [[nodiscard]] bool given(const std::string& name) const { return values_.contains(name); }
  [[nodiscard]] bool flag(const std::string& name) {
    // A flag the constructor was not told of would have taken the next argument as its value.
    if (std::find(flags_.begin(), flags_.end(), name) == flags_.end())
      throw std::logic_error("Args: " + name + " is read as a flag but was not declared as one");
    used_.insert(name);
    return values_.contains(name);
  }
  [[nodiscard]] std::string text(const std::string& name, const std::string& fallback) {
    used_.insert(name);
    const auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }
  [[nodiscard]] int64_t integer(const std::string& name, int64_t fallback) { return number<int64_t>(name, fallback); }
  [[nodiscard]] double real(const std::string& name, double fallback) { return number<double>(name, fallback); }
  /// A comma-separated list of positive numbers, or `fallback` when the option is absent.
  template <class T>
  [[nodiscard]] std::vector<T> list(const std::string& name, std::vector<T> fallback) {
    const auto s = text(name, "");
    return s.empty() ? fallback : list_of<T>(s, "option " + name);
  }
  /// Every option given must have been read: a typo is an error, not ignored.
  void check_all_used(const std::string& usage) const {
    for (const auto& [name, value] : values_)
      contaccum::detail::require(used_.contains(name), "unknown option '", name, "'\nusage: ", usage);
  }

  std::vector<std::string> positional;

private:
  template <class T>
  T number(const std::string& name, T fallback) {
    const auto s = text(name, "");
    return s.empty() ? fallback : positive_number<T>(s, "option " + name);
  }

  std::vector<std::string> flags_;
  std::map<std::string, std::string> values_;
  std::unordered_set<std::string> used_;
};

}  // namespace example
