#pragma once
/// \file
/// \brief BiasOnly (BitFit, Ben Zaken et al. 2022): only the bias vectors train.
///
/// Every parameter whose name ends in "bias" trains: the biases of the linear layers and
/// of the LayerNorms, as the compute-optimal recipe defines its bias-only method
/// ("every parameter whose name contains bias"; Ziarko et al. 2024, arXiv 2406.04165).
/// All other parameters, embeddings included, are frozen.
/// When to use: almost never for compute-optimal training (the paper finds bias-only
/// never optimal); useful when the trained state must be tiny (34,304 numbers for
/// Pythia-70m) or as a baseline.

#include <contaccum/adapters/concepts.hpp>

#include <torch/torch.h>

#include <string_view>

namespace contaccum {

/// \brief Adapter: biases train (linear and LayerNorm), everything else is frozen. Works
///        on any ParameterModule.
///
/// \code
/// contaccum::Trainer<Model, contaccum::GradAccum<>, contaccum::BiasOnly> trainer(std::move(model), config);
/// \endcode
struct BiasOnly {
  static constexpr std::string_view name = "bias_only";

  template <ParameterModule Model>
  void prepare(Model& model) const {
    for (auto& p : module_of(model).named_parameters()) p.value().requires_grad_(p.key().ends_with("bias"));
  }
};

}  // namespace contaccum
