#pragma once
/// \file
/// \brief Tokens per training pair measured on the user's data: the `tokens_per_pair` of
///        pairs_for_budget (the compute-optimal paper assumes 78 for its data). A pair's
///        tokens are its query's, its positive's and its hard negatives', each tokenized as
///        tokenize_pairs does (special tokens included, truncated at the TokenizeConfig's
///        max lengths, padding not counted).

#include <contaccum/data/loader.hpp>
#include <contaccum/data/records.hpp>
#include <contaccum/data/sampling.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/tokenizers/concepts.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace contaccum {

/// \brief Mean tokens per pair, by part, over `pairs` measured pairs.
struct PairTokenCounts {
  std::size_t pairs = 0;        ///< pairs measured
  double query = 0;             ///< mean tokens of a query
  double positive = 0;          ///< mean tokens of a positive passage
  double hard_negatives = 0;    ///< mean tokens of all a pair's hard negatives together
  int64_t longest_query = 0;    ///< after truncation: the padded query length of a batch of all of them
  int64_t longest_passage = 0;  ///< same for passages (positives and hard negatives)

  /// \brief Mean tokens per pair: query + positive + hard negatives.
  [[nodiscard]] double total() const { return query + positive + hard_negatives; }
};

/// \brief Counts the tokens of `pairs` as tokenize_pairs(tok, pairs, config) would encode them.
template <tokenizers::Tokenizer T>
[[nodiscard]] PairTokenCounts count_pair_tokens(const T& tok, std::span<const TextPair> pairs,
                                                const TokenizeConfig& config = {}) {
  detail::require(!pairs.empty(), "count_pair_tokens: no pairs to measure");
  const tokenizers::EncodeOptions q_opts{.add_special_tokens = true, .max_length = config.query_max_length};
  const tokenizers::EncodeOptions p_opts{.add_special_tokens = true, .max_length = config.passage_max_length};
  PairTokenCounts out{.pairs = pairs.size()};
  int64_t query = 0, positive = 0, negatives = 0;
  for (const auto& pair : pairs) {
    const auto q = static_cast<int64_t>(tok.encode(query_text(pair.query, config), q_opts).size());
    const auto p = static_cast<int64_t>(tok.encode(passage_text(pair.positive, config), p_opts).size());
    query += q;
    positive += p;
    out.longest_query = std::max(out.longest_query, q);
    out.longest_passage = std::max(out.longest_passage, p);
    for (const auto& neg : pair.hard_negatives) {
      const auto n = static_cast<int64_t>(tok.encode(passage_text(neg, config), p_opts).size());
      negatives += n;
      out.longest_passage = std::max(out.longest_passage, n);
    }
  }
  const auto count = static_cast<double>(pairs.size());
  out.query = static_cast<double>(query) / count;
  out.positive = static_cast<double>(positive) / count;
  out.hard_negatives = static_cast<double>(negatives) / count;
  return out;
}

/// \brief Mean tokens per pair (query + positive + hard negatives) of `pairs`, with the
///        truncation of `config`: the tokens_per_pair argument of pairs_for_budget.
///
/// \code
/// std::vector<contaccum::TextPair> pairs = ...;  // e.g. drawn by a PairSampler
/// double tpp = contaccum::tokens_per_pair(tokenizer, std::span<const contaccum::TextPair>(pairs),
///                                         {.query_max_length = 32, .passage_max_length = 128});
/// auto n = contaccum::pairs_for_budget(1e15, flops_per_token, tpp, 1024);
/// \endcode
template <tokenizers::Tokenizer T>
[[nodiscard]] double tokens_per_pair(const T& tok, std::span<const TextPair> pairs, const TokenizeConfig& config = {}) {
  return count_pair_tokens(tok, pairs, config).total();
}

/// \brief tokens_per_pair over the pairs a sampler draws in epoch `epoch`, in its order:
///        all of them, or the first `max_pairs` when max_pairs > 0 (a sample of a large set).
template <tokenizers::Tokenizer T>
[[nodiscard]] double tokens_per_pair(const T& tok, const PairSampler& sampler, const TokenizeConfig& config = {},
                                     std::size_t max_pairs = 0, std::uint64_t epoch = 0) {
  const auto order = sampler.order(epoch);
  const auto n = max_pairs == 0 ? order.size() : std::min(max_pairs, order.size());
  std::vector<TextPair> pairs;
  pairs.reserve(n);
  for (std::size_t i = 0; i < n; ++i) pairs.push_back(sampler.sample(order[i], epoch));
  return tokens_per_pair(tok, std::span<const TextPair>(pairs), config);
}

}  // namespace contaccum
