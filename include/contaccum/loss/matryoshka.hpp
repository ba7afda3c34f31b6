#pragma once
/// \file
/// \brief Matryoshka representation learning (Kusupati et al., 2022) over any
///        contrastive loss: the loss is evaluated on the first d components of every
///        embedding for each d of `dims`, and the weighted sum is trained, so the leading
///        components of the embedding alone make a usable, smaller embedding.
///
///   L = sum_k w_k * inner(truncate(in, d_k))
///
/// `truncate` keeps columns [0, d) of every current and banked tensor and, as
/// sentence-transformers' MatryoshkaLoss does, L2-normalises the rows again (`normalize`;
/// with a Cosine similarity that changes nothing but rounding). Because the bank holds
/// the full embeddings, every strategy composes with it: GradCache differentiates the
/// whole sum through its cached embeddings, and ContAccum's banked rows are truncated
/// like the current ones. The bank's score caches are computed for the full dimension,
/// so this loss does not offer them (it is not a SimilarityAwareLoss): a bank scores its
/// rows by streaming, exactly.
///
/// \code
/// contaccum::Matryoshka<contaccum::InfoNCE<contaccum::Cosine>> loss{
///     .inner = {.similarity = {.temperature = 0.05}}, .dims = {384, 256, 128, 64}};
/// \endcode

#include <contaccum/detail/error.hpp>
#include <contaccum/loss/concepts.hpp>
#include <contaccum/loss/loss_inputs.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace contaccum {

/// \brief The weighted sum of `inner` over nested prefixes of the embeddings.
template <ContrastiveLoss L>
struct Matryoshka {
  L inner{};
  std::vector<std::int64_t> dims;  ///< prefix sizes, e.g. {768, 512, 256, 128, 64}; each <= H
  std::vector<double> weights;     ///< one per dim; empty: 1 each (sentence-transformers' default)
  bool normalize = true;           ///< L2-normalise each truncated row (sentence-transformers does)

  /// \brief The sum of the weights: the loss at chance level is this many times the inner
  ///        loss's (the Trainer's collapse check divides by it).
  [[nodiscard]] double chance_terms() const {
    double w = 0;
    for (std::size_t k = 0; k < dims.size(); ++k) w += weights.empty() ? 1.0 : weights[k];
    return w > 0 ? w : 1.0;
  }

  /// \brief The rows of t cut to their first d components (and renormalised).
  [[nodiscard]] torch::Tensor truncate(const torch::Tensor& t, std::int64_t d) const {
    if (!t.defined() || t.size(0) == 0) return t;
    auto cut = t.slice(1, 0, d);  // (N, d)
    if (!normalize) return cut;
    return torch::nn::functional::normalize(cut, torch::nn::functional::NormalizeFuncOptions().p(2).dim(-1).eps(1e-12));
  }

  /// \brief The loss over current and banked embeddings -> scalar.
  torch::Tensor operator()(const LossInputs& in) const {
    detail::require(!dims.empty(), "Matryoshka: no dims given");
    detail::require(weights.empty() || weights.size() == dims.size(), "Matryoshka: ", weights.size(),
                    " weights for ", dims.size(), " dims");
    detail::require(in.queries.defined() && in.queries.dim() == 2, "Matryoshka: queries must be (n, H)");
    const auto h = in.queries.size(1);
    torch::Tensor total;
    for (std::size_t k = 0; k < dims.size(); ++k) {
      const auto d = dims[k];
      detail::require(d >= 1 && d <= h, "Matryoshka: dim ", d, " (dims[", k, "]) must lie in [1, ", h,
                      "], the embedding's size");
      // score caches and the record describe the full dimension: not passed on
      const LossInputs cut{.queries = truncate(in.queries, d),
                           .positives = truncate(in.positives, d),
                           .hard_negatives = truncate(in.hard_negatives, d),
                           .bank_queries = truncate(in.bank_queries, d),
                           .bank_positives = truncate(in.bank_positives, d),
                           .bank_hard_negatives = truncate(in.bank_hard_negatives, d)};
      auto l = inner(cut);
      if (!weights.empty()) l = l * weights[k];
      total = total.defined() ? total + l : l;
    }
    return total;
  }

  /// \brief q (n, H), d (Nd >= n, H) whose first n rows are the positives -> scalar.
  torch::Tensor operator()(const torch::Tensor& q, const torch::Tensor& d) const {
    const auto n = q.size(0);
    detail::require(d.size(0) >= n, "Matryoshka: ", n, " queries but only ", d.size(0), " passages");
    return (*this)(LossInputs{.queries = q, .positives = d.slice(0, 0, n), .hard_negatives = d.slice(0, n)});
  }
};

}  // namespace contaccum
