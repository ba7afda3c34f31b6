#pragma once
/// \file
/// \brief InfoNCE with in-batch, hard and banked negatives; optionally symmetric.
///
/// For query rows Q and passage columns D, with the positive of row i at column i:
///   L = mean_i [ -s(Q_i, D_i) + log sum_j exp s(Q_i, D_j) ]
/// Symmetric adds the passage->query direction over the positive rows and averages
/// the two (the compute-optimal recipe). Rows and columns come in two kinds: current
/// ones (they carry gradient) and banked ones (detached, from a memory bank). Banked rows
/// x banked columns are constant, so their log-sum-exp is streamed in chunks without
/// autograd; only current rows or columns take part in backward. This is the same loss
/// the ContAccum reference computes densely, to floating-point rounding.

#include <contaccum/detail/error.hpp>
#include <contaccum/loss/concepts.hpp>
#include <contaccum/loss/loss_inputs.hpp>
#include <contaccum/loss/score_record.hpp>
#include <contaccum/loss/similarity.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <concepts>
#include <limits>

namespace contaccum {

namespace detail {

inline bool present(const torch::Tensor& t) { return t.defined() && t.size(0) > 0; }

// t * scale, without a pass over t when the scale is 1 (dot product).
inline torch::Tensor scaled(const torch::Tensor& t, double scale) { return scale == 1.0 ? t : t * scale; }

// log-sum-exp over the columns of scale * a @ b^T for each row of a, in row chunks so
// no more than ~4M scores exist at once. a (Na, H), b (Nb, H) -> (Na); -inf if Nb == 0.
inline torch::Tensor streamed_lse(const torch::Tensor& a, const torch::Tensor& b, double scale) {
  torch::NoGradGuard no_grad;
  if (!present(b)) return torch::full({a.size(0)}, -std::numeric_limits<double>::infinity(), a.options());
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / b.size(0));
  if (a.size(0) <= chunk) return torch::logsumexp(scaled(torch::matmul(a, b.t()), scale), 1);
  auto out = torch::empty({a.size(0)}, a.options());
  for (int64_t r = 0; r < a.size(0); r += chunk) {
    const auto e = std::min(a.size(0), r + chunk);
    out.slice(0, r, e).copy_(torch::logsumexp(scaled(torch::matmul(a.slice(0, r, e), b.t()), scale), 1));
  }
  return out;
}

// Sum over rows [rows_cur; rows_bank] of the InfoNCE row loss against columns
// [pos_cur; pos_bank; neg_cur; neg_bank] (all already embedded). Returns (sum, rows).
inline std::pair<torch::Tensor, int64_t> directional_sum(const torch::Tensor& rows_cur, const torch::Tensor& rows_bank,
                                                         const torch::Tensor& pos_cur, const torch::Tensor& pos_bank,
                                                         const torch::Tensor& neg_cur, const torch::Tensor& neg_bank,
                                                         double scale, const torch::Tensor& cached_lse = {},
                                                         const torch::Tensor& cached_pos = {},
                                                         DirectionScores* record = nullptr) {
  const auto n = rows_cur.size(0);
  // Current rows see every column: (n, Nd), scored block by block so banked columns are
  // neither copied nor given a gradient; labels arange(n).
  // Against a bank (many rows) the product is taken as (bank @ rows^T)^T: BLAS runs the
  // tall-skinny orientation several times faster than the short-wide one.
  std::vector<torch::Tensor> blocks{torch::matmul(rows_cur, pos_cur.t())};
  for (const auto* t : {&pos_bank, &neg_cur, &neg_bank})
    if (present(*t)) blocks.push_back(t->size(0) > 4 * n ? torch::matmul(*t, rows_cur.t()).t() : torch::matmul(rows_cur, t->t()));
  auto logits = scaled(blocks.size() == 1 ? blocks.front() : torch::cat(blocks, 1), scale);  // (n, Nd)
  auto labels = torch::arange(n, torch::TensorOptions().dtype(torch::kLong).device(rows_cur.device()));
  auto sum = torch::nn::functional::cross_entropy(
      logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  if (record) {
    record->current = logits.detach();
    record->n_pos_bank = present(pos_bank) ? pos_bank.size(0) : 0;
    record->n_neg_cur = present(neg_cur) ? neg_cur.size(0) : 0;
    record->n_neg_bank = present(neg_bank) ? neg_bank.size(0) : 0;
  }
  if (!present(rows_bank)) return {sum, n};

  // Banked rows: constant part (bank columns) streamed without grad, current part with grad.
  const auto b = rows_bank.size(0);
  auto const_lse = cached_lse.defined()
                       ? cached_lse
                       : torch::logaddexp(streamed_lse(rows_bank, pos_bank, scale),
                                          streamed_lse(rows_bank, neg_bank, scale));  // (b)
  auto cur_cols = present(neg_cur) ? torch::cat({pos_cur, neg_cur}) : pos_cur;  // (n + n*m, H)
  auto var = scaled(torch::matmul(rows_bank, cur_cols.t()), scale);             // (b, n + n*m)
  if (record) record->bank_rows = var.detach();
  auto lse = torch::logsumexp(torch::cat({const_lse.unsqueeze(1), var}, 1), 1);  // (b)
  auto pos_logit = cached_pos.defined() ? cached_pos
                                        : scaled((rows_bank * pos_bank.slice(0, 0, b)).sum(1), scale);  // (b), constant
  return {sum + (lse - pos_logit).sum(), n + b};
}

}  // namespace detail

/// \brief InfoNCE (a.k.a. NT-Xent / multiple-negatives ranking loss).
///
/// \code
/// contaccum::InfoNCE<contaccum::Cosine> loss{.similarity = {.temperature = 0.025}, .symmetric = true};
/// auto l = loss(q, d);  // q (n, H), d (n + extra, H), d[:n] positives
/// \endcode
template <Similarity S = DotProduct>
struct InfoNCE {
  S similarity{};
  bool symmetric = false;

