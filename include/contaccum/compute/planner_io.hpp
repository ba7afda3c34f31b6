#pragma once
/// \file
/// \brief Fitted planner laws as a JSON file, so a grid fitted once plans many budgets:
///
///     {"format": "contaccum.planner_fits", "version": 1,
///      "fits": [{"method": "lora", "setting": 8,
///                "loss": {"intercept": a, "slope": b},          // loss = a + b log10 C
///                "model_size": {"intercept": c, "slope": d},    // log10 N_opt = c + d log10 C
///                "frontier": [{"budget_flops": ..., "loss": ..., "model": ...,
///                              "non_embedding_params": ..., "setting": ..., "pairs": ...}, ...]},
///               ...]}
///
/// Numbers are written with enough digits to read back bit for bit. Reading checks the
/// format tag and version first, then every field: a file that is not ours, or misses or
/// mistypes a field, is an invalid_input naming the file and the field
/// ("fits.json: fits[1].loss.slope is missing").
///
/// \code
/// contaccum::save_planner_fits(fits, "out/planner/fits.json");
/// auto again = contaccum::load_planner_fits("out/planner/fits.json");  // again == fits
/// \endcode

#include <contaccum/compute/detail/planner_json.hpp>
#include <contaccum/compute/grid.hpp>
#include <contaccum/compute/planner.hpp>
#include <contaccum/detail/error.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// \brief The format tag of a saved fit.
inline constexpr std::string_view planner_fits_format = "contaccum.planner_fits";
inline constexpr int planner_fits_version = 1;

[[nodiscard]] inline nlohmann::json to_json(const PlannerFits& fits) {
  auto line = [](const LogLinear& l) { return nlohmann::json{{"intercept", l.intercept}, {"slope", l.slope}}; };
  auto setting = [](const std::optional<int64_t>& s) { return s ? nlohmann::json(*s) : nlohmann::json(); };
  nlohmann::json list = nlohmann::json::array();
  for (const auto& f : fits.methods) {
    nlohmann::json frontier = nlohmann::json::array();
    for (const auto& p : f.frontier)
      frontier.push_back({{"budget_flops", p.budget_flops},
                          {"loss", p.loss},
                          {"model", p.model},
                          {"non_embedding_params", p.non_embedding_params},
                          {"setting", setting(p.setting)},
                          {"pairs", p.pairs}});
    list.push_back({{"method", method_name(f.method)},
                    {"setting", setting(f.setting)},
                    {"loss", line(f.loss)},
                    {"model_size", line(f.model_size)},
                    {"frontier", std::move(frontier)}});
  }
  return {{"format", planner_fits_format}, {"version", planner_fits_version}, {"fits", std::move(list)}};
}

/// \brief Fits from parsed JSON; `where` (the file name) prefixes every error. `extra`:
///        methods besides the paper's four that the fits may name (method_of<A>()).
[[nodiscard]] inline PlannerFits planner_fits_from_json(const nlohmann::json& j, const std::string& where,
                                                        const std::vector<Method>& extra = {}) {
  using namespace detail::planner_json;
  require_format(j, planner_fits_format, planner_fits_version, where);
  auto line = [](const nlohmann::json& obj, std::string_view key, const std::string& at) {
    const auto& l = get(obj, key, at);
    const auto here = field_path(at, key);
    return LogLinear{get_number(l, "intercept", here), get_number(l, "slope", here)};
  };
  PlannerFits fits;
  const auto& list = get_array(j, "fits", where);
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto at = detail::cat(where, ": fits[", i, "]");
    require_object(list[i], at);
    MethodFit f;
    f.method = parse_method(get_string(list[i], "method", at), field_path(at, "method"), extra);
    detail::require(fits.find(f.method) == nullptr, at, ": method ", method_name(f.method), " is fitted twice");
    f.setting = get_optional_int(list[i], "setting", at);
    validate_setting(f.method, f.setting, field_path(at, "setting"));
    f.loss = line(list[i], "loss", at);
    f.model_size = line(list[i], "model_size", at);
    const auto& frontier = get_array(list[i], "frontier", at);
    for (std::size_t k = 0; k < frontier.size(); ++k) {
      const auto pat = detail::cat(at, ".frontier[", k, "]");
      require_object(frontier[k], pat);
      FrontierPoint p;
      p.budget_flops = get_number(frontier[k], "budget_flops", pat);
      p.loss = get_number(frontier[k], "loss", pat);
      p.model = get_string(frontier[k], "model", pat);
      p.non_embedding_params = get_int(frontier[k], "non_embedding_params", pat);
      p.setting = get_optional_int(frontier[k], "setting", pat);
      p.pairs = get_int(frontier[k], "pairs", pat);
      f.frontier.push_back(std::move(p));
    }
    fits.methods.push_back(std::move(f));
  }
  return fits;
}

/// \brief Writes `fits` as a contaccum.planner_fits JSON file (parent folders created).
inline void save_planner_fits(const PlannerFits& fits, const std::filesystem::path& file) {
  detail::planner_json::write_file(to_json(fits), file);
}

/// \brief Reads a file written by save_planner_fits; errors name the file and the field.
///        `extra`: methods besides the paper's four that the file may name.
[[nodiscard]] inline PlannerFits load_planner_fits(const std::filesystem::path& file,
                                                   const std::vector<Method>& extra = {}) {
  return planner_fits_from_json(detail::planner_json::read_file(file), file.string(), extra);
}

}  // namespace contaccum
