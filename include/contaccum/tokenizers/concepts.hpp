#pragma once
/// \file
/// \brief The Tokenizer concept and the per-call encoding options.
///
/// A **Tokenizer** turns UTF-8 text into the ids a Hugging Face tokenizer with the same
/// files would give (id for id), knows its padding id, and maps ids back to tokens.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum::tokenizers {

/// \brief What one encode call does besides tokenizing.
struct EncodeOptions {
  bool add_special_tokens = true;  ///< [CLS] ... [SEP] or the tokenizer.json template
  std::size_t max_length = 0;      ///< 0: no truncation; else the text is cut (from the right)
                                   ///< so that ids, specials included, fit in max_length
};

template <class T>
concept Tokenizer = requires(const T& t, std::string_view text, EncodeOptions o, int64_t id) {
  { t.encode(text, o) } -> std::same_as<std::vector<int64_t>>;
  { t.pad_id() } -> std::convertible_to<int64_t>;
  { t.vocab_size() } -> std::convertible_to<std::size_t>;
  { t.id_to_token(id) } -> std::convertible_to<std::string>;
};

}  // namespace contaccum::tokenizers