  /// \brief q (n, H), d (Nd >= n, H) whose first n rows are the positives -> scalar.
  torch::Tensor operator()(const torch::Tensor& q, const torch::Tensor& d) const {
    const auto n = q.size(0);
    detail::require(d.size(0) >= n, "InfoNCE: ", n, " queries but only ", d.size(0), " passages");
    return (*this)(LossInputs{.queries = q, .positives = d.slice(0, 0, n), .hard_negatives = d.slice(0, n)});
  }

  /// \brief The loss over current and banked embeddings -> scalar (mean over rows).
  torch::Tensor operator()(const LossInputs& in) const {
    const auto& e = [this](const torch::Tensor& t) { return detail::present(t) ? similarity.embed(t) : t; };
    detail::require(in.queries.dim() == 2 && in.positives.dim() == 2 &&
                        in.queries.size(0) == in.positives.size(0) && in.queries.size(1) == in.positives.size(1),
                    "InfoNCE: queries ", in.queries.sizes(), " and positives ", in.positives.sizes(),
                    " must both be (n, H)");
    const auto b = detail::present(in.bank_queries) ? in.bank_queries.size(0) : 0;
    detail::require(b == 0 || (detail::present(in.bank_positives) && in.bank_positives.size(0) >= b),
                    "InfoNCE: ", b, " banked queries need as many banked positives");
    const double s = similarity.scale();
    auto q = e(in.queries), p = e(in.positives), h = e(in.hard_negatives);
    auto bq = e(in.bank_queries), bp = e(in.bank_positives), bh = e(in.bank_hard_negatives);
    detail::require(!in.bank_query_lse.defined() || in.bank_query_lse.size(0) == b,
                    "InfoNCE: bank_query_lse must have one entry per banked query");
    auto pair = in.bank_pair_scores.defined() && b > 0 ? in.bank_pair_scores.slice(0, 0, b) : torch::Tensor{};
    auto [sum, rows] = detail::directional_sum(q, bq, p, bp, h, bh, s, in.bank_query_lse, pair,
                                                in.record ? &in.record->forward : nullptr);
    auto loss = sum / static_cast<double>(rows);
    if (!symmetric) return loss;
    // passage -> query over positive rows; banked positives only where a banked query matches.
    auto bp_rows = b > 0 ? bp.slice(0, 0, b) : torch::Tensor{};
    auto bp_lse = in.bank_positive_lse.defined() && b > 0 ? in.bank_positive_lse.slice(0, 0, b) : torch::Tensor{};
    auto [sum_t, rows_t] = detail::directional_sum(p, bp_rows, q, bq, torch::Tensor{}, torch::Tensor{}, s, bp_lse,
                                                    pair, in.record ? &in.record->reverse : nullptr);
    return 0.5 * (loss + sum_t / static_cast<double>(rows_t));
  }
};

}  // namespace contaccum
