#pragma once
/// \file
/// \brief Last-token pooling: the hidden state of each sequence's last real token.
/// When to use: decoder-only (causal) encoders, whose last token has seen the whole text.
/// Correct for right padding and for left padding: the position is found from the mask.

#include <torch/torch.h>

namespace contaccum {

struct LastTokenPooling {
  // hidden (B, T, H), mask (B, T) -> (B, H)
  torch::Tensor operator()(const torch::Tensor& hidden, const torch::Tensor& mask) const {
    const auto t = hidden.size(1);
    auto positions = torch::arange(t, mask.options().dtype(torch::kLong)).unsqueeze(0);  // (1, T)
    auto last = (positions * (mask != 0).to(torch::kLong)).amax(1);                        // (B)
    auto index = last.view({-1, 1, 1}).expand({hidden.size(0), 1, hidden.size(2)});       // (B, 1, H)
    return hidden.gather(1, index).squeeze(1);
  }
};

}  // namespace contaccum
