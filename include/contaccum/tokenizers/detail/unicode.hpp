#pragma once
/// \file
/// \brief UTF-8 decoding/encoding and the Unicode properties the tokenizers need, taken
///        from ICU (categories, White_Space, case mapping, normalisation forms).
///
/// Text is decoded once into code points (`std::u32string`); ASCII code points take
/// table paths and never call into ICU, so plain English text costs no library calls.

#include <contaccum/detail/error.hpp>

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum::tokenizers::detail {

/// \brief Decodes UTF-8; invalid input is an error naming the byte offset.
inline std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  auto bad = [&](std::size_t at) {
    throw invalid_input(contaccum::detail::cat("contaccum: text is not valid UTF-8 (byte ", at,
                                                " of ", n, ")"));
  };
  while (i < n) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    int len = 0;
    char32_t cp = 0;
    if ((b & 0xE0) == 0xC0) { len = 2; cp = b & 0x1F; }
    else if ((b & 0xF0) == 0xE0) { len = 3; cp = b & 0x0F; }
    else if ((b & 0xF8) == 0xF0) { len = 4; cp = b & 0x07; }
    else bad(i);
    if (i + len > n) bad(i);
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) bad(i + k);
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    static constexpr std::array<char32_t, 5> min_of_len{0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_of_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) bad(i);
    out.push_back(cp);
    i += len;
  }
  return out;
}

inline void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

inline std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

/// \brief White_Space property (what Rust's char::is_whitespace tests).
inline bool is_white_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE) != 0;
}

/// \brief General category C* (control, format, unassigned, private use, surrogate).
inline bool is_other(char32_t c) {
  if (c < 0x80) return c < 0x20 || c == 0x7F;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_CONTROL_CHAR: case U_FORMAT_CHAR: case U_UNASSIGNED:
    case U_PRIVATE_USE_CHAR: case U_SURROGATE:
      return true;
    default:
      return false;
  }
}

/// \brief General category P* (punctuation).
inline bool is_punctuation(char32_t c) {
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_CONNECTOR_PUNCTUATION: case U_DASH_PUNCTUATION: case U_START_PUNCTUATION:
    case U_END_PUNCTUATION: case U_INITIAL_PUNCTUATION: case U_FINAL_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

inline bool is_ascii_punctuation(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

/// \brief Nonspacing mark (Mn), the marks accent stripping removes after NFD.
inline bool is_nonspacing_mark(char32_t c) {
  return c >= 0x80 && u_charType(static_cast<UChar32>(c)) == U_NON_SPACING_MARK;
}

/// \brief Appends the full lowercase mapping of one code point, without context (as
///        Rust's char::to_lowercase: a capital sigma always becomes U+03C3).
inline void append_lowercase(std::u32string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back((c >= 'A' && c <= 'Z') ? c + 32 : c);
  } else if (c == 0x0130) {  // the one unconditional multi-code-point lowercase mapping
    out.push_back(U'i');
    out.push_back(0x0307);
  } else {
    out.push_back(static_cast<char32_t>(u_tolower(static_cast<UChar32>(c))));
  }
}

enum class NormalForm { nfc, nfd, nfkc, nfkd };

/// \brief Unicode normalisation of a code-point string (ICU's Normalizer2).
inline std::u32string normalize(std::u32string_view s, NormalForm form) {
  bool ascii = true;
  for (char32_t c : s) ascii = ascii && c < 0x80;
  if (ascii) return std::u32string(s);  // every form leaves ASCII unchanged
  UErrorCode status = U_ZERO_ERROR;
  const UNormalizer2* norm = nullptr;
  switch (form) {
    case NormalForm::nfc: norm = unorm2_getNFCInstance(&status); break;
    case NormalForm::nfd: norm = unorm2_getNFDInstance(&status); break;
    case NormalForm::nfkc: norm = unorm2_getNFKCInstance(&status); break;
    case NormalForm::nfkd: norm = unorm2_getNFKDInstance(&status); break;
  }
  if (U_FAILURE(status)) throw error("contaccum: ICU normaliser unavailable");
  std::u16string in;
  in.reserve(s.size());
  for (char32_t c : s) {
    if (c < 0x10000) {
      in.push_back(static_cast<char16_t>(c));
    } else {
      in.push_back(static_cast<char16_t>(U16_LEAD(c)));
      in.push_back(static_cast<char16_t>(U16_TRAIL(c)));
    }
  }
  std::u16string buf(in.size() * 4 + 16, u'\0');
  int32_t len = unorm2_normalize(norm, in.data(), static_cast<int32_t>(in.size()), buf.data(),
                                 static_cast<int32_t>(buf.size()), &status);
  if (status == U_BUFFER_OVERFLOW_ERROR) {
    status = U_ZERO_ERROR;
    buf.assign(static_cast<std::size_t>(len), u'\0');
    len = unorm2_normalize(norm, in.data(), static_cast<int32_t>(in.size()), buf.data(), len,
                           &status);
  }
  if (U_FAILURE(status)) throw error("contaccum: ICU normalisation failed");
  std::u32string out;
  out.reserve(static_cast<std::size_t>(len));
  for (int32_t i = 0; i < len;) {
    UChar32 c;
    U16_NEXT(buf.data(), i, len, c);
    out.push_back(static_cast<char32_t>(c));
  }
  return out;
}

}  // namespace contaccum::tokenizers::detail
