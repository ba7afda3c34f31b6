#pragma once
/// \file
/// \brief embed_texts: texts -> pooled embeddings with an encoder, a pooling reader and a
///        tokenizer, in inference mode and in batches of similar length (what
///        sentence-transformers' encode() does).
///
/// \code
/// auto bert = contaccum::load_bert("models/all-MiniLM-L6-v2");
/// auto tok = contaccum::tokenizers::load_tokenizer("models/all-MiniLM-L6-v2");
/// torch::Tensor e = contaccum::embed_texts(bert, contaccum::Normalized<contaccum::MeanPooling>{}, tok, texts);
/// \endcode

#include <contaccum/encoders/concepts.hpp>
#include <contaccum/pooling/concepts.hpp>
#include <contaccum/tokenizers/batch.hpp>
#include <contaccum/tokenizers/concepts.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <string_view>
#include <vector>

namespace contaccum {

struct EmbedOptions {
  int64_t batch_size = 32;
  std::size_t max_length = 256;  ///< tokens per text, specials included (sentence-transformers' max_seq_length)
  bool sort_by_length = true;    ///< batch texts of similar length: less padding, same results
  std::function<void(std::size_t done, std::size_t total)> progress{};  ///< called after each batch
};

/// \brief Embeds `texts` (any random-access range of string-likes) with `encoder`'s
///        hidden states read out by `pooler`. Runs without autograd and in eval mode
///        (the encoder's mode is restored afterwards). Rows follow the order of `texts`.
/// \return (N, H) on the encoder's device.
template <Encoder E, Pooler P, tokenizers::Tokenizer T, std::ranges::random_access_range R>
[[nodiscard]] torch::Tensor embed_texts(E& encoder, const P& pooler, const T& tokenizer, const R& texts,
                                        const EmbedOptions& options = {}) {
  detail::require(options.batch_size > 0, "EmbedOptions.batch_size must be positive, got ", options.batch_size);
  const std::size_t n = std::ranges::size(texts);
  std::vector<std::vector<int64_t>> ids(n);
  if constexpr (requires { encoder->config().vocab_size; })
    tokenizers::require_fits_model(tokenizer, encoder->config().vocab_size, "embed_texts");
  for (std::size_t i = 0; i < n; ++i)
    ids[i] = tokenizer.encode(std::string_view(texts[i]), {.add_special_tokens = true, .max_length = options.max_length});
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  if (options.sort_by_length)
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return ids[a].size() > ids[b].size(); });

  const auto params = encoder->parameters();
  const auto device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
  const bool was_training = encoder->is_training();
  encoder->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor out;  // (N, H)
  for (std::size_t begin = 0; begin < n; begin += static_cast<std::size_t>(options.batch_size)) {
    const std::size_t end = std::min(n, begin + static_cast<std::size_t>(options.batch_size));
    std::vector<std::vector<int64_t>> rows;
    rows.reserve(end - begin);
    for (std::size_t k = begin; k < end; ++k) rows.push_back(std::move(ids[order[k]]));
    const auto batch = tokenizers::pad_rows(rows, static_cast<int64_t>(tokenizer.pad_id())).to(device);
    torch::Tensor pooled;  // (b, H)
    {
      // Inference mode skips autograd bookkeeping entirely (version counters, views);
      // only this batch's temporaries are inference tensors, `out` is an ordinary tensor.
      c10::InferenceMode inference;
      pooled = pooler(encoder->forward(batch.input_ids, batch.attention_mask), batch.attention_mask);
    }
    if (!out.defined()) out = torch::empty({static_cast<int64_t>(n), pooled.size(1)}, pooled.options());
    std::vector<int64_t> rows_at(order.begin() + static_cast<std::ptrdiff_t>(begin),
                                 order.begin() + static_cast<std::ptrdiff_t>(end));
    out.index_copy_(0, torch::tensor(rows_at, torch::kLong).to(device), pooled);
    if (options.progress) options.progress(end, n);
  }
  encoder->train(was_training);
  return out.defined() ? out : torch::empty({0, encoder->hidden_size()});
}

}  // namespace contaccum
