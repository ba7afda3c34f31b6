#pragma once
/// \file
/// \brief Row-by-row similarities: s(a, b)_i = sim(a_i, b_i) for two (n, H) tensors -> (n).
///        The scored-pair and distillation losses (CoSENT, AnglE, MarginMSE, DistillKLDiv)
///        score a given pair rather than a query against every passage, so they take one
///        of these instead of a `Similarity`.
///
///  - PairDot:    <a_i, b_i> (sentence-transformers' `pairwise_dot_score`).
///  - PairCosine: <a_i, b_i> / (|a_i| |b_i|) (`pairwise_cos_sim`).
///  - PairAngle:  |cos(a_i, b_i) + sin(a_i, b_i)| with components j and j + H/2 paired as
///                the real and imaginary parts of a complex number (AnglE, Li & Li 2024;
///                `pairwise_angle_sim`); an odd H is padded with one zero.

#include <contaccum/detail/error.hpp>

#include <torch/torch.h>

#include <concepts>

namespace contaccum {

/// \brief s(a, b) -> (n) for a, b (n, H).
template <class S>
concept PairSimilarity = std::default_initializable<S> && requires(const S& s, const torch::Tensor& x) {
  { s(x, x) } -> std::convertible_to<torch::Tensor>;  // (n, H), (n, H) -> (n)
};

namespace detail {
inline void require_pairs(const torch::Tensor& a, const torch::Tensor& b, const char* who) {
  require(a.defined() && b.defined() && a.dim() == 2 && b.dim() == 2 && a.sizes() == b.sizes(), who,
          ": the two sides must both be (n, H) of one shape, got ", a.defined() ? a.sizes() : c10::IntArrayRef{},
          " and ", b.defined() ? b.sizes() : c10::IntArrayRef{});
}
inline torch::Tensor unit_rows(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().p(2).dim(-1).eps(1e-12));
}
}  // namespace detail

struct PairDot {
  // (n, H), (n, H) -> (n)
  torch::Tensor operator()(const torch::Tensor& a, const torch::Tensor& b) const {
    detail::require_pairs(a, b, "PairDot");
    return (a * b).sum(-1);
  }
};

struct PairCosine {
  // (n, H), (n, H) -> (n)
  torch::Tensor operator()(const torch::Tensor& a, const torch::Tensor& b) const {
    detail::require_pairs(a, b, "PairCosine");
    return (detail::unit_rows(a) * detail::unit_rows(b)).sum(-1);
  }
};

struct PairAngle {
  // (n, H), (n, H) -> (n)
  torch::Tensor operator()(const torch::Tensor& a, const torch::Tensor& b) const {
    detail::require_pairs(a, b, "PairAngle");
    auto x = a, y = b;
    if (x.size(1) % 2 != 0) {  // one zero component makes the halves equal
      x = torch::constant_pad_nd(x, {0, 1}, 0.0);
      y = torch::constant_pad_nd(y, {0, 1}, 0.0);
    }
    x = detail::unit_rows(x);  // (n, 2h)
    y = detail::unit_rows(y);
    const auto h = x.size(1) / 2;
    const auto xr = x.slice(1, 0, h), xi = x.slice(1, h);  // (n, h) real / imaginary parts
    const auto yr = y.slice(1, 0, h), yi = y.slice(1, h);
    const auto cos = (x * y).sum(-1);                  // (n)
    const auto sin = (xi * yr - xr * yi).sum(-1);      // (n)
    return (cos + sin).abs();
  }
};

}  // namespace contaccum
