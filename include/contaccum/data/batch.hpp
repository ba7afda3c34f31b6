#pragma once
/// \file
/// \brief Token batches and query/passage pair batches, and the micro-batch view that
///        splits an optimizer step's batch into K micro-batches of N_local pairs.

#include <contaccum/detail/error.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <range/v3/view/iota.hpp>
#include <range/v3/view/transform.hpp>

namespace contaccum {

/// \brief Tokenized text: ids and attention mask, both (batch, seq) int64; mask 1 = real token.
struct TokenBatch {
  torch::Tensor input_ids;       // (B, T) int64
  torch::Tensor attention_mask;  // (B, T) int64, 1 for real tokens, 0 for padding

  [[nodiscard]] bool defined() const { return input_ids.defined(); }
  [[nodiscard]] int64_t size() const { return defined() ? input_ids.size(0) : 0; }

  /// \brief Rows [begin, end): views, no copy.
  [[nodiscard]] TokenBatch slice(int64_t begin, int64_t end) const {
    if (!defined()) return {};
    return {input_ids.slice(0, begin, end), attention_mask.slice(0, begin, end)};
  }
  [[nodiscard]] TokenBatch to(const torch::Device& device) const {
    if (!defined()) return {};
    return {input_ids.to(device), attention_mask.to(device)};
  }

  /// \brief Checks dtype/shape agreement and that every row has a real token.
  void validate(const char* what) const {
    if (!defined()) return;
    detail::require(input_ids.dim() == 2, what, ".input_ids must be (batch, seq), got ", input_ids.dim(), " dims");
    detail::require(attention_mask.defined() && attention_mask.sizes() == input_ids.sizes(), what,
                    ".attention_mask must have the shape of input_ids ", input_ids.sizes());
    detail::require(input_ids.scalar_type() == torch::kLong, what, ".input_ids must be int64");
    if (size() > 0) {
      const auto empty = (attention_mask.sum(1) == 0).nonzero();
      detail::require(empty.size(0) == 0, what, " row ",
                      empty.size(0) ? empty[0][0].item<int64_t>() : -1, " has no real token (attention_mask all 0)");
    }
  }
};

/// \brief Concatenates token batches along rows, right-padding each to the longest (pad id 0).
[[nodiscard]] inline TokenBatch cat_rows(const TokenBatch& a, const TokenBatch& b) {
  if (!b.defined() || b.size() == 0) return a;
  if (!a.defined() || a.size() == 0) return b;
  const auto t = std::max(a.input_ids.size(1), b.input_ids.size(1));
  auto pad = [t](const torch::Tensor& x) {
    return x.size(1) == t ? x : torch::constant_pad_nd(x, {0, t - x.size(1)}, 0);
  };
  return {torch::cat({pad(a.input_ids), pad(b.input_ids)}),
          torch::cat({pad(a.attention_mask), pad(b.attention_mask)})};
}

/// \brief Right-padded rows cut to their longest real row: (B, T) -> (B, T'), 1 <= T' <= T.
///        Removes the padding columns no row uses (a micro-batch of short rows inside a
///        step of long ones); the rows' real tokens and positions are unchanged.
[[nodiscard]] inline TokenBatch trim_padding(const TokenBatch& b) {
  if (!b.defined() || b.size() == 0) return b;
  const auto used = b.attention_mask.ne(0).any(0).nonzero();  // (columns with a real token, 1)
  const auto t = used.size(0) == 0 ? int64_t{1} : used.max().item<int64_t>() + 1;
  if (t == b.input_ids.size(1)) return b;
  return {b.input_ids.slice(1, 0, t), b.attention_mask.slice(1, 0, t)};
}

/// \brief An optimizer step's (or micro-batch's) training pairs.
///
/// Row i of `positives` is the relevant passage of query i. `hard_negatives` holds m rows
/// per query, query-major: rows [i*m, (i+1)*m) belong to query i (m may be 0).
struct PairBatch {
  TokenBatch queries;         // (N, Tq)
  TokenBatch positives;       // (N, Tp)
  TokenBatch hard_negatives;  // (N*m, Th) or undefined

  [[nodiscard]] int64_t size() const { return queries.size(); }
  [[nodiscard]] int64_t negatives_per_query() const {
    return size() == 0 ? 0 : hard_negatives.size() / size();
  }

  /// \brief Pairs [begin, end) with their hard negatives.
  [[nodiscard]] PairBatch slice(int64_t begin, int64_t end) const {
    const auto m = negatives_per_query();
    return {queries.slice(begin, end), positives.slice(begin, end),
            m ? hard_negatives.slice(begin * m, end * m) : TokenBatch{}};
  }
  [[nodiscard]] PairBatch to(const torch::Device& device) const {
    return {queries.to(device), positives.to(device), hard_negatives.to(device)};
  }

  /// \brief Checks counts and shapes; errors name the field.
  void validate() const {
    detail::require(queries.defined() && size() > 0, "PairBatch.queries is empty");
    queries.validate("PairBatch.queries");
    positives.validate("PairBatch.positives");
    hard_negatives.validate("PairBatch.hard_negatives");
    detail::require(positives.size() == size(), "PairBatch has ", size(), " queries but ", positives.size(),
                    " positives (need one positive per query)");
    detail::require(hard_negatives.size() % size() == 0, "PairBatch has ", hard_negatives.size(),
                    " hard negatives for ", size(), " queries (need the same count m for every query)");
  }
};

/// \brief The micro-batches of a step batch: ceil(N / n_local) consecutive slices.
///
/// \code
/// for (const PairBatch& mb : micro_batches(batch, 8)) { ... }
/// \endcode
[[nodiscard]] inline auto micro_batches(const PairBatch& batch, int64_t n_local) {
  detail::require(n_local > 0, "micro_batch_size must be positive, got ", n_local);
  const auto n = batch.size();
  const auto k = (n + n_local - 1) / n_local;
  return ranges::views::iota(int64_t{0}, k) | ranges::views::transform([batch, n_local, n](int64_t j) {
           return batch.slice(j * n_local, std::min(n, (j + 1) * n_local));
         });
}

}  // namespace contaccum
