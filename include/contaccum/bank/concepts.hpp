#pragma once
/// \file
/// \brief The Bank concept: what ContAccum needs from a memory bank.

#include <torch/torch.h>

#include <concepts>

namespace contaccum {

template <class B>
concept Bank = requires(B b, const B& cb, const torch::Tensor& x) {
  typename B::config_type;
  requires std::constructible_from<B, typename B::config_type>;
  b.enqueue(x, x, x);
  { cb.queries() } -> std::convertible_to<torch::Tensor>;
  { cb.positives() } -> std::convertible_to<torch::Tensor>;
  { cb.hard_negatives() } -> std::convertible_to<torch::Tensor>;
  b.begin_step();
  b.commit_step();
  b.rollback_step();
  b.clear();
};

}  // namespace contaccum
