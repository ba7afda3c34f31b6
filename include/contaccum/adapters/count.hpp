#pragma once
/// \file
/// \brief Parameter counts: how many numbers an adapter leaves trainable, and in total.
///        A tensor shared between towers (SharedTower) counts once.

#include <contaccum/adapters/detail/modules.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <unordered_set>

namespace contaccum {
namespace detail {

template <class M, class Keep>
[[nodiscard]] int64_t count_parameters_if(M& model, Keep keep) {
  std::unordered_set<const void*> seen;
  int64_t n = 0;
  for (const auto& p : module_of(model).parameters()) {
    if (!keep(p) || !seen.insert(p.unsafeGetTensorImpl()).second) continue;
    n += p.numel();
  }
  return n;
}

}  // namespace detail

/// \brief Number of trainable (requires_grad) scalars in `model` (a module or holder).
///
/// \code
/// contaccum::GptNeox lm(pythia_70m_config);
/// contaccum::LoRA{.rank = 8, .target_modules = "query_key_value|dense|dense_h_to_4h|dense_4h_to_h"}.prepare(lm);
/// auto n = contaccum::count_trainable(lm);  // 393216 = 6 layers x 8192 x r
/// \endcode
template <class M>
[[nodiscard]] int64_t count_trainable(M& model) {
  return detail::count_parameters_if(model, [](const torch::Tensor& p) { return p.requires_grad(); });
}

/// \brief Number of scalars in all parameters of `model`, trainable or not.
template <class M>
[[nodiscard]] int64_t count_parameters(M& model) {
  return detail::count_parameters_if(model, [](const torch::Tensor&) { return true; });
}

}  // namespace contaccum
