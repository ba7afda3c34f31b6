#pragma once
/// \file
/// \brief Batch encoding straight to tensors: truncation, padding (right or left) and the
///        attention mask, as a TokenBatch the encoders take.

#include <contaccum/data/batch.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/tokenizers/concepts.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <ranges>
#include <string_view>
#include <vector>

namespace contaccum::tokenizers {

enum class PaddingSide { right, left };

struct BatchOptions {
  std::size_t max_length = 512;  ///< truncation length, specials included (0: none)
  bool add_special_tokens = true;
  PaddingSide padding_side = PaddingSide::right;  ///< left suits last-token pooling of decoders
  std::size_t pad_to_multiple_of = 0;             ///< round the padded length up (0: no rounding)
};

/// \brief Pads id rows to the longest (rounded up to `pad_to_multiple_of`).
/// \return input_ids and attention_mask, both (B, T) int64.
[[nodiscard]] inline TokenBatch pad_rows(const std::vector<std::vector<int64_t>>& rows, int64_t pad_id,
                                         PaddingSide side = PaddingSide::right, std::size_t pad_to_multiple_of = 0) {
  std::size_t longest = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    contaccum::detail::require(!rows[i].empty(), "encode_batch: text ", i,
                               " gives no tokens (empty text without special tokens)");
    longest = std::max(longest, rows[i].size());
  }
  if (pad_to_multiple_of > 1) longest = (longest + pad_to_multiple_of - 1) / pad_to_multiple_of * pad_to_multiple_of;
  const auto b = static_cast<int64_t>(rows.size()), t = static_cast<int64_t>(longest);
  torch::Tensor ids = torch::full({b, t}, pad_id, torch::kLong);  // (B, T)
  torch::Tensor mask = torch::zeros({b, t}, torch::kLong);        // (B, T)
  auto* id_data = ids.data_ptr<int64_t>();
  auto* mask_data = mask.data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i) {
    const auto& row = rows[static_cast<std::size_t>(i)];
    const int64_t offset = side == PaddingSide::left ? t - static_cast<int64_t>(row.size()) : 0;
    std::copy(row.begin(), row.end(), id_data + i * t + offset);
    std::fill_n(mask_data + i * t + offset, row.size(), int64_t{1});
  }
  return {ids, mask};
}

/// \brief Encodes every text and pads to the longest; `texts` is any range of
///        string-like values (std::string, std::string_view, const char*).
/// \return input_ids and attention_mask, both (B, T) int64.
template <Tokenizer T, std::ranges::input_range R>
[[nodiscard]] TokenBatch encode_batch(const T& tokenizer, R&& texts, const BatchOptions& options = {}) {
  std::vector<std::vector<int64_t>> rows;
  for (auto&& text : texts)
    rows.push_back(tokenizer.encode(std::string_view(text), {options.add_special_tokens, options.max_length}));
  return pad_rows(rows, static_cast<int64_t>(tokenizer.pad_id()), options.padding_side, options.pad_to_multiple_of);
}

}  // namespace contaccum::tokenizers
