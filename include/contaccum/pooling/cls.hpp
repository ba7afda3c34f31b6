#pragma once
/// \file
/// \brief CLS pooling: the first token's hidden state (BERT/DPR convention).
/// When to use: BERT-family models trained with a [CLS] readout (DPR, the ContAccum paper).

#include <torch/torch.h>

namespace contaccum {

struct ClsPooling {
  // hidden (B, T, H), mask (B, T) -> (B, H)
  torch::Tensor operator()(const torch::Tensor& hidden, const torch::Tensor& /*mask*/) const {
    return hidden.select(1, 0);
  }
};

}  // namespace contaccum
