#pragma once
/// \file
/// \brief Normalized<P>: any pooling reader followed by L2 normalisation of each embedding.
/// When to use: models whose embeddings are compared by cosine (sentence-transformers'
/// Normalize module; the compute-optimal recipe).
///
/// \code
/// using Model = contaccum::DualEncoder<contaccum::Bert, contaccum::Normalized<contaccum::MeanPooling>>;
/// \endcode

#include <contaccum/pooling/concepts.hpp>

#include <torch/torch.h>

namespace contaccum {

template <Pooler P>
struct Normalized {
  P pooler{};
  // hidden (B, T, H), mask (B, T) -> unit rows (B, H)
  torch::Tensor operator()(const torch::Tensor& hidden, const torch::Tensor& mask) const {
    return torch::nn::functional::normalize(pooler(hidden, mask),
                                            torch::nn::functional::NormalizeFuncOptions().p(2).dim(-1).eps(1e-12));
  }
};

}  // namespace contaccum
