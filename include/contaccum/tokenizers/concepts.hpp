#pragma once
/// \file
/// \brief The Tokenizer concept and the per-call encoding options.
///
/// A **Tokenizer** turns UTF-8 text into the ids a Hugging Face tokenizer with the same
/// files would give (id for id), knows its padding id, and maps ids back to tokens.

#include <contaccum/detail/error.hpp>

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

/// \brief Checks that every id `tokenizer` can produce indexes a row of a model's token
///        embedding of `model_vocab_size` rows; `where` names the pair (e.g. the model
///        folder). Without it an id past the table fails deep inside the embedding lookup
///        ("index out of range in self"), naming neither file.
template <Tokenizer T>
void require_fits_model(const T& tokenizer, int64_t model_vocab_size, std::string_view where) {
  const auto ids = static_cast<int64_t>(tokenizer.vocab_size());
  contaccum::detail::require(ids <= model_vocab_size, where, ": the tokenizer has ", ids,
                             " token ids (0..", ids - 1, ", the highest '", tokenizer.id_to_token(ids - 1),
                             "') but the model's vocab_size is ", model_vocab_size,
                             ": they do not belong together (a tokenizer.json or vocab.txt from another model?)");
}

}  // namespace contaccum::tokenizers
