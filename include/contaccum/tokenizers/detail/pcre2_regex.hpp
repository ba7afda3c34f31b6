#pragma once
/// \file
/// \brief A compiled PCRE2 pattern: the split and replace steps of tokenizer.json
///        pipelines (Unicode classes and lookaheads, which std::regex cannot run).

#include <contaccum/detail/error.hpp>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>

namespace contaccum::tokenizers::detail {

/// \brief A compiled PCRE2 pattern (UTF + Unicode properties, JIT when available).
class Pcre2Regex {
public:
  explicit Pcre2Regex(const std::string& pattern, const std::string& where) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &code, &offset, nullptr);
    if (!re) {
      std::array<PCRE2_UCHAR, 256> msg{};
      pcre2_get_error_message(code, msg.data(), msg.size());
      throw invalid_input(contaccum::detail::cat("contaccum: ", where, ": split pattern does not compile at offset ",
                                                 offset, ": ", reinterpret_cast<const char*>(msg.data())));
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
    code_.reset(re, pcre2_code_free);
  }

  /// \brief Isolated split: every match and every gap between matches is a piece.
  template <class F>
  void split(std::string_view text, F&& on_piece) const {
    std::size_t emitted = 0;
    for_each_match(text, [&](std::size_t b, std::size_t e) {
      if (b > emitted) on_piece(text.substr(emitted, b - emitted));
      if (e > b) on_piece(text.substr(b, e - b));  // an empty match only ends the gap before it
      emitted = e;
    });
    if (emitted < text.size()) on_piece(text.substr(emitted));
  }

  /// \brief Every non-overlapping match, left to right, replaced by `content`, as the
  ///        tokenizers library's Replace normaliser does: an empty match inserts `content`
  ///        too, except right where the match before it ended ("x*" makes "xxab" "-a-b-").
  [[nodiscard]] std::string replace_all(std::string_view text, std::string_view content) const {
    std::string out;
    out.reserve(text.size());
    std::size_t copied = 0;
    bool after_match = false;  // `copied` is where a non-empty match ended
    for_each_match(text, [&](std::size_t b, std::size_t e) {
      if (e == b && b == copied && after_match) return;
      out.append(text.substr(copied, b - copied));
      out.append(content);
      copied = e;
      after_match = e > b;
    });
    out.append(text.substr(copied));
    return out;
  }

private:
  // Calls on_match(begin, end) for every non-overlapping match, left to right, in bytes;
  // after an empty match the search goes on one UTF-8 character further.
  template <class F>
  void for_each_match(std::string_view text, F&& on_match) const {
    std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr), pcre2_match_data_free);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t pos = 0;
    while (pos <= text.size()) {
      const int rc = pcre2_match(code_.get(), subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) throw error("contaccum: PCRE2 match failed");
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      const std::size_t b = ov[0], e = ov[1];
      on_match(b, e);
      if (e > b) {
        pos = e;
      } else {
        pos = b + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      }
    }
  }

  std::shared_ptr<pcre2_code> code_;
};

}  // namespace contaccum::tokenizers::detail
