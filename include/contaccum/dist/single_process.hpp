#pragma once
/// \file
/// \brief The Collective seam and its single-process policy.
///
/// Strategies hand every loss evaluation's embeddings to `collective.exchange(...)`
/// before computing the loss, and call `collective.reduce_gradients(...)` once per
/// optimizer step. A c10d policy (cross-rank all-gather with gradient, all-reduce of
/// gradients) plugs in here without touching the strategies.

#include <contaccum/loss/info_nce.hpp>

#include <torch/torch.h>

#include <concepts>
#include <vector>

namespace contaccum {

template <class C>
concept Collective = std::default_initializable<C> && requires(const C& c, const LossInputs& in,
                                                               std::vector<torch::Tensor>& params) {
  { c.exchange(in) } -> std::convertible_to<LossInputs>;
  c.reduce_gradients(params);
  { c.world_size() } -> std::convertible_to<int64_t>;
  { c.rank() } -> std::convertible_to<int64_t>;
};

/// \brief One process: nothing to exchange, nothing to reduce.
struct SingleProcess {
  LossInputs exchange(const LossInputs& in) const { return in; }
  void reduce_gradients(std::vector<torch::Tensor>& /*params*/) const {}
  [[nodiscard]] int64_t world_size() const { return 1; }
  [[nodiscard]] int64_t rank() const { return 0; }
};

}  // namespace contaccum
