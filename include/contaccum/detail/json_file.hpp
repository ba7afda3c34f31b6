#pragma once
/// \file
/// \brief Reading and writing the JSON files of checkpoints, tokenizers and adapters, with
///        one wording for the errors: "<what> <path> cannot be opened: <why>" and
///        "<what> <path> is not valid JSON: <parser's message>".

#include <contaccum/detail/error.hpp>
#include <contaccum/detail/input_file.hpp>
#include <contaccum/state/detail/files.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string_view>

namespace contaccum::detail {

/// \brief The JSON document in `path`; `what` names the file's role in errors
///        ("config file", "PEFT adapter config", ...).
[[nodiscard]] inline nlohmann::json read_json_file(const std::filesystem::path& path,
                                                   std::string_view what = "JSON file") {
  const auto why = unreadable_file_reason(path);
  require(why.empty(), what, " ", path.string(), " cannot be opened: ", why);
  std::ifstream in(path, std::ios::binary);
  require(static_cast<bool>(in), what, " ", path.string(), " cannot be opened");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw invalid_input(cat("contaccum: ", what, " ", path.string(), " is not valid JSON: ", e.what()));
  }
}

/// \brief Writes `j` to `path`, replacing it atomically (temporary file, fsync, rename),
///        indented as save_pretrained does, with a final newline. Every write is checked.
inline void write_json_file(const std::filesystem::path& path, const nlohmann::json& j) {
  write_file_atomically(path, j.dump(2) + "\n");
}

}  // namespace contaccum::detail
