#pragma once
// A user-defined adapter, declared outside namespace contaccum as a user's own would be:
// only the LayerNorms' weights and biases train. It provides what the library asks of an
// adapter and nothing more: a name and a constrained prepare (so AdapterFor is honest), and
// the cost models' customisation found by argument-dependent lookup (mark_trainable,
// flop_formula; compute/adapter_cost.hpp). The tests train it with the Trainer, cost it
// against built models, and run it as a method of the planner's grid.

#include <contaccum/adapters/concepts.hpp>
#include <contaccum/compute/adapter_cost.hpp>

#include <torch/torch.h>

#include <string_view>

namespace user_adapters {

struct LayerNormOnly {
  static constexpr std::string_view name = "layer_norm_only";

  template <contaccum::ParameterModule M>
  void prepare(M& model) const {
    auto& root = contaccum::module_of(model);
    for (auto& p : root.parameters()) p.requires_grad_(false);
    for (const auto& m : root.named_modules("", /*include_self=*/false))
      if (dynamic_cast<const torch::nn::LayerNormImpl*>(m.value().get()) != nullptr)
        for (auto& p : m.value()->parameters()) p.requires_grad_(true);
  }
};

// What prepare trains, on a shape: the LayerNorms' weights and biases.
inline void mark_trainable(const LayerNormOnly&, contaccum::ParameterInventory& inventory) {
  for (auto& p : inventory.params)
    p.trainable = p.role == contaccum::ParameterRole::norm_weight || p.role == contaccum::ParameterRole::norm_bias;
}

// Activation gradients everywhere, weight gradients for the few trainable: 4N + 2N_t.
constexpr contaccum::FlopFormula flop_formula(const LayerNormOnly&) { return contaccum::FlopFormula::frozen_base; }

}  // namespace user_adapters
