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
    std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr), pcre2_match_data_free);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t pos = 0, emitted = 0;
    while (pos <= text.size()) {
      const int rc = pcre2_match(code_.get(), subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) throw error("contaccum: PCRE2 match failed");
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      const std::size_t b = ov[0], e = ov[1];
      if (b > emitted) on_piece(text.substr(emitted, b - emitted));
      if (e > b) {
        on_piece(text.substr(b, e - b));
        emitted = e;
        pos = e;
      } else {  // empty match: step over one character
        pos = b + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      }
    }
    if (emitted < text.size()) on_piece(text.substr(emitted));
  }

  /// \brief Every non-overlapping match, left to right, replaced by `content` (as the
  ///        tokenizers library's Replace normaliser does; an empty match replaces nothing).
  [[nodiscard]] std::string replace_all(std::string_view text, std::string_view content) const {
    std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr), pcre2_match_data_free);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::string out;
    out.reserve(text.size());
    std::size_t pos = 0, copied = 0;
    while (pos <= text.size()) {
      const int rc = pcre2_match(code_.get(), subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) throw error("contaccum: PCRE2 match failed");
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      const std::size_t b = ov[0], e = ov[1];
      if (e > b) {
        out.append(text.substr(copied, b - copied));
        out.append(content);
        copied = pos = e;
      } else {  // empty match: step over one character
        pos = b + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      }
    }
    out.append(text.substr(copied));
    return out;
  }

private:
  std::shared_ptr<pcre2_code> code_;
};

}  // namespace contaccum::tokenizers::detail
