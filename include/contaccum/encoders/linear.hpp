#pragma once
/// \file
/// \brief AdaptableLinear: the linear layer the encoders are built from. It is
///        torch::nn::Linear (same parameters, names, initialisation and options) plus an
///        optional side branch whose output is added to the layer's: the hook through which
///        an adapter such as LoRA changes a layer without renaming its weights.
///
/// LibTorch modules call their children statically (`query(x)`), so a child cannot be
/// swapped for a wrapper after construction as PEFT swaps PyTorch modules. Instead the
/// encoders' linear layers carry the slot and an adapter fills it; an empty slot costs one
/// null-pointer test per call. The branch's own modules are registered on the linear layer
/// by whoever installs it, so its parameters get names beside `weight` and `bias`
/// (PEFT's `query.lora_A.weight`), and train()/eval()/to() reach them.

#include <contaccum/detail/error.hpp>

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace contaccum {

/// \brief A side path added to a linear layer's output (LoRA installs one).
class LinearBranch {
public:
  virtual ~LinearBranch() = default;
  /// \brief The layer's output with the branch applied. x: (..., in), y = x W^T + b:
  ///        (..., out) -> (..., out). A branch that is merged into W returns y unchanged.
  virtual torch::Tensor apply(const torch::Tensor& x, const torch::Tensor& y) = 0;
  /// \brief True when the branch's effect is folded into the layer's weight (then the
  ///        weight alone is the adapted layer, and it can be saved as a plain model).
  [[nodiscard]] virtual bool merged() const = 0;
};

/// \brief torch::nn::Linear with a LinearBranch slot: y = x W^T + b, then branch->apply(x, y).
///
/// \code
/// contaccum::AdaptableLinear l(64, 192);  // exactly torch::nn::Linear(64, 192) while branch is empty
/// auto y = l(x);                          // (B, T, 64) -> (B, T, 192)
/// \endcode
class AdaptableLinearImpl : public torch::nn::LinearImpl {
public:
  using torch::nn::LinearImpl::LinearImpl;

  /// \brief (..., in_features) -> (..., out_features).
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = affine(x);
    return branch ? branch->apply(x, y) : y;
  }

  /// \brief The installed side path, or null (then this layer is torch::nn::Linear).
  std::shared_ptr<LinearBranch> branch;

private:
  // x W^T + b. A contiguous (B, T, in) input is viewed as (B T, in) so the bias add fuses
  // into one addmm, forward and backward, instead of a matmul and a separate add.
  torch::Tensor affine(const torch::Tensor& x) {
    if (x.dim() != 3 || !bias.defined() || !x.is_contiguous()) return torch::nn::LinearImpl::forward(x);
    const auto b = x.size(0), t = x.size(1);
    return torch::addmm(bias, x.view({b * t, x.size(2)}), weight.t()).view({b, t, weight.size(0)});  // (B, T, out)
  }
};
TORCH_MODULE(AdaptableLinear);

namespace detail {

/// \brief The parameters of `model` without those of installed branches (LoRA's lora_A,
///        lora_B): the base model's state dict, as checkpoint loaders and savers see it.
[[nodiscard]] inline std::map<std::string, torch::Tensor> base_parameters(const torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model.named_parameters()) out.emplace(p.key(), p.value());
  for (const auto& m : model.named_modules()) {
    const auto* linear = dynamic_cast<const AdaptableLinearImpl*>(m.value().get());
    if (linear == nullptr || !linear->branch) continue;
    const auto prefix = m.key().empty() ? std::string() : m.key() + ".";
    for (const auto& p : linear->named_parameters())
      if (p.key().find('.') != std::string::npos) out.erase(prefix + p.key());  // a child's: the branch's
  }
  return out;
}

/// \brief Throws invalid_input when a layer of `model` carries a branch that is not merged:
///        its weight alone is not the adapted layer, so saving it would lose the adapter.
inline void require_branches_merged(const torch::nn::Module& model, std::string_view who) {
  for (const auto& m : model.named_modules()) {
    const auto* linear = dynamic_cast<const AdaptableLinearImpl*>(m.value().get());
    require(linear == nullptr || !linear->branch || linear->branch->merged(), who, ": layer ", m.key(),
            " carries an unmerged adapter branch (LoRA); call contaccum::merge_lora(model) first to save the "
            "adapted model, or contaccum::save_peft_adapter to save the adapter alone");
  }
}

}  // namespace detail

}  // namespace contaccum
