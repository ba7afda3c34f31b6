#pragma once
/// \file
/// \brief What every dataset and run-file reader shares: the malformed-record policy
///        (`ReadOptions::on_error`), the counts a read reports (`ReadStats`), and the
///        error a malformed record raises (`malformed_record`, naming file, line, field).

#include <contaccum/detail/error.hpp>

#include <cstddef>
#include <filesystem>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace contaccum {

/// \brief What a reader does with a malformed record.
enum class OnError {
  raise,  ///< throw malformed_record (the default: bad data is never silently dropped)
  skip,   ///< drop the record, count it in ReadStats::skipped, keep the first message
};

inline std::ostream& operator<<(std::ostream& os, OnError e) { return os << (e == OnError::raise ? "raise" : "skip"); }

/// \brief Options every reader takes. A plain aggregate: `describe(options)` prints it.
///
/// \code
/// auto pairs = contaccum::jsonl_examples("train.jsonl", {.on_error = contaccum::OnError::skip});
/// \endcode
struct ReadOptions {
  OnError on_error = OnError::raise;
};

/// \brief What a read found: records yielded, records skipped as malformed (only under
///        OnError::skip), and records dropped by the format's own rule (DPR drops
///        questions without a positive passage, as DPR's loader does).
struct ReadStats {
  std::size_t records = 0;            ///< records yielded
  std::size_t skipped = 0;            ///< malformed records skipped (OnError::skip)
  std::size_t without_positives = 0;  ///< DPR records with an empty positive_ctxs, dropped
  std::string first_skipped;          ///< the error message of the first skipped record

  /// \brief One line for a log, e.g. "1000 records, 2 skipped (first: ...)".
  [[nodiscard]] std::string summary() const {
    auto s = detail::cat(records, " records");
    if (without_positives) s += detail::cat(", ", without_positives, " without a positive passage dropped");
    if (skipped) s += detail::cat(", ", skipped, " malformed skipped (first: ", first_skipped, ")");
    return s;
  }
};

/// \brief A record that breaks its format. what() reads
///        "contaccum: <format> file '<path>' line <n>: field "<name>": <problem>".
class malformed_record : public invalid_input {
public:
  malformed_record(std::string what, std::filesystem::path file, std::size_t line)
      : invalid_input(std::move(what)), file_(std::move(file)), line_(line) {}
  /// \brief The file that holds the record.
  [[nodiscard]] const std::filesystem::path& file() const noexcept { return file_; }
  /// \brief 1-based line where the problem is (for DPR JSON: where the record starts,
  ///        or where the JSON syntax error is).
  [[nodiscard]] std::size_t line() const noexcept { return line_; }

private:
  std::filesystem::path file_;
  std::size_t line_;
};

/// \brief Every record of a reader, with the read's counts.
template <class Record>
struct ReadResult {
  std::vector<Record> records;
  ReadStats stats;
};

/// \brief Drains a streaming reader (any range with `stats()`) into memory.
///
/// \code
/// auto [examples, stats] = contaccum::read_all(contaccum::jsonl_examples("train.jsonl"));
/// \endcode
template <class Records>
[[nodiscard]] auto read_all(Records records) {
  using Record = std::remove_cvref_t<decltype(*records.begin())>;
  ReadResult<Record> out;
  for (auto&& r : records) out.records.push_back(std::move(r));
  out.stats = records.stats();
  return out;
}

}  // namespace contaccum
