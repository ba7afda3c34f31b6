#pragma once
/// \file
/// \brief How a step's N_total pairs are cut into forward passes: by a row count (N_local)
///        or by a budget of real tokens per forward (as sentence-transformers'
///        `mini_batch_num_tokens`).
///
/// A token budget packs consecutive pairs (order kept, so every loss sees its rows in the
/// same order and exact strategies stay exact) while a forward holds at most
/// `max_tokens` real tokens (queries + positives + hard negatives, padding not counted)
/// and at most the row limit; each forward is then trimmed of the padding columns no row
/// of it uses, which is where the saving comes from on data whose lengths vary.

#include <contaccum/data/batch.hpp>
#include <contaccum/detail/error.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace contaccum {

/// \brief How a strategy cuts a step into forward passes.
struct MicroBatching {
  /// Rows (pairs) per forward; 0 = TrainerConfig::micro_batch_size (N_local), except for
  /// FullBatch (Direct x Step), where 0 means the whole step in one forward. FullBatch
  /// keeps every chunk's graph, so the gradient is the full-batch one; only the dropout
  /// draws follow the chunking (set it to N_local to compare with GradCache mask for mask).
  int64_t encode_chunk = 0;
  /// Real tokens per forward; 0 = no budget (rows only). A pair larger than the budget is
  /// an error that names it.
  int64_t max_tokens = 0;
};

/// \brief The knobs FullBatch has always had (its old name).
using FullBatchConfig = MicroBatching;

namespace detail {

// Real tokens of each pair: its query, positive and m hard negatives. (N) on the CPU.
inline std::vector<int64_t> tokens_per_pair(const PairBatch& b) {
  const auto n = b.size(), m = b.negatives_per_query();
  auto count = b.queries.attention_mask.ne(0).sum(1) + b.positives.attention_mask.ne(0).sum(1);  // (N)
  if (m > 0) count = count + b.hard_negatives.attention_mask.ne(0).sum(1).view({n, m}).sum(1);
  count = count.to(torch::kCPU, torch::kLong).contiguous();
  return {count.data_ptr<int64_t>(), count.data_ptr<int64_t>() + n};
}

}  // namespace detail

/// \brief The forward passes of a step: consecutive slices of at most `rows` pairs, and,
///        with a token budget, of at most `max_tokens` real tokens each (then trimmed).
[[nodiscard]] inline std::vector<PairBatch> split_step(const PairBatch& batch, int64_t rows, int64_t max_tokens = 0) {
  detail::require(rows > 0, "micro-batch rows must be positive, got ", rows);
  detail::require(max_tokens >= 0, "MicroBatching.max_tokens must be >= 0, got ", max_tokens);
  std::vector<PairBatch> out;
  const auto n = batch.size();
  if (max_tokens == 0) {
    for (int64_t b = 0; b < n; b += rows) out.push_back(batch.slice(b, std::min(n, b + rows)));
    return out;
  }
  const auto tokens = detail::tokens_per_pair(batch);
  int64_t begin = 0, used = 0;
  for (int64_t i = 0; i < n; ++i) {
    detail::require(tokens[i] <= max_tokens, "MicroBatching.max_tokens = ", max_tokens, " cannot hold pair ", i,
                    " of the step: it has ", tokens[i], " real tokens (query, positive and hard negatives)");
    if (i > begin && (used + tokens[i] > max_tokens || i - begin == rows)) {
      out.push_back(batch.slice(begin, i));
      begin = i;
      used = 0;
    }
    used += tokens[i];
  }
  if (begin < n) out.push_back(batch.slice(begin, n));
  for (auto& mb : out) {
    mb.queries = trim_padding(mb.queries);
    mb.positives = trim_padding(mb.positives);
    mb.hard_negatives = trim_padding(mb.hard_negatives);
  }
  return out;
}

}  // namespace contaccum
