#pragma once
/// \file
/// \brief Private: walks a file that holds one top-level JSON array (a DPR file) element
///        by element, without parsing the whole file, keeping each element's index,
///        line and byte offset so a bad record can be reported where it is.
///
/// Only the array's punctuation and string quoting are read here; each element's text
/// is then parsed on its own. A broken element (bad syntax inside balanced brackets) is
/// a record_problem the reader may skip; a broken array (no '[', a missing ',', the file
/// ending inside an element, text after ']') cannot be resynchronised and always raises.

#include <contaccum/data/detail/line_records.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/detail/input_file.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

namespace contaccum::detail {

class JsonArrayScanner {
public:
  JsonArrayScanner(std::filesystem::path file, std::string format)
      : file_(std::move(file)), format_(std::move(format)) {
    if (const auto why = unreadable_file_reason(file_); !why.empty()) bad_file(format_, file_, "cannot open it: ", why);
    in_.open(file_, std::ios::binary);
    if (!in_.is_open()) bad_file(format_, file_, "cannot open it");
  }
  JsonArrayScanner(JsonArrayScanner&&) = default;
  JsonArrayScanner& operator=(JsonArrayScanner&&) = default;

  /// \brief Moves to the next element; false after the closing ']'.
  bool next() {
    int c = 0;
    switch (state_) {
      case State::done:
        return false;
      case State::start:
        c = skip_space(true);
        if (c != '[') fail_here("expected '[' (a ", format_, " file is one JSON array of records), got ", shown(c));
        c = skip_space();
        if (c == ']') return finish();
        break;
      case State::after_element:
        c = skip_space();
        if (c == ']') return finish();
        if (c != ',') fail_here("expected ',' or ']' after record ", index_, ", got ", shown(c));
        c = skip_space();
        if (c == ']' || c == EOF) fail_here("expected a record after the ',' that follows record ", index_, ", got ", shown(c));
        break;
    }
    capture(c);
    state_ = State::after_element;
    if (started_) ++index_;
    started_ = true;
    return true;
  }

  /// \brief The current element's JSON text.
  [[nodiscard]] const std::string& text() const { return text_; }
  /// \brief 0-based index of the current element in the array.
  [[nodiscard]] std::size_t index() const { return index_; }
  /// \brief 1-based line on which the current element starts.
  [[nodiscard]] std::size_t line() const { return start_line_; }
  /// \brief 0-based byte offset in the file at which the current element starts.
  [[nodiscard]] std::uint64_t offset() const { return start_offset_; }
  [[nodiscard]] const std::filesystem::path& file() const { return file_; }

  /// \brief The malformed_record for a problem in the current element: "record N (line
  ///        L, byte B)", at the syntax error when the problem says where it is.
  [[nodiscard]] malformed_record error(const record_problem& p) const {
    auto line = start_line_;
    auto byte = start_offset_;
    if (p.at != std::string::npos) {
      const auto at = std::min(p.at, text_.size());
      for (std::size_t i = 0; i < at; ++i) line += text_[i] == '\n';
      byte += at;
    }
    return {record_message(format_, file_, cat("record ", index_, " (line ", line, ", byte ", byte, ")"), p), file_,
            line};
  }

private:
  enum class State { start, after_element, done };

  int get() {
    const int c = in_.rdbuf()->sbumpc();
    if (c == EOF) return EOF;
    last_line_ = line_;
    last_offset_ = offset_++;
    if (c == '\n') ++line_;
    return c;
  }

  int skip_space(bool at_start = false) {
    int c = get();
    if (at_start && c == 0xEF) {  // UTF-8 byte order mark
      get();
      get();
      c = get();
    }
    while (c == ' ' || c == '\t' || c == '\n' || c == '\r') c = get();
    return c;
  }

  bool finish() {
    if (skip_space() != EOF) fail_here("text after the closing ']' of the array");
    state_ = State::done;
    return false;
  }

  // Reads one element starting with `c` (already consumed) into text_, tracking strings
  // and bracket depth; brackets need only balance here, the JSON parser checks the rest.
  void capture(int c) {
    if (c == EOF) fail_here("the file ends before the array's closing ']'");
    text_.clear();
    start_line_ = last_line_;
    start_offset_ = last_offset_;
    const auto element = started_ ? index_ + 1 : 0;
    const auto ended = [&] {
      fail_at(start_line_, start_offset_, "the file ends inside record ", element, " (which starts here)");
    };
    text_.push_back(static_cast<char>(c));
    bool in_string = c == '"', escaped = false;
    int depth = (c == '{' || c == '[') ? 1 : 0;
    if (depth == 0 && !in_string) {  // a bare scalar: up to the next separator
      for (int n = in_.rdbuf()->sgetc(); n != EOF && n != ',' && n != ']' && n != ' ' && n != '\t' && n != '\n' &&
                                         n != '\r';
           n = in_.rdbuf()->sgetc())
        text_.push_back(static_cast<char>(get()));
      return;
    }
    while (in_string || depth > 0) {
      c = get();
      if (c == EOF) ended();
      text_.push_back(static_cast<char>(c));
      if (in_string) {
        if (escaped)
          escaped = false;
        else if (c == '\\')
          escaped = true;
        else if (c == '"')
          in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        --depth;
      }
    }
  }

  static std::string shown(int c) {
    if (c == EOF) return "the end of the file";
    return cat("'", static_cast<char>(c), "'");
  }

  template <class... Parts>
  [[noreturn]] void fail_at(std::size_t line, std::uint64_t offset, Parts&&... parts) const {
    bad_file(format_, file_, "line ", line, " (byte ", offset, "): ", std::forward<Parts>(parts)...);
  }
  template <class... Parts>
  [[noreturn]] void fail_here(Parts&&... parts) const {
    fail_at(last_line_, last_offset_, std::forward<Parts>(parts)...);
  }

  std::filesystem::path file_;
  std::string format_;
  std::ifstream in_;
  State state_ = State::start;
  std::string text_;
  std::size_t index_ = 0;
  bool started_ = false;
  std::size_t line_ = 1, last_line_ = 1, start_line_ = 1;
  std::uint64_t offset_ = 0, last_offset_ = 0, start_offset_ = 0;
};

}  // namespace contaccum::detail
