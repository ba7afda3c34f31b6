#pragma once
/// \file
/// \brief Private machinery of the line-oriented readers (JSONL, TSV, BEIR, TREC):
///        a line source with 1-based line numbers, the record_problem a parser throws,
///        the raise-or-skip decision, and RecordStream, the streaming input range.

#include <contaccum/data/read_options.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/detail/input_file.hpp>

#include <range/v3/view/facade.hpp>

#include <charconv>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace contaccum::detail {

/// \brief A problem in one record, thrown by a record parser. The reader adds the file
///        and the line, then raises or skips (ReadOptions::on_error).
struct record_problem {
  std::string field;    ///< e.g. "pos[1].text"; empty when the record as a whole is wrong
  std::string message;  ///< e.g. "empty text"
  /// Where in the record's text the problem is (a JSON syntax error), when the reader
  /// can tell a finer place than the record's start; npos otherwise.
  std::size_t at = std::string::npos;
};

/// \brief Throws record_problem{field, message}.
template <class... Parts>
[[noreturn]] void bad_record(std::string field, Parts&&... parts) {
  throw record_problem{std::move(field), cat(std::forward<Parts>(parts)...)};
}

/// \brief "contaccum: <format> file '<path>' <where>: field "<field>": <message>".
[[nodiscard]] inline std::string record_message(std::string_view format, const std::filesystem::path& file,
                                                const std::string& where, const record_problem& p) {
  return cat("contaccum: ", format, " file '", file.string(), "' ", where, ": ",
             p.field.empty() ? std::string() : cat("field \"", p.field, "\": "), p.message);
}

/// \brief Throws `err` under OnError::raise; under OnError::skip counts it and keeps the
///        first message.
inline void handle_bad_record(const ReadOptions& options, ReadStats& stats, const malformed_record& err) {
  if (options.on_error == OnError::raise) throw err;
  if (stats.skipped++ == 0) stats.first_skipped = err.what();
}

/// \brief Throws invalid_input "contaccum: <format> file '<path>': <message>" (a problem
///        with the file as a whole, never skipped).
template <class... Parts>
[[noreturn]] void bad_file(std::string_view format, const std::filesystem::path& file, Parts&&... parts) {
  throw invalid_input(cat("contaccum: ", format, " file '", file.string(), "': ", std::forward<Parts>(parts)...));
}

/// \brief A text file read line by line: 1-based line numbers, a trailing '\r' removed
///        (files written on Windows), a UTF-8 byte-order mark at the start dropped (as JSON
///        parsers do), lines holding only spaces and tabs passed over.
class LineSource {
public:
  LineSource(std::filesystem::path file, std::string format)
      : file_(std::move(file)), format_(std::move(format)) {
    if (const auto why = unreadable_file_reason(file_); !why.empty()) bad_file(format_, file_, "cannot open it: ", why);
    in_.open(file_, std::ios::binary);
    if (!in_.is_open()) bad_file(format_, file_, "cannot open it");
  }

  /// \brief Moves to the next non-blank line; false at the end of the file.
  bool next() {
    while (std::getline(in_, line_)) {
      ++line_no_;
      if (!line_.empty() && line_.back() == '\r') line_.pop_back();
      if (line_no_ == 1 && line_.starts_with("\xEF\xBB\xBF")) line_.erase(0, 3);  // a UTF-8 byte-order mark
      if (line_.find_first_not_of(" \t") != std::string::npos) return true;
    }
    if (in_.bad()) bad_file(format_, file_, "read error after line ", line_no_);
    return false;
  }

  [[nodiscard]] std::string_view line() const { return line_; }
  [[nodiscard]] std::size_t line_no() const { return line_no_; }
  [[nodiscard]] const std::filesystem::path& file() const { return file_; }
  [[nodiscard]] const std::string& format() const { return format_; }

  /// \brief The malformed_record for a problem on the current line.
  [[nodiscard]] malformed_record error(const record_problem& p) const {
    const auto where = p.at == std::string::npos ? cat("line ", line_no_) : cat("line ", line_no_, ", column ", p.at + 1);
    return {record_message(format_, file_, where, p), file_, line_no_};
  }

private:
  std::filesystem::path file_;
  std::string format_;
  std::ifstream in_;
  std::string line_;
  std::size_t line_no_ = 0;
};

/// \brief The records of a file as a single-pass input range (a range-v3 view).
///
/// `Source` walks the file record by record (`bool next()`) and turns a record_problem
/// into a malformed_record that says where it is (`error(problem)`). `Parse` maps the
/// source's current record to std::optional<Record> (nullopt: nothing to yield, e.g. a
/// header line) and throws record_problem for a malformed one. The file is opened when
/// the view is made and read as it is iterated; copies share one stream, so the range
/// is single-pass. `stats()` holds the counts once iteration has ended.
template <class Record, class Source, class Parse>
class RecordStream : public ranges::view_facade<RecordStream<Record, Source, Parse>, ranges::unknown> {
  friend ranges::range_access;

