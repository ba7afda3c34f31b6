#pragma once
/// \file
/// \brief Max pooling over real tokens (padding never wins), per hidden dimension.
/// When to use: sentence-transformers models trained with max pooling.

#include <torch/torch.h>

#include <limits>

namespace contaccum {

struct MaxPooling {
  // hidden (B, T, H), mask (B, T) -> (B, H)
  torch::Tensor operator()(const torch::Tensor& hidden, const torch::Tensor& mask) const {
    auto pad = (mask == 0).unsqueeze(-1);  // (B, T, 1)
    return hidden.masked_fill(pad, -std::numeric_limits<double>::infinity()).amax(1);
  }
};

}  // namespace contaccum
