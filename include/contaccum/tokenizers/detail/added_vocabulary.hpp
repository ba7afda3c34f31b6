#pragma once
/// \file
/// \brief Added tokens ([CLS], <|endoftext|>, user additions): found in the text before
///        the model sees it and emitted as one id each.
///
/// Matching follows the tokenizers library: leftmost-longest over all contents; tokens
/// with `normalized: false` are matched in the raw text, tokens with `normalized: true`
/// in each remaining segment after normalisation. `lstrip` / `rstrip` absorb the
/// adjacent whitespace, `single_word` refuses a match inside a word.

#include <contaccum/tokenizers/detail/unicode.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum::tokenizers {

/// \brief One entry of tokenizer.json's `added_tokens`.
struct AddedToken {
  std::string content;
  int64_t id = -1;
  bool special = true;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

namespace detail {

/// \brief A piece of text: either an added token (id >= 0) or text for the model.
struct Segment {
  std::string text;
  int64_t id = -1;
};

// Last code point before byte `end` (assumes valid UTF-8).
inline char32_t last_code_point(std::string_view s) {
  std::size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  if (i == 0) return 0;
  const auto cps = decode_utf8(s.substr(i - 1));
  return cps.empty() ? 0 : cps.front();
}

inline char32_t first_code_point(std::string_view s) {
  if (s.empty()) return 0;
  std::size_t n = 1;
  while (n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) ++n;
  return decode_utf8(s.substr(0, n)).front();
}

inline bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return u_isalnum(static_cast<UChar32>(c)) != 0;
}

/// \brief The added tokens of one tokenizer, split into the two matching stages.
class AddedVocabulary {
public:
  AddedVocabulary() = default;
  explicit AddedVocabulary(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
      if (tokens_[i].content.empty()) continue;
      (tokens_[i].normalized ? normalized_ : raw_).push_back(i);
    }
  }

  [[nodiscard]] const std::vector<AddedToken>& tokens() const { return tokens_; }
  [[nodiscard]] bool has_normalized() const { return !normalized_.empty(); }

  /// \brief Splits `text` on the raw-text tokens (stage 1).
  void split_raw(std::string_view text, std::vector<Segment>& out) const { split(text, raw_, out); }

  /// \brief Splits an already normalised segment on the normalised tokens (stage 2).
  /// `contents` are the normalised forms of those tokens, in the order of `normalized_`.
  void split_normalized(std::string_view text, const std::vector<std::string>& contents,
                        std::vector<Segment>& out) const {
    split(text, normalized_, out, &contents);
  }

  [[nodiscard]] const std::vector<std::size_t>& normalized_indices() const { return normalized_; }

private:
  void split(std::string_view text, const std::vector<std::size_t>& which, std::vector<Segment>& out,
             const std::vector<std::string>* contents = nullptr) const {
    if (which.empty() || text.empty()) {
      if (!text.empty()) out.push_back({std::string(text), -1});
      return;
    }
    auto content_of = [&](std::size_t k) -> std::string_view {
      return contents ? std::string_view((*contents)[k]) : std::string_view(tokens_[which[k]].content);
    };
    std::array<bool, 256> first_byte{};  // a match can only start at one of these bytes
    for (std::size_t k = 0; k < which.size(); ++k) {
      const auto c = content_of(k);
      if (!c.empty()) first_byte[static_cast<unsigned char>(c[0])] = true;
    }
    std::size_t emitted = 0;  // bytes of `text` already placed in `out`
    std::size_t pos = 0;
    while (pos < text.size()) {
      // Leftmost-longest: the first position where some content matches, longest there.
      std::size_t best_k = which.size(), best_len = 0, start = pos;
      for (; start < text.size(); ++start) {
        if (!first_byte[static_cast<unsigned char>(text[start])]) continue;
        for (std::size_t k = 0; k < which.size(); ++k) {
          const auto c = content_of(k);
          if (!c.empty() && c.size() > best_len && text.compare(start, c.size(), c) == 0) {
            best_k = k;
            best_len = c.size();
          }
        }
        if (best_k != which.size()) break;
      }
      if (best_k == which.size()) break;
      std::size_t stop = start + best_len;
      const AddedToken& tok = tokens_[which[best_k]];
      pos = stop;  // the next search starts after this match either way
      if (tok.single_word) {
        const bool left_ok = start == 0 || !is_word_char(last_code_point(text.substr(0, start)));
        const bool right_ok = stop == text.size() || !is_word_char(first_code_point(text.substr(stop)));
        if (!left_ok || !right_ok) continue;
      }
      std::size_t begin = start;
      if (tok.lstrip) {
        std::size_t b = start;
        while (b > emitted) {
          std::size_t p = b - 1;
          while (p > emitted && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
          if (!is_white_space(first_code_point(text.substr(p)))) break;
          b = p;
        }
        begin = b;
      }
      if (tok.rstrip) {
        while (stop < text.size()) {
          const char32_t c = first_code_point(text.substr(stop));
          if (!is_white_space(c)) break;
          std::string tmp;
          append_utf8(tmp, c);
          stop += tmp.size();
        }
        pos = stop;
      }
      if (begin > emitted) out.push_back({std::string(text.substr(emitted, begin - emitted)), -1});
      out.push_back({std::string(text.substr(begin, stop - begin)), tok.id});
      emitted = stop;
    }
    if (emitted < text.size()) out.push_back({std::string(text.substr(emitted)), -1});
  }

  std::vector<AddedToken> tokens_;
  std::vector<std::size_t> raw_, normalized_;
};

}  // namespace detail
}  // namespace contaccum::tokenizers
