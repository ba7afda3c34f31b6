#pragma once
/// \file
/// \brief Concepts of the similarity / loss family.
///
///  - Similarity: a row map `embed` and a `scale`: sim(a, b) = scale * <embed(a), embed(b)>.
///  - ContrastiveLoss: a scalar loss over LossInputs (current and banked embeddings).
///  - SimilarityAwareLoss: a ContrastiveLoss that also says how it scores pairs
///    (`similarity`, `symmetric`), so a memory bank can keep exact score caches for it.
///    A loss without that ability still trains with a bank; the bank then streams its
///    scores and StepStats::score_cache_fallbacks says so.

#include <contaccum/loss/loss_inputs.hpp>

#include <torch/torch.h>

#include <concepts>

namespace contaccum {

/// \brief sim(a, b) = scale() * <embed(a), embed(b)>; embed is (N, H) -> (N, H).
template <class S>
concept Similarity = std::default_initializable<S> && requires(const S& s, const torch::Tensor& x) {
  { s.embed(x) } -> std::convertible_to<torch::Tensor>;  // (N, H) -> (N, H)
  { s.scale() } -> std::convertible_to<double>;
};

/// \brief A contrastive loss over current and banked embeddings: l(in) is a scalar tensor.
template <class L>
concept ContrastiveLoss = std::copy_constructible<L> && requires(const L& l, const LossInputs& in) {
  { l(in) } -> std::convertible_to<torch::Tensor>;  // scalar
};

/// \brief A ContrastiveLoss that names its Similarity and whether it is symmetric
///        (passage -> query added), which is what a score-caching bank needs to know.
template <class L>
concept SimilarityAwareLoss = ContrastiveLoss<L> && requires(const L& l) {
  requires Similarity<std::remove_cvref_t<decltype(l.similarity)>>;
  { l.symmetric } -> std::convertible_to<bool>;
};

}  // namespace contaccum
