#pragma once
/// \file
/// \brief DPR's training and dev files (e.g. nq-train.json): one JSON array of records
///
///     {"question": "...", "answers": ["..."],
///      "positive_ctxs": [{"title", "text", "passage_id" | "psg_id"}, ...],
///      "hard_negative_ctxs": [...], "negative_ctxs": [...]}
///
/// streamed record by record (DPR's real files are gigabytes; only one record is held
/// at a time). "question" and "positive_ctxs" are required, every ctx needs a non-empty
/// "text"; "title", the ids, "answers", "hard_negative_ctxs" and "negative_ctxs" are
/// optional; other keys (scores, has_answer) are ignored. A record whose positive_ctxs
/// is empty is dropped and counted (ReadStats::without_positives), as DPR's own loader
/// drops it. The query id is the record's "id" or "qid" if present, else its 0-based index.
///
/// A malformed record raises malformed_record naming the file, the record index, its
/// line and byte offset (of the syntax error, for bad JSON) and the field, or is skipped
/// and counted under OnError::skip. A broken array (see JsonArrayScanner) always raises.

#include <contaccum/data/detail/json_array_scanner.hpp>
#include <contaccum/data/detail/json_fields.hpp>
#include <contaccum/data/detail/line_records.hpp>
#include <contaccum/data/read_options.hpp>
#include <contaccum/data/records.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace contaccum {
namespace detail {

/// \brief One DPR record as a TextExample (nullopt, counted, when it has no positive).
struct ParseDprRecord {
  std::optional<TextExample> operator()(const JsonArrayScanner& source, ReadStats& stats) const {
    const auto j = parse_json_record(source.text());
    if (!j.is_object()) bad_record("", "a DPR record must be a JSON object, got ", j.type_name());
    TextExample ex;
    std::string key;
    if (const auto* id = json_member(j, {"id", "qid"}, &key))
      ex.query_id = json_id(*id, key);
    else
      ex.query_id = std::to_string(source.index());
    ex.query = json_text(j, "question", "question", true);
    if (const auto it = j.find("answers"); it != j.end() && !it->is_null()) {
      if (!it->is_array()) bad_record("answers", "must be an array of strings, got ", it->type_name());
      for (std::size_t i = 0; i < it->size(); ++i) {
        if (!(*it)[i].is_string()) bad_record(cat("answers[", i, "]"), "must be a string, got ", (*it)[i].type_name());
        ex.answers.push_back((*it)[i].get<std::string>());
      }
    }
    ex.positives = ctxs(j, "positive_ctxs", true);
    ex.hard_negatives = ctxs(j, "hard_negative_ctxs", false);
    ex.negatives = ctxs(j, "negative_ctxs", false);
    if (ex.positives.empty()) {
      ++stats.without_positives;
      return std::nullopt;
    }
    return ex;
  }

  static std::vector<Passage> ctxs(const nlohmann::json& j, const char* key, bool required) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (required) bad_record(key, "missing");
      return {};
    }
    if (!it->is_array()) bad_record(key, "must be an array of passages, got ", it->type_name());
    std::vector<Passage> out;
    out.reserve(it->size());
    for (std::size_t i = 0; i < it->size(); ++i) {
      const auto field = cat(key, "[", i, "]");
      if (!(*it)[i].is_object()) bad_record(field, "a ctx must be an object {title, text}, got ", (*it)[i].type_name());
      out.push_back(json_passage((*it)[i], field));
    }
    return out;
  }
};

}  // namespace detail

/// \brief The examples of a DPR JSON file, streamed record by record (single-pass view).
using DprExamples = detail::RecordStream<TextExample, detail::JsonArrayScanner, detail::ParseDprRecord>;

/// \brief Opens a DPR JSON file.
///
/// \code
/// auto examples = contaccum::dpr_examples("nq-train.json");
/// for (const contaccum::TextExample& ex : examples) { ... }
/// // examples.stats().without_positives: records DPR's loader also drops
/// \endcode
[[nodiscard]] inline DprExamples dpr_examples(const std::filesystem::path& file, ReadOptions options = {}) {
  return {detail::JsonArrayScanner(file, "DPR"), options, {}};
}

}  // namespace contaccum
