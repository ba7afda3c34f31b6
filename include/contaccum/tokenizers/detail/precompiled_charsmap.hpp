#pragma once
/// \file
/// \brief SentencePiece's compiled normalisation rules (the `Precompiled` normaliser of a
///        tokenizer.json converted from a SentencePiece model: XLM-RoBERTa, mT5, mBART).
///
/// The base64 blob is [u32 little-endian: trie size in bytes][the trie: u32 units of a
/// darts-clone double array][NUL-separated replacement strings]. A key of the trie is a
/// UTF-8 sequence; its value is the offset of the replacement. As the tokenizers library
/// applies it: text is cut into extended grapheme clusters; a cluster shorter than 6
/// bytes whose bytes start with a key is replaced whole by the first (shortest) key's
/// replacement; any other cluster is looked up code point by code point.

#include <contaccum/detail/error.hpp>
#include <contaccum/tokenizers/detail/unicode.hpp>

#include <unicode/ubrk.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum::tokenizers::detail {

/// \brief Standard base64 (RFC 4648, '=' padding) to bytes; anything else names `where`.
inline std::string decode_base64(std::string_view text, std::string_view where) {
  static const std::array<int8_t, 256> value = [] {
    std::array<int8_t, 256> v{};
    v.fill(-1);
    const std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (std::size_t i = 0; i < alphabet.size(); ++i) v[static_cast<unsigned char>(alphabet[i])] = static_cast<int8_t>(i);
    return v;
  }();
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const int8_t v = value[static_cast<unsigned char>(text[i])];
    contaccum::detail::require(v >= 0, where, ": not base64 (character ", i, ")");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

/// \brief The compiled rules; empty rules leave text unchanged.
class PrecompiledCharsmap {
public:
  PrecompiledCharsmap() = default;

  /// \brief From the decoded blob; a malformed blob is an error naming `where`.
  PrecompiledCharsmap(std::string_view blob, std::string_view where) {
    if (blob.empty()) return;
    contaccum::detail::require(blob.size() >= 4, where, ": precompiled_charsmap is ", blob.size(),
                               " bytes, shorter than its 4-byte header");
    const uint32_t trie_bytes = read_u32(blob, 0);
    contaccum::detail::require(trie_bytes % 4 == 0 && trie_bytes >= 4 && 4 + std::size_t{trie_bytes} <= blob.size(),
                               where, ": precompiled_charsmap's trie size ", trie_bytes, " does not fit its ",
                               blob.size(), " bytes");
    units_.resize(trie_bytes / 4);
    for (std::size_t i = 0; i < units_.size(); ++i) units_[i] = read_u32(blob, 4 + 4 * i);
    replacements_.assign(blob.substr(4 + trie_bytes));
    where_ = where;
    for (unsigned c = 0; c < 128; ++c) {
      const char ch = static_cast<char>(c);
      ascii_[c] = first_match(std::string_view(&ch, 1));
    }
  }

  [[nodiscard]] bool empty() const { return units_.empty(); }

  /// \brief The normalised text.
  [[nodiscard]] std::string apply(std::string_view text) const {
    if (units_.empty()) return std::string(text);
    bool ascii = true;
    for (std::size_t i = 0; i < text.size() && ascii; ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      ascii = c < 0x80 && !(c == '\r' && i + 1 < text.size() && text[i + 1] == '\n');  // CR LF is one cluster
    }
    std::string out;
    out.reserve(text.size());
    if (ascii) {  // every character is its own cluster
      for (const char ch : text) {
        if (const auto& r = ascii_[static_cast<unsigned char>(ch)]) out.append(*r);
        else out.push_back(ch);
      }
      return out;
    }
    for_each_grapheme(text, [&](std::string_view g) {
      if (g.size() < 6) {
        if (const auto r = first_match(g)) {
          out.append(*r);
          return;
        }
      }
      for (std::size_t i = 0; i < g.size();) {
        const std::size_t n = utf8_length(static_cast<unsigned char>(g[i]));
        const auto c = g.substr(i, n);
        if (const auto r = first_match(c)) out.append(*r);
        else out.append(c);
        i += n;
      }
    });
    return out;
  }

private:
  static uint32_t read_u32(std::string_view b, std::size_t at) {
    return static_cast<uint32_t>(static_cast<unsigned char>(b[at])) |
           static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8 |
           static_cast<uint32_t>(static_cast<unsigned char>(b[at + 2])) << 16 |
           static_cast<uint32_t>(static_cast<unsigned char>(b[at + 3])) << 24;
  }

  static std::size_t utf8_length(unsigned char lead) {
    if (lead < 0x80) return 1;
    if ((lead & 0xE0) == 0xC0) return 2;
    if ((lead & 0xF0) == 0xE0) return 3;
    return 4;
  }

  // darts-clone unit fields.
  static uint32_t offset(uint32_t u) { return (u >> 10) << ((u & (1U << 9)) >> 6); }
  static bool has_leaf(uint32_t u) { return ((u >> 8) & 1U) != 0; }
  static uint32_t label(uint32_t u) { return u & ((1U << 31) | 0xFFU); }
  static uint32_t value(uint32_t u) { return u & ((1U << 31) - 1); }

  [[nodiscard]] uint32_t unit(std::size_t pos) const {
    contaccum::detail::require(pos < units_.size(), where_, ": precompiled_charsmap's trie points outside itself");
    return units_[pos];
  }

  // The replacement of the shortest key that `key` starts with (the search stops at a NUL
  // byte, as the trie's keys are C strings).
  [[nodiscard]] std::optional<std::string_view> first_match(std::string_view key) const {
    std::size_t pos = offset(unit(0));
    for (const char ch : key) {
      const auto c = static_cast<unsigned char>(ch);
      if (c == 0) break;
      pos ^= c;
      const uint32_t u = unit(pos);
      if (label(u) != c) return std::nullopt;
      pos ^= offset(u);
      if (has_leaf(u)) {
        const std::size_t at = value(unit(pos));
        contaccum::detail::require(at < replacements_.size(), where_,
                                   ": precompiled_charsmap names a replacement past its end");
        const auto end = replacements_.find('\0', at);
        return std::string_view(replacements_).substr(at, (end == std::string::npos ? replacements_.size() : end) - at);
      }
    }
    return std::nullopt;
  }

  // Calls f on each extended grapheme cluster of UTF-8 `text` (ICU's character breaks).
  template <class F>
  static void for_each_grapheme(std::string_view text, F&& f) {
    const std::u32string cps = decode_utf8(text);
    std::u16string u16;
    u16.reserve(cps.size() + 8);
    std::vector<std::size_t> byte_at;  // UTF-16 index -> byte offset in `text`
    byte_at.reserve(cps.size() + 8);
    std::size_t byte = 0;
    for (const char32_t c : cps) {
      const std::size_t len = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
      byte_at.push_back(byte);
      if (c < 0x10000) {
        u16.push_back(static_cast<char16_t>(c));
      } else {
        u16.push_back(static_cast<char16_t>(U16_LEAD(c)));
        u16.push_back(static_cast<char16_t>(U16_TRAIL(c)));
        byte_at.push_back(byte);
      }
      byte += len;
    }
    byte_at.push_back(byte);
    UErrorCode status = U_ZERO_ERROR;
    thread_local std::unique_ptr<UBreakIterator, void (*)(UBreakIterator*)> it(nullptr, ubrk_close);
    if (!it) it.reset(ubrk_open(UBRK_CHARACTER, "", nullptr, 0, &status));
    if (U_FAILURE(status) || !it) throw error("contaccum: ICU grapheme break iterator unavailable");
    ubrk_setText(it.get(), reinterpret_cast<const UChar*>(u16.data()), static_cast<int32_t>(u16.size()), &status);
    if (U_FAILURE(status)) throw error("contaccum: ICU grapheme break iterator failed");
    int32_t begin = ubrk_first(it.get());
    for (int32_t end = ubrk_next(it.get()); end != UBRK_DONE; begin = end, end = ubrk_next(it.get())) {
      const std::size_t b = byte_at[static_cast<std::size_t>(begin)], e = byte_at[static_cast<std::size_t>(end)];
      f(text.substr(b, e - b));
    }
  }

  std::vector<uint32_t> units_;
  std::string replacements_;
  std::string where_;
  std::array<std::optional<std::string>, 128> ascii_{};
};

}  // namespace contaccum::tokenizers::detail
