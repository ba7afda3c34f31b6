#pragma once
/// \file
/// \brief JSONL training pairs and triplets, one JSON object a line, streamed.
///
/// A line is `{"query": "...", "pos": [...], "neg": [...]}`:
///  * "query": a non-empty string (required);
///  * "pos" (or "positive"): one passage or an array of them, at least one (required);
///  * "neg" (or "negative"): one passage or an array of them (optional; become hard negatives);
///  * a passage is a string (its text) or an object {"title", "text", "_id"/"id"/"docid"};
///  * an id under "query_id", "qid", "_id" or "id" (optional; else the line number).
/// So `{"query": "q", "positive": "p", "negative": "n"}` (single strings, the
/// sentence-transformers triplet layout) reads too. Blank lines are passed over.
/// A malformed line raises malformed_record naming the file, the line and the field,
/// or is skipped and counted under OnError::skip.

#include <contaccum/data/detail/json_fields.hpp>
#include <contaccum/data/detail/line_records.hpp>
#include <contaccum/data/read_options.hpp>
#include <contaccum/data/records.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace contaccum {
namespace detail {

/// \brief One JSONL pair/triplet line as a TextExample.
struct ParseJsonlExample {
  std::optional<TextExample> operator()(std::string_view line, std::size_t line_no) const {
    const auto j = parse_json_record(line);
    if (!j.is_object()) bad_record("", "a record must be a JSON object, got ", j.type_name());
    TextExample ex;
    std::string key;
    if (const auto* id = json_member(j, {"query_id", "qid", "_id", "id"}, &key))
      ex.query_id = json_id(*id, key);
    else
      ex.query_id = std::to_string(line_no);
    ex.query = json_text(j, "query", "query", true);
    const auto* pos = json_member(j, {"pos", "positive"}, &key);
    if (!pos) bad_record("pos", "missing (a record needs at least one positive passage)");
    ex.positives = json_passages(*pos, key);
    if (ex.positives.empty()) bad_record(key, "empty array (a record needs at least one positive passage)");
    if (const auto* neg = json_member(j, {"neg", "negative"}, &key)) ex.hard_negatives = json_passages(*neg, key);
    return ex;
  }
};

}  // namespace detail

/// \brief The examples of a JSONL file, streamed line by line (a single-pass range-v3 view).
using JsonlExamples = detail::LineRecords<TextExample, detail::ParseJsonlExample>;

/// \brief Opens a JSONL pairs/triplets file (see the file comment for the layout).
///
/// \code
/// auto examples = contaccum::jsonl_examples("train.jsonl", {.on_error = contaccum::OnError::skip});
/// for (const contaccum::TextExample& ex : examples) { ... }
/// std::cout << examples.stats().summary() << "\n";
/// \endcode
[[nodiscard]] inline JsonlExamples jsonl_examples(const std::filesystem::path& file, ReadOptions options = {}) {
  return {detail::LineSource(file, "JSONL"), options, {}};
}

}  // namespace contaccum
