#pragma once
/// \file
/// \brief Mean pooling over real tokens only (padding excluded from sum and count).
/// When to use: sentence-transformers models and the compute-optimal recipe (Pythia).

#include <torch/torch.h>

namespace contaccum {

struct MeanPooling {
  // hidden (B, T, H), mask (B, T) -> (B, H)
  torch::Tensor operator()(const torch::Tensor& hidden, const torch::Tensor& mask) const {
    auto m = mask.to(hidden.scalar_type()).unsqueeze(-1);      // (B, T, 1)
    auto count = m.sum(1).clamp_min(1.0);                      // (B, 1)
    return (hidden * m).sum(1) / count;                        // (B, H)
  }
};

}  // namespace contaccum
