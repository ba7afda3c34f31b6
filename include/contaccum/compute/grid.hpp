#pragma once
/// \file
/// \brief The records of a compute-optimal grid (Ziarko et al. 2024, arXiv 2406.04165):
///        one fine-tuning run per (method, method setting, model, budget), with the pairs
///        it trained on and its final held-out contrastive loss. The planner
///        (compute/planner.hpp) fits its scaling laws from a list of these; the grid
///        runner (compute/grid_runner.hpp) produces them, or they come from your own runs.
///
/// Records are saved as one JSON document {"format": "contaccum.grid_records",
/// "version": 1, "records": [...]}, so a grid can be run once and fitted many times. A
/// record names its method (compute/method.hpp) by name; reading a grid with a user's
/// method takes that Method (method_of<A>()) as a known extra.

#include <contaccum/compute/detail/planner_json.hpp>
#include <contaccum/compute/method.hpp>
#include <contaccum/detail/error.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// \brief One finished run of the grid.
///
/// \code
/// contaccum::GridRecord r{.method = contaccum::Method::lora, .setting = 8, .model = "pythia-70m",
///                         .non_embedding_params = 18915328, .budget_flops = 1e15,
///                         .pairs = 163840, .loss = 0.71};
/// \endcode
struct GridRecord {
  Method method = Method::full;
  std::optional<int64_t> setting;  ///< k (block_freeze), r (lora); empty for methods without one
  std::string model;               ///< the model's name, e.g. "pythia-70m"
  int64_t non_embedding_params = 0;  ///< N of the model (embeddings and LM head left out)
  double budget_flops = 0;           ///< C: the training budget the run was given
  int64_t pairs = 0;                 ///< pairs actually trained on (<= C / cost per pair)
  double loss = 0;                   ///< final held-out contrastive loss; NaN/Inf = diverged

  bool operator==(const GridRecord&) const = default;
};

/// \brief Whether `r` is the run of this cell: the same method, setting, model and budget
///        (what identifies a cell of the grid; N, pairs and loss are its results).
[[nodiscard]] inline bool is_cell(const GridRecord& r, Method method, const std::optional<int64_t>& setting,
                                  std::string_view model, double budget_flops) {
  return r.method == method && r.setting == setting && r.model == model && r.budget_flops == budget_flops;
}

/// \brief Throws invalid_input (naming `where` and the field) for a record the planner
///        cannot use: a budget or N that is not positive and finite, a bad setting.
inline void validate(const GridRecord& r, std::string_view where) {
  detail::require(std::isfinite(r.budget_flops) && r.budget_flops > 0, where, ": budget_flops must be positive and ",
                  "finite, got ", r.budget_flops);
  detail::require(r.non_embedding_params > 0, where, ": non_embedding_params must be positive, got ",
                  r.non_embedding_params);
  detail::require(r.pairs >= 0, where, ": pairs must be >= 0, got ", r.pairs);
  validate_setting(r.method, r.setting, where);
}

/// \brief The JSON object of one record (loss NaN/Inf is written as null).
[[nodiscard]] inline nlohmann::json to_json(const GridRecord& r) {
  return {{"method", method_name(r.method)},
          {"setting", r.setting ? nlohmann::json(*r.setting) : nlohmann::json()},
          {"model", r.model},
          {"non_embedding_params", r.non_embedding_params},
          {"budget_flops", r.budget_flops},
          {"pairs", r.pairs},
          {"loss", std::isfinite(r.loss) ? nlohmann::json(r.loss) : nlohmann::json()}};
}

/// \brief A record from its JSON object; `where` (e.g. "grid.json: records[3]") names it in
///        errors. `extra`: methods besides the paper's four that the record may name.
[[nodiscard]] inline GridRecord grid_record_from_json(const nlohmann::json& j, const std::string& where,
                                                      const std::vector<Method>& extra = {}) {
  using namespace detail::planner_json;
  require_object(j, where);
  GridRecord r;
  r.method = parse_method(get_string(j, "method", where), field_path(where, "method"), extra);
  r.setting = get_optional_int(j, "setting", where);
  r.model = get_string(j, "model", where);
  r.non_embedding_params = get_int(j, "non_embedding_params", where);
  r.budget_flops = get_number(j, "budget_flops", where);
  r.pairs = get_int(j, "pairs", where);
  r.loss = get_number_or_nan(j, "loss", where);
  validate(r, where);
  return r;
}

/// \brief The format tag of a saved grid.
inline constexpr std::string_view grid_records_format = "contaccum.grid_records";
inline constexpr int grid_records_version = 1;

/// \brief Writes records as {"format": "contaccum.grid_records", "version": 1, "records": [...]}.
inline void save_grid_records(const std::vector<GridRecord>& records, const std::filesystem::path& file) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& r : records) list.push_back(to_json(r));
  detail::planner_json::write_file(
      {{"format", grid_records_format}, {"version", grid_records_version}, {"records", std::move(list)}}, file);
}

/// \brief Reads records saved by save_grid_records. A file that is not valid JSON, not a
///        contaccum grid, of another version, or missing a field is an invalid_input
///        naming the file and the field; so is a method that is neither one of the paper's
///        four nor in `extra` (user methods: method_of<A>()).
///
/// \code
/// auto records = contaccum::load_grid_records("out/planner/grid.json", {contaccum::method_of<mine::LayerNormOnly>()});
/// \endcode
[[nodiscard]] inline std::vector<GridRecord> load_grid_records(const std::filesystem::path& file,
                                                               const std::vector<Method>& extra = {}) {
  using namespace detail::planner_json;
  const auto j = read_file(file);
  const auto where = file.string();
  require_format(j, grid_records_format, grid_records_version, where);
  const auto& list = get_array(j, "records", where);
  std::vector<GridRecord> out;
  for (std::size_t i = 0; i < list.size(); ++i)
    out.push_back(grid_record_from_json(list[i], detail::cat(where, ": records[", i, "]"), extra));
  return out;
}

}  // namespace contaccum
