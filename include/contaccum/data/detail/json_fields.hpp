#pragma once
/// \file
/// \brief Private helpers that read the fields of one JSON record (JSONL line, DPR
///        record, BEIR document) and throw record_problem naming the field on any mismatch.

#include <contaccum/data/detail/line_records.hpp>
#include <contaccum/data/records.hpp>

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum::detail {

/// \brief One JSON value from the text of a record; a syntax error is a record_problem
///        that says where in the text (`at`) it is.
[[nodiscard]] inline nlohmann::json parse_json_record(std::string_view text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // nlohmann's message gives line and column within this record's text; the reader
    // reports them within the file instead, so keep only what went wrong.
    std::string what = e.what();
    const auto column = what.find("column");
    const auto colon = column == std::string::npos ? std::string::npos : what.find(": ", column);
    if (colon != std::string::npos) what = what.substr(colon + 2);
    throw record_problem{"", cat("not valid JSON: ", what), e.byte > 0 ? e.byte - 1 : 0};
  } catch (const nlohmann::json::exception& e) {
    // Well-formed syntax the parser still cannot hold: a number beyond double's range
    // ("number overflow parsing '1e3081'", out_of_range.406). No offset comes with it.
    std::string what = e.what();
    const auto bracket = what.find("] ");
    if (bracket != std::string::npos) what = what.substr(bracket + 2);
    throw record_problem{"", cat("not valid JSON: ", what), 0};
  }
}

/// \brief The member stored under one of `keys` (alternative spellings of one field), or
///        nullptr. Two spellings in one record are a record_problem.
[[nodiscard]] inline const nlohmann::json* json_member(const nlohmann::json& obj, std::initializer_list<const char*> keys,
                                                       std::string* found_key = nullptr) {
  const nlohmann::json* out = nullptr;
  std::string found;
  for (const char* key : keys) {
    const auto it = obj.find(key);
    if (it == obj.end()) continue;
    if (out) bad_record(key, "given twice, as \"", found, "\" and as \"", key, "\"");
    out = &*it;
    found = key;
  }
  if (found_key) *found_key = found;
  return out;
}

/// \brief A string field; `required` fields must exist, and no text may be empty.
///        A missing optional field reads as "".
[[nodiscard]] inline std::string json_text(const nlohmann::json& obj, const char* key, const std::string& field,
                                           bool required) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) bad_record(field, "missing");
    return {};
  }
  if (!it->is_string()) bad_record(field, "must be a string, got ", it->type_name());
  auto s = it->get<std::string>();
  if (required && s.find_first_not_of(" \t\r\n") == std::string::npos) bad_record(field, "empty text");
  return s;
}

/// \brief An id: a string or an integer (some dumps write ids as numbers), as a string.
[[nodiscard]] inline std::string json_id(const nlohmann::json& v, const std::string& field) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return v.dump();
  bad_record(field, "must be a string or an integer id, got ", v.type_name());
}

/// \brief A passage written as a bare string (its text) or as an object
///        {"title", "text", and an id under "_id", "id", "passage_id", "psg_id" or "docid"}.
[[nodiscard]] inline Passage json_passage(const nlohmann::json& v, const std::string& field) {
  if (v.is_string()) {
    auto text = v.get<std::string>();
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) bad_record(field, "empty text");
    return {{}, {}, std::move(text)};
  }
  if (!v.is_object()) bad_record(field, "a passage must be a string or an object, got ", v.type_name());
  Passage p;
  std::string key;
  if (const auto* id = json_member(v, {"_id", "id", "passage_id", "psg_id", "docid"}, &key))
    p.id = json_id(*id, cat(field, ".", key));
  p.title = json_text(v, "title", field + ".title", false);
  p.text = json_text(v, "text", field + ".text", true);
  return p;
}

/// \brief Passages written as one passage or as an array of them.
[[nodiscard]] inline std::vector<Passage> json_passages(const nlohmann::json& v, const std::string& field) {
  std::vector<Passage> out;
  if (!v.is_array()) {
    out.push_back(json_passage(v, field));
    return out;
  }
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out.push_back(json_passage(v[i], cat(field, "[", i, "]")));
  return out;
}

}  // namespace contaccum::detail
