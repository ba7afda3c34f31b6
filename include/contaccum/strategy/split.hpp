#pragma once
/// \file
/// \brief How a step's N_total pairs are cut into forward passes: by a row count (N_local)
///        or by a budget of real tokens per forward (as sentence-transformers'
///        `mini_batch_num_tokens`).
///
/// A token budget packs consecutive pairs (order kept, so every loss sees its rows in the
/// same order and exact strategies stay exact) while a forward holds at most
/// `max_tokens` real tokens (queries + positives + hard negatives, padding not counted)
/// and at most the row limit. Either way each forward is then trimmed of the padding
/// columns no row of it uses (as sentence-transformers pads each mini-batch to its own
/// longest row): a micro-batch of short rows does not pay for the step's longest one.

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
  /// FullBatch (Direct x Step), where 0 means the whole step in one forward. A loss unit
  /// keeps every chunk's graph, so the loss is the same; only the dropout draws follow the
  /// chunking (FullBatch with N_local: GradCache's masks, mask for mask). For the pools that
  /// score each micro-batch alone (GradAccum, ContAccum) a unit stays N_local rows and is
  /// encoded in N_local / encode_chunk forwards (it must divide N_local).
  int64_t encode_chunk = 0;
  /// Real tokens per forward; 0 = no budget (rows only). A pair larger than the budget is
  /// an error that names it.
  int64_t max_tokens = 0;
};

/// \brief The knobs FullBatch has always had (its old name).
using FullBatchConfig = MicroBatching;

namespace detail {

// Per pair: its real tokens (query, positive and m hard negatives); per row of each side:
// one past its last real column. Read back to the CPU in one transfer.
struct step_lengths {
  std::vector<int64_t> tokens;                                     // (N)
  std::vector<int64_t> query_end, positive_end, hard_negative_end;  // (N), (N), (N*m)
};

inline step_lengths lengths_of(const PairBatch& b) {
  const auto n = b.size(), m = b.negatives_per_query();
  auto real = [](const TokenBatch& t) { return t.attention_mask.ne(0); };  // (B, T)
  auto ends = [&](const TokenBatch& t) {  // (B): last real column + 1, 0 for an empty row
    const auto cols = torch::arange(1, t.attention_mask.size(1) + 1, t.attention_mask.options().dtype(torch::kLong));
    return (real(t).to(torch::kLong) * cols).amax(1);
  };
  auto count = real(b.queries).sum(1) + real(b.positives).sum(1);  // (N)
  std::vector<torch::Tensor> parts{count, ends(b.queries), ends(b.positives)};
  if (m > 0) {
    parts[0] = count + real(b.hard_negatives).sum(1).view({n, m}).sum(1);
    parts.push_back(ends(b.hard_negatives));
  }
  for (auto& t : parts) t = t.to(torch::kLong);
  const auto all = torch::cat(parts).to(torch::kCPU).contiguous();
  const int64_t* v = all.data_ptr<int64_t>();
  step_lengths out;
  out.tokens.assign(v, v + n);
  out.query_end.assign(v + n, v + 2 * n);
  out.positive_end.assign(v + 2 * n, v + 3 * n);
  if (m > 0) out.hard_negative_end.assign(v + 3 * n, v + 3 * n + n * m);
  return out;
}

// Real tokens of each pair: its query, positive and m hard negatives. (N) on the CPU.
inline std::vector<int64_t> tokens_per_pair(const PairBatch& b) { return lengths_of(b).tokens; }

// Rows [begin, end) of t (already sliced) cut to their longest real row, as trim_padding does.
inline TokenBatch trimmed(const TokenBatch& t, const std::vector<int64_t>& ends, int64_t begin, int64_t end) {
  if (!t.defined() || begin == end) return t;
  const auto width = std::max<int64_t>(1, *std::max_element(ends.begin() + begin, ends.begin() + end));
  if (width == t.input_ids.size(1)) return t;
  return {t.input_ids.slice(1, 0, width), t.attention_mask.slice(1, 0, width)};
}

}  // namespace detail

/// \brief The forward passes of a step: consecutive slices of at most `rows` pairs, and,
///        with a token budget, of at most `max_tokens` real tokens each; every slice is
///        trimmed to its longest real row.
[[nodiscard]] inline std::vector<PairBatch> split_step(const PairBatch& batch, int64_t rows, int64_t max_tokens = 0) {
  detail::require(rows > 0, "micro-batch rows must be positive, got ", rows);
  detail::require(max_tokens >= 0, "MicroBatching.max_tokens must be >= 0, got ", max_tokens);
  std::vector<PairBatch> out;
  const auto n = batch.size(), m = batch.negatives_per_query();
  const auto len = detail::lengths_of(batch);
  auto emit = [&](int64_t begin, int64_t end) {
    auto mb = batch.slice(begin, end);
    mb.queries = detail::trimmed(mb.queries, len.query_end, begin, end);
    mb.positives = detail::trimmed(mb.positives, len.positive_end, begin, end);
    if (m > 0) mb.hard_negatives = detail::trimmed(mb.hard_negatives, len.hard_negative_end, begin * m, end * m);
    out.push_back(std::move(mb));
  };
  if (max_tokens == 0) {
    for (int64_t begin = 0; begin < n; begin += rows) emit(begin, std::min(n, begin + rows));
    return out;
  }
  int64_t begin = 0, used = 0;
  for (int64_t i = 0; i < n; ++i) {
    detail::require(len.tokens[i] <= max_tokens, "MicroBatching.max_tokens = ", max_tokens, " cannot hold pair ", i,
                    " of the step: it has ", len.tokens[i], " real tokens (query, positive and hard negatives)");
    if (i > begin && (used + len.tokens[i] > max_tokens || i - begin == rows)) {
      emit(begin, i);
      begin = i;
      used = 0;
    }
    used += len.tokens[i];
  }
  if (begin < n) emit(begin, n);
  return out;
}

}  // namespace contaccum
