#pragma once
/// \file
/// \brief The Collective concept: what the Trainer's distributed slot must do.
///
/// The Trainer owns one collective. Every loss evaluation's current embeddings pass
/// through `exchange` (a multi-process policy gathers them across ranks, with gradient)
/// before a negative pool adds banked rows; `reduce_gradients` is called once per
/// optimizer step, after the last backward and before the gradient norm and the clip.
/// A collective that spans processes refines it (MultiProcessCollective): `begin_step`
/// tells it the step (for its messages) and `any_rank` is an agreement (a stop request on
/// one rank stops every rank after the same step, in fit()).

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

/// \brief A collective over several processes: it also learns each step's number and can
///        agree on a flag across ranks (SingleProcess and C10dCollective model it).
template <class C>
concept MultiProcessCollective = Collective<C> && requires(const C& c, int64_t step, bool flag) {
  c.begin_step(step);
  { c.any_rank(flag) } -> std::convertible_to<bool>;
};

}  // namespace contaccum
