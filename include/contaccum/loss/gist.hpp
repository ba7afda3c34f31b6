#pragma once
/// \file
/// \brief GISTEmbed (Solatorio, 2024): in-batch InfoNCE whose negatives are filtered by a
///        frozen guide model. A candidate the guide scores above the query's own positive
///        (less a margin) is taken for an unlabelled positive and left out of the softmax,
///        which removes the false negatives that in-batch training otherwise pushes away.
///
/// For query i with guide threshold g_i = cos_guide(q_i, p_i), a candidate c is dropped when
///   cos_guide(q_i, c) > g_i - margin          (Absolute)
///   cos_guide(q_i, c) > g_i - |g_i| * margin  (Relative)
/// except query i's own positive. The candidates are the batch's positives, and (as options,
/// on by default) the other queries and the other positives scored from p_i's side, and the
/// hard negatives; self-similarities are always dropped by the rule (cos = 1). The scores
/// are cosines over `temperature` (0.01). This is sentence-transformers' `GISTEmbedLoss`
/// with any number of hard negatives per query (it takes one), checked against it in the
/// test suite.
///
/// \code
/// contaccum::GISTEmbed gist{.margin = 0.0};
/// torch::Tensor loss;
/// {   // the guide is frozen
///   torch::NoGradGuard off;
///   guide_rows = LossInputs{guide(q_text), guide(p_text), guide(h_text)};
/// }
/// loss = gist(LossInputs{model(q_text), model(p_text), model(h_text)}, guide_rows);
/// \endcode

#include <contaccum/detail/error.hpp>
#include <contaccum/loss/loss_inputs.hpp>
#include <contaccum/loss/pair_similarity.hpp>

#include <torch/torch.h>

#include <limits>

namespace contaccum {

struct GISTEmbed {
  enum class Margin { Absolute, Relative };
  double temperature = 0.01;
  Margin margin_strategy = Margin::Absolute;
  double margin = 0.0;
  bool contrast_anchors = true;    ///< other queries are candidates too
  bool contrast_positives = true;  ///< p_i is contrasted with the other positives

  /// \brief student and guide embeddings of the same rows (queries (n, H), positives (n, H),
  ///        hard_negatives (n*m, H) or empty; widths may differ between the two) -> scalar.
  torch::Tensor operator()(const LossInputs& student, const LossInputs& guide) const {
    detail::require(rows_of(student.bank_queries) + rows_of(student.bank_positives) +
                            rows_of(student.bank_hard_negatives) ==
                        0,
                    "GISTEmbed: banked rows have no guide embeddings; use it without a memory bank");
    detail::require(temperature > 0, "GISTEmbed: temperature must be positive, got ", temperature);
    detail::require_pairs(student.queries, student.positives, "GISTEmbed (student)");
    detail::require_pairs(guide.queries, guide.positives, "GISTEmbed (guide)");
    const auto n = student.queries.size(0);
    detail::require(guide.queries.size(0) == n, "GISTEmbed: ", n, " student queries but ", guide.queries.size(0),
                    " guide queries");
    detail::require(rows_of(student.hard_negatives) == rows_of(guide.hard_negatives), "GISTEmbed: ",
                    rows_of(student.hard_negatives), " student hard negatives but ", rows_of(guide.hard_negatives),
                    " guide hard negatives");

    const auto q = detail::unit_rows(student.queries), p = detail::unit_rows(student.positives);
    const auto gq = detail::unit_rows(guide.queries.detach()), gp = detail::unit_rows(guide.positives.detach());
    const auto gap = torch::matmul(gq, gp.t());  // (n, n) guide query x positive
    const auto threshold = gap.diagonal().unsqueeze(1);  // (n, 1)
    const auto bound = margin_strategy == Margin::Absolute ? threshold - margin : threshold - threshold.abs() * margin;
    const auto minus_inf = -std::numeric_limits<double>::infinity();
    // student scores of rows x candidates with the guide's suspected positives removed
    auto filtered = [&](const torch::Tensor& rows, const torch::Tensor& cols, const torch::Tensor& guide_rows,
                        const torch::Tensor& guide_cols, bool keep_diagonal) {
      auto drop = torch::matmul(guide_rows, guide_cols.t()) > bound;  // (n, c)
      if (keep_diagonal) drop = drop.logical_and(torch::eye(n, drop.options()).logical_not());
      return torch::matmul(rows, cols.t()).masked_fill(drop, minus_inf);  // (n, c)
    };
    std::vector<torch::Tensor> blocks{filtered(q, p, gq, gp, /*keep_diagonal=*/true)};  // (n, n)
    if (contrast_anchors) blocks.push_back(filtered(q, q, gq, gq, false));             // (n, n)
    if (contrast_positives) blocks.push_back(filtered(p, p, gp, gp, false));           // (n, n)
    if (rows_of(student.hard_negatives) > 0)
      blocks.push_back(filtered(q, detail::unit_rows(student.hard_negatives), gq,
                                detail::unit_rows(guide.hard_negatives.detach()), false));  // (n, n*m)
    const auto scores = torch::cat(blocks, 1) / temperature;                           // (n, C)
    return torch::nn::functional::cross_entropy(scores, torch::arange(n, torch::TensorOptions(torch::kLong).device(scores.device())));
  }
};

}  // namespace contaccum
