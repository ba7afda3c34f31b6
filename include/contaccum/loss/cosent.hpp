#pragma once
/// \file
/// \brief CoSENT (Su, 2022; Huang et al., TASLP 2024) and AnglE (Li & Li, ACL 2024): ranking
///        losses over scored pairs. For pairs (a_i, b_i) with gold labels y_i and scores
///        s_i = scale * sim(a_i, b_i),
///
///   L = log(1 + sum_{(i, j): y_i < y_j} exp(s_i - s_j)),
///
/// i.e. every pair ranked above another by the labels should also score above it. Only the
/// order of the labels matters, so STS scores (0-5), cosine targets (-1..1) or 0/1 relevance
/// all work. AnglE is the same loss with PairAngle, whose gradient does not vanish where the
/// cosine saturates. The defaults are sentence-transformers' `CoSENTLoss` / `AnglELoss`
/// (scale 20, pairwise cosine / angle); both are checked against them in the test suite.
///
/// The sum runs over all label-ordered pairs without forming the n x n matrix: with the
/// pairs sorted by label, the pairs above i are a suffix, so the inner sum is a reversed
/// log-cumulative-sum-exp of -s (O(n log n) time, O(n) memory).
///
/// The n-tuple form `l(LossInputs{q, p, h})` (which makes these losses ContrastiveLosses, so
/// FullBatch and GradCache train them) scores each query against its positive with label
/// y_i (1 when not given) and against each of its m hard negatives with 1 - y_i, as
/// sentence-transformers' AnglELoss does for (anchor, positive, negative...) columns.
/// Banked rows carry no labels: a bank is refused.
///
/// \code
/// contaccum::CoSENT<> cosent;                           // cosine, scale 20
/// auto loss = cosent(embed(a), embed(b), gold_scores);  // (n, H), (n, H), (n)
/// contaccum::AnglE angle;                               // CoSENT<PairAngle>
/// \endcode

#include <contaccum/detail/error.hpp>
#include <contaccum/loss/loss_inputs.hpp>
#include <contaccum/loss/pair_similarity.hpp>

#include <torch/torch.h>

#include <limits>

namespace contaccum {

template <PairSimilarity Sim = PairCosine>
struct CoSENT {
  double scale = 20.0;  ///< inverse temperature of the scores
  Sim similarity{};

  /// \brief a (n, H), b (n, H), labels (n) of any real or bool dtype -> scalar.
  torch::Tensor operator()(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& labels) const {
    detail::require_pairs(a, b, "CoSENT");
    detail::require(labels.defined() && labels.numel() == a.size(0), "CoSENT: ", a.size(0),
                    " pairs need one label each, got ", labels.defined() ? labels.numel() : 0, " labels");
    auto s = similarity(a, b);  // (n)
    if (s.scalar_type() == torch::kHalf || s.scalar_type() == torch::kBFloat16) s = s.to(torch::kFloat);
    s = s * scale;
    auto y = labels.reshape({-1}).to(s.device());
    if (y.scalar_type() == torch::kBool) y = y.to(torch::kInt);
    detail::require(!y.is_floating_point() || torch::isfinite(y).all().template item<bool>(), "CoSENT: a label is not finite");
    const auto [sorted, order] = y.sort();  // ascending labels
    s = s.index_select(0, order);           // (n), in label order
    // first index whose label is strictly greater, per pair (ties are not ordered)
    const auto above = torch::searchsorted(sorted, sorted, /*out_int32=*/false, /*right=*/true);  // (n)
    // suffix[k] = log sum_{j >= k} exp(-s_j); suffix[n] = -inf (no pair above)
    auto suffix = torch::logcumsumexp(-s.flip({0}), 0).flip({0});
    suffix = torch::cat({suffix, torch::full({1}, -std::numeric_limits<double>::infinity(), s.options())});
    const auto terms = s + suffix.index_select(0, above);  // (n): log sum_{y_j > y_i} exp(s_i - s_j)
    return torch::logsumexp(torch::cat({torch::zeros({1}, s.options()), terms}), 0);
  }

  /// \brief The n-tuple form: q (n, H), p (n, H), hard_negatives (n*m, H) query-major;
  ///        labels (n) for the positives (ones when undefined) -> scalar.
  torch::Tensor operator()(const LossInputs& in, const torch::Tensor& labels = {}) const {
    detail::require(rows_of(in.bank_queries) == 0 && rows_of(in.bank_positives) == 0 &&
                        rows_of(in.bank_hard_negatives) == 0,
                    "CoSENT: banked rows carry no labels; use it without a memory bank");
    detail::require_pairs(in.queries, in.positives, "CoSENT");
    const auto n = in.queries.size(0);
    const auto y = labels.defined() ? labels.reshape({-1}).to(in.queries.scalar_type())
                                    : torch::ones({n}, in.queries.options());
    detail::require(y.numel() == n, "CoSENT: ", n, " queries need one label each, got ", y.numel(), " labels");
    const auto hn = rows_of(in.hard_negatives);
    if (hn == 0) return (*this)(in.queries, in.positives, y);
    detail::require(hn % n == 0, "CoSENT: ", hn, " hard negatives are not a multiple of the ", n, " queries");
    const auto m = hn / n;
    // columns [p; h_{.,0}; ...; h_{.,m-1}] against the queries tiled m + 1 times
    const auto negatives = in.hard_negatives.view({n, m, -1}).transpose(0, 1).reshape({n * m, -1});  // (m*n, H)
    return (*this)(in.queries.repeat({m + 1, 1}), torch::cat({in.positives, negatives}),
                   torch::cat({y, (1 - y).repeat({m})}));
  }
};

/// \brief AnglE: CoSENT with the angle similarity (sentence-transformers' AnglELoss).
using AnglE = CoSENT<PairAngle>;

}  // namespace contaccum
