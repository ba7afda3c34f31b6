#pragma once
/// \file
/// \brief TSV training triples, `query <TAB> positive <TAB> negative` a line, no header,
///        streamed. Two columns (query, positive) read as a pair with no hard negative.
///
/// Fields are taken verbatim (no quoting: a tab cannot occur inside a field). A line
/// with another number of fields, or an empty field, raises malformed_record naming the
/// file, the line and the field, or is skipped and counted under OnError::skip. Blank
/// lines are passed over. The query id is the line number.

#include <contaccum/data/detail/line_records.hpp>
#include <contaccum/data/read_options.hpp>
#include <contaccum/data/records.hpp>

#include <array>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace contaccum {
namespace detail {

/// \brief One TSV triple (or pair) line as a TextExample.
struct ParseTsvTriple {
  std::optional<TextExample> operator()(std::string_view line, std::size_t line_no) const {
    static constexpr std::array<const char*, 3> names{"query", "positive", "negative"};
    const auto fields = split_fields(line, '\t');
    if (fields.size() != 2 && fields.size() != 3)
      bad_record("", "expected 3 tab-separated fields (query, positive, negative) or 2 (query, positive), got ",
                 fields.size());
    for (std::size_t i = 0; i < fields.size(); ++i)
      if (fields[i].find_first_not_of(" \t\r\n") == std::string_view::npos) bad_record(names[i], "empty text");
    TextExample ex;
    ex.query_id = std::to_string(line_no);
    ex.query = std::string(fields[0]);
    ex.positives.push_back({{}, {}, std::string(fields[1])});
    if (fields.size() == 3) ex.hard_negatives.push_back({{}, {}, std::string(fields[2])});
    return ex;
  }
};

}  // namespace detail

/// \brief The examples of a TSV triples file, streamed line by line (single-pass view).
using TsvExamples = detail::LineRecords<TextExample, detail::ParseTsvTriple>;

/// \brief Opens a TSV triples file.
///
/// \code
/// auto [examples, stats] = contaccum::read_all(contaccum::tsv_examples("triples.tsv"));
/// \endcode
[[nodiscard]] inline TsvExamples tsv_examples(const std::filesystem::path& file, ReadOptions options = {}) {
  return {detail::LineSource(file, "TSV"), options, {}};
}

}  // namespace contaccum
