#pragma once
/// \file
/// \brief The Collective concept: what the Trainer's distributed slot must do.
///
/// The Trainer owns one collective. Every loss evaluation's current embeddings pass
/// through `exchange` (a multi-process policy gathers them across ranks, with gradient)
/// before a negative pool adds banked rows; `reduce_gradients` is called once per
/// optimizer step, after the last backward and before the gradient norm and the clip.

#include <contaccum/loss/loss_inputs.hpp>

#include <torch/torch.h>

#include <concepts>
#include <cstdint>
#include <vector>

namespace contaccum {

template <class C>
concept Collective = requires(const C& c, const LossInputs& in, std::vector<torch::Tensor>& params) {
  { c.exchange(in) } -> std::convertible_to<LossInputs>;
  c.reduce_gradients(params);
  { c.world_size() } -> std::convertible_to<int64_t>;
  { c.rank() } -> std::convertible_to<int64_t>;
};

}  // namespace contaccum