  struct State {
    Source source;
    ReadOptions options;
    Parse parse;
    std::optional<Record> current;
    ReadStats stats;
    bool started = false;

    void advance() {
      current.reset();
      while (source.next()) {
        try {
          current = parse(source, stats);
        } catch (const record_problem& p) {
          handle_bad_record(options, stats, source.error(p));
          continue;
        }
        if (current) {
          ++stats.records;
          return;
        }
      }
    }
  };

  struct cursor {
    State* s = nullptr;
    Record& read() const { return *s->current; }
    void next() { s->advance(); }
    bool equal(ranges::default_sentinel_t) const { return !s->current; }
  };

  cursor begin_cursor() {
    if (!s_->started) {
      s_->started = true;
      s_->advance();
    }
    return cursor{s_.get()};
  }

  std::shared_ptr<State> s_;

public:
  RecordStream() = default;
  RecordStream(Source source, ReadOptions options, Parse parse)
      : s_(std::make_shared<State>(State{std::move(source), options, std::move(parse), std::nullopt, {}, false})) {}

  /// \brief Counts so far (complete once iteration has reached the end).
  [[nodiscard]] const ReadStats& stats() const { return s_->stats; }
  /// \brief The file being read.
  [[nodiscard]] const std::filesystem::path& file() const { return s_->source.file(); }
  /// \brief The malformed_record for a problem found in the current record after it was
  ///        yielded (a check that needs other records, e.g. a repeated id): it names the
  ///        record's place in the file like the reader's own errors.
  [[nodiscard]] malformed_record error(const record_problem& p) const { return s_->source.error(p); }
  /// \brief Raises, or skips and counts, a problem found in the current record.
  void reject(const record_problem& p) {
    handle_bad_record(s_->options, s_->stats, error(p));
    --s_->stats.records;
  }
};

/// \brief The offset of the first byte of `s` that does not belong to well-formed UTF-8
///        (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or npos.
[[nodiscard]] inline std::size_t first_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t tail = 0;           // continuation bytes that must follow
    unsigned lo = 0x80, hi = 0xBF;  // the range of the first of them
    if (c >= 0xC2 && c <= 0xDF) tail = 1;
    else if (c == 0xE0) tail = 2, lo = 0xA0;
    else if (c == 0xED) tail = 2, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) tail = 2;
    else if (c == 0xF0) tail = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) tail = 3;
    else if (c == 0xF4) tail = 3, hi = 0x8F;
    else return i;
    if (i + tail >= s.size()) return i;  // the line ends inside the character
    for (std::size_t k = 1; k <= tail; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < (k == 1 ? lo : 0x80u) || b > (k == 1 ? hi : 0xBFu)) return i;
    }
    i += tail + 1;
  }
  return std::string_view::npos;
}

/// \brief Adapts a parser of (line, line number) to RecordStream's (source, stats) call.
///        A line that is not UTF-8 is a malformed record, its column named, before any
///        field of it is parsed.
template <class LineParse>
struct ByLine {
  LineParse parse;
  auto operator()(const LineSource& source, ReadStats&) const {
    if (const auto at = first_invalid_utf8(source.line()); at != std::string_view::npos) {
      const auto byte = static_cast<unsigned>(static_cast<unsigned char>(source.line()[at]));
      throw record_problem{"", cat("not valid UTF-8 (byte 0x", std::hex, byte, ")"), at};
    }
    return parse(source.line(), source.line_no());
  }
};

/// \brief The records of a line-oriented file: `LineParse` maps (line, line number) to
///        std::optional<Record> and throws record_problem for a malformed line.
template <class Record, class LineParse>
using LineRecords = RecordStream<Record, LineSource, ByLine<LineParse>>;

/// \brief The fields of a line split at every `sep` (empty fields kept).
[[nodiscard]] inline std::vector<std::string_view> split_fields(std::string_view line, char sep) {
  std::vector<std::string_view> out;
  std::size_t begin = 0;
  for (;;) {
    const auto end = line.find(sep, begin);
    out.push_back(line.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin));
    if (end == std::string_view::npos) return out;
    begin = end + 1;
  }
}

/// \brief The fields of a line split at runs of spaces and tabs (TREC files).
[[nodiscard]] inline std::vector<std::string_view> split_whitespace(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const auto begin = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > begin) out.push_back(line.substr(begin, i - begin));
  }
  return out;
}

/// \brief A whole-field integer, or record_problem naming `field`.
template <class Int>
[[nodiscard]] Int parse_integer(std::string_view text, const std::string& field) {
  Int value{};
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) bad_record(field, "expected an integer, got '", text, "'");
  return value;
}

/// \brief A whole-field floating-point number (as strtod reads it), or record_problem.
[[nodiscard]] inline double parse_double(std::string_view text, const std::string& field) {
  double value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) bad_record(field, "expected a number, got '", text, "'");
  return value;
}

}  // namespace contaccum::detail
