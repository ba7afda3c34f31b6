#pragma once
/// \file
/// \brief LossInputs: the embeddings one loss evaluation sees (current and banked).

#include <contaccum/loss/score_record.hpp>

#include <torch/torch.h>

namespace contaccum {

/// \brief Embeddings for one loss evaluation. `bank_*` tensors are detached.
///
/// Row order: [rows_cur; rows_bank]. Column order: [pos_cur; pos_bank; neg_cur; neg_bank].
/// Row i's positive is column i, so bank_positives must hold at least bank_queries' count.
struct LossInputs {
  torch::Tensor queries;              // (n, H)   current queries
  torch::Tensor positives;            // (n, H)   their positives
  torch::Tensor hard_negatives;       // (n*m, H) current hard negatives (may be empty)
  torch::Tensor bank_queries;         // (b, H)   banked queries (may be empty)
  torch::Tensor bank_positives;       // (b', H)  banked positives, b' >= b, first b match bank_queries
  torch::Tensor bank_hard_negatives;  // (c, H)   banked hard negatives (may be empty)
  // Optional, from the bank's score cache: per banked query, log-sum-exp of its scores
  // over all banked passages (b); per banked positive, over all banked queries (b).
  // When absent they are computed here by streaming.
  torch::Tensor bank_query_lse;
  torch::Tensor bank_positive_lse;
  // Optional: the score of banked pair i, s(bank_queries[i], bank_positives[i]), (b).
  torch::Tensor bank_pair_scores;
  // Optional output: where to leave the detached score blocks for the bank's cache.
  ScoreRecord* record = nullptr;
};

/// \brief Rows of t, 0 when undefined.
[[nodiscard]] inline int64_t rows_of(const torch::Tensor& t) { return t.defined() ? t.size(0) : 0; }

/// \brief Passages each query of `in` is scored against, minus its positive: every column
///        of the loss's score matrix but one.
[[nodiscard]] inline double negatives_per_query(const LossInputs& in) {
  return static_cast<double>(rows_of(in.positives) - 1 + rows_of(in.bank_positives) + rows_of(in.hard_negatives) +
                             rows_of(in.bank_hard_negatives));
}

}  // namespace contaccum
