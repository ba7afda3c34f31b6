#pragma once
/// \file
/// \brief The pooling-reader concept: hidden states and mask -> one vector per sequence.

#include <torch/torch.h>

#include <concepts>

namespace contaccum {

/// \brief hidden (B, T, H), mask (B, T) -> embeddings (B, H).
template <class P>
concept Pooler = std::default_initializable<P> &&
                 requires(const P& p, const torch::Tensor& hidden, const torch::Tensor& mask) {
                   { p(hidden, mask) } -> std::convertible_to<torch::Tensor>;
                 };

}  // namespace contaccum
