#pragma once
/// \file
/// \brief Private: reading and writing the planner's JSON files (grid records, fits) with
///        errors that name the file and the field ("fits.json: fits[1].loss.slope is missing").

#include <contaccum/detail/error.hpp>
#include <contaccum/detail/json_file.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace contaccum::detail::planner_json {

// "fits.json" + "fits" -> "fits.json: fits"; "fits.json: fits[1]" + "loss" -> "fits.json: fits[1].loss".
[[nodiscard]] inline std::string field_path(const std::string& where, std::string_view key) {
  return where.find(": ") == std::string::npos ? detail::cat(where, ": ", key) : detail::cat(where, ".", key);
}

inline void require_object(const nlohmann::json& j, const std::string& where) {
  require(j.is_object(), where, " must be a JSON object, got ", j.type_name());
}

[[nodiscard]] inline const nlohmann::json& get(const nlohmann::json& j, std::string_view key, const std::string& where) {
  require_object(j, where);
  const auto it = j.find(key);
  require(it != j.end(), field_path(where, key), " is missing");
  return *it;
}

[[nodiscard]] inline std::string get_string(const nlohmann::json& j, std::string_view key, const std::string& where) {
  const auto& v = get(j, key, where);
  require(v.is_string(), field_path(where, key), " must be a string, got ", v.dump());
  return v.get<std::string>();
}

[[nodiscard]] inline int64_t get_int(const nlohmann::json& j, std::string_view key, const std::string& where) {
  const auto& v = get(j, key, where);
  require(v.is_number_integer(), field_path(where, key), " must be an integer, got ", v.dump());
  return v.get<int64_t>();
}

// An integer or null (absent is an error: every field is written, null included).
[[nodiscard]] inline std::optional<int64_t> get_optional_int(const nlohmann::json& j, std::string_view key,
                                                             const std::string& where) {
  const auto& v = get(j, key, where);
  if (v.is_null()) return std::nullopt;
  require(v.is_number_integer(), field_path(where, key), " must be an integer or null, got ", v.dump());
  return v.get<int64_t>();
}

[[nodiscard]] inline double get_number(const nlohmann::json& j, std::string_view key, const std::string& where) {
  const auto& v = get(j, key, where);
  require(v.is_number(), field_path(where, key), " must be a number, got ", v.dump());
  return v.get<double>();
}

// A number, or null for a value that was NaN/Inf when written (JSON has neither).
[[nodiscard]] inline double get_number_or_nan(const nlohmann::json& j, std::string_view key, const std::string& where) {
  const auto& v = get(j, key, where);
  if (v.is_null()) return std::numeric_limits<double>::quiet_NaN();
  require(v.is_number(), field_path(where, key), " must be a number or null, got ", v.dump());
  return v.get<double>();
}

[[nodiscard]] inline const nlohmann::json& get_array(const nlohmann::json& j, std::string_view key,
                                                     const std::string& where) {
  const auto& v = get(j, key, where);
  require(v.is_array(), field_path(where, key), " must be an array, got ", v.type_name());
  return v;
}

// The "format" / "version" header every planner file starts with.
inline void require_format(const nlohmann::json& j, std::string_view format, int version, const std::string& where) {
  require(j.is_object(), where, ": not a ", format, " file (the top level is a JSON ", j.type_name(),
          ", expected an object with \"format\": \"", format, "\")");
  require(j.contains("format"), where, ": not a ", format, " file (field \"format\" is missing)");
  require(j["format"] == format, where, ": not a ", format, " file (\"format\" is ", j["format"].dump(), ")");
  const auto v = get_int(j, "version", where);
  require(v == version, where, ": ", format, " version ", v, " is not supported (this contaccum reads version ",
          version, ")");
}

[[nodiscard]] inline nlohmann::json read_file(const std::filesystem::path& file) {
  return read_json_file(file, "planner file");
}

inline void write_file(const nlohmann::json& j, const std::filesystem::path& file) {
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  write_json_file(file, j);
}

}  // namespace contaccum::detail::planner_json
