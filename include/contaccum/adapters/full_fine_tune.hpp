#pragma once
/// \file
/// \brief FullFineTune: every parameter trains, embeddings included (the Trainer's default).
///        The adapter family's concepts are in adapters/concepts.hpp.
/// When to use: the default; optimal at small compute budgets per the compute-optimal recipe.

#include <contaccum/adapters/concepts.hpp>

#include <torch/torch.h>

#include <string_view>

namespace contaccum {

/// \brief Adapter: every parameter of the model trains. Works on any ParameterModule.
///
/// \code
/// contaccum::Trainer<Model, contaccum::GradAccum<>> trainer(std::move(model), config);  // FullFineTune by default
/// \endcode
struct FullFineTune {
  static constexpr std::string_view name = "full";

  template <ParameterModule Model>
  void prepare(Model& model) const {
    for (auto& p : module_of(model).parameters()) p.requires_grad_(true);
  }
};

}  // namespace contaccum
