#pragma once
/// \file
/// \brief Score blocks a loss evaluation has computed anyway, handed (detached) to the
///        memory bank so its score cache need not compute them again.

#include <torch/torch.h>

namespace contaccum {

/// \brief One direction of InfoNCE (query->passage, or passage->query when symmetric).
struct DirectionScores {
  /// (n, Nd) scaled scores of the current rows against [pos_cur; pos_bank; neg_cur; neg_bank].
  torch::Tensor current;
  /// (b, n + n_neg_cur) scaled scores of the banked rows against [pos_cur; neg_cur]; undefined without banked rows.
  torch::Tensor bank_rows;
  int64_t n_pos_bank = 0;  ///< banked positive columns in `current`
  int64_t n_neg_cur = 0;   ///< current negative columns in `current`
  int64_t n_neg_bank = 0;  ///< banked negative columns in `current`
};

/// \brief Both directions of one loss evaluation.
struct ScoreRecord {
  DirectionScores forward;  ///< query -> passage
  DirectionScores reverse;  ///< passage -> query (symmetric loss only)
};

}  // namespace contaccum
