#pragma once
/// \file
/// \brief SingleProcess: the Collective of a one-process run (the Trainer's default).
/// When to use: always, until a run spans several processes.

#include <contaccum/dist/concepts.hpp>
#include <contaccum/loss/loss_inputs.hpp>

#include <torch/torch.h>

#include <vector>

namespace contaccum {

/// \brief One process: nothing to exchange, nothing to reduce.
struct SingleProcess {
  LossInputs exchange(const LossInputs& in) const { return in; }
  void reduce_gradients(std::vector<torch::Tensor>& /*params*/) const {}
  void begin_step(int64_t /*step*/) const {}
  [[nodiscard]] bool any_rank(bool flag) const { return flag; }
  [[nodiscard]] int64_t world_size() const { return 1; }
  [[nodiscard]] int64_t rank() const { return 0; }
};
static_assert(MultiProcessCollective<SingleProcess>);

}  // namespace contaccum
