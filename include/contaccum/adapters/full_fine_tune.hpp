#pragma once
/// \file
/// \brief The Adapter concept and FullFineTune. An adapter decides which parameters train
///        (and may add its own); the trainer's optimizer sees exactly those.
/// When to use FullFineTune: every parameter trains, embeddings included (the default;
/// optimal at small compute budgets per the compute-optimal recipe).

#include <contaccum/encoders/concepts.hpp>

#include <torch/torch.h>

#include <concepts>
#include <string_view>

namespace contaccum {

/// \brief Tag an adapter policy carries as `using category = adapter_tag;`.
struct adapter_tag {};

template <class A>
concept Adapter = std::default_initializable<A> && std::same_as<typename A::category, adapter_tag> &&
                  requires { { A::name } -> std::convertible_to<std::string_view>; };

/// \brief An adapter usable with Model: prepare(model) marks the trainable parameters.
template <class A, class Model>
concept AdapterFor = Adapter<A> && requires(A& a, Model& m) { a.prepare(m); };

struct FullFineTune {
  using category = adapter_tag;
  static constexpr std::string_view name = "full";
  template <class Model>
  void prepare(Model& model) const {
    for (auto& p : model->parameters()) p.requires_grad_(true);
  }
};

}  // namespace contaccum
