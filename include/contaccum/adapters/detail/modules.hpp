#pragma once
/// \file
/// \brief Private helpers of the adapters: the module-path matching that selects layers
///        by name (PEFT's target_modules).

#include <contaccum/adapters/concepts.hpp>
#include <contaccum/detail/error.hpp>

#include <torch/torch.h>

#include <concepts>
#include <regex>
#include <string>
#include <string_view>

namespace contaccum::detail {

// The torch::nn::Module of a model (holder or module): the public contaccum::module_of.
using contaccum::module_of;

/// \brief A target pattern compiled once; `what` names the setting in errors.
[[nodiscard]] inline std::regex compile_module_pattern(const std::string& pattern, std::string_view what) {
  require(!pattern.empty(), what, " is empty: give a regular expression over module names, e.g. \"query|value\"");
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    require(false, what, " \"", pattern, "\" is not a valid regular expression: ", e.what());
  }
  return {};
}

/// \brief Whether `pattern` matches the whole module path or one of its dotted suffixes:
///        "query|value" selects "encoder.layer.0.attention.self.query", and so does
///        ".*layer\\.0\\..*query" (a pattern over the full path). This is PEFT's
///        target_modules rule for a list of names (name == key or key ends with ".name")
///        and for a regular expression (fullmatch on the key) in one.
[[nodiscard]] inline bool module_path_matches(const std::regex& pattern, const std::string& path) {
  if (std::regex_match(path, pattern)) return true;
  for (auto dot = path.find('.'); dot != std::string::npos; dot = path.find('.', dot + 1)) {
    if (std::regex_match(path.begin() + static_cast<std::ptrdiff_t>(dot) + 1, path.end(), pattern)) return true;
  }
  return false;
}

/// \brief A module path with every layer index written N ("encoder.layer.N.attention.self.query"):
///        lists of layer names stay short for deep models.
[[nodiscard]] inline std::string with_layer_index_as_n(const std::string& path) {
  static const std::regex index(R"((^|\.)[0-9]+(\.|$))");
  return std::regex_replace(path, index, "$1N$2");
}

}  // namespace contaccum::detail
