#pragma once
/// \file
/// \brief Similarity policies. Each is a row-wise map `embed` followed by a scaled dot
///        product: sim(a, b) = scale * <embed(a), embed(b)>. That covers the field's
///        choices and lets banked columns be scored in chunks.
///
///  - DotProduct: plain inner product (DPR; the ContAccum paper's setup).
///  - Cosine:     L2-normalised, divided by a temperature (sentence-transformers uses
///                scale 20; the compute-optimal recipe uses 40, i.e. temperature 0.025).

#include <contaccum/loss/concepts.hpp>

#include <torch/torch.h>

namespace contaccum {

struct DotProduct {
  torch::Tensor embed(const torch::Tensor& x) const { return x; }
  [[nodiscard]] double scale() const { return 1.0; }
};

struct Cosine {
  double temperature = 0.05;
  // (N, H) -> (N, H), unit rows
  torch::Tensor embed(const torch::Tensor& x) const {
    return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().p(2).dim(-1).eps(1e-12));
  }
  [[nodiscard]] double scale() const { return 1.0 / temperature; }
};

/// \brief Score matrix scale * embed(a) @ embed(b)^T: (Na, H), (Nb, H) -> (Na, Nb).
template <Similarity S>
torch::Tensor scores(const S& s, const torch::Tensor& a, const torch::Tensor& b) {
  return torch::matmul(s.embed(a), s.embed(b).t()) * s.scale();
}

}  // namespace contaccum
