#pragma once
/// \file
/// \brief Activation recompute (gradient checkpointing) for one encoder block: the forward
///        keeps only the block's input, and the backward runs the block again, with autograd,
///        before backpropagating through it.
///
/// The recompute must compute what the forward computed, or the gradient is wrong. Two
/// things could differ and are replayed: the random generators (dropout masks: every
/// generator's state is captured before the block and restored for the recompute, then put
/// back so the draws after it are undisturbed) and autocast (its CPU and CUDA state is
/// captured and re-entered, since the backward runs outside autocast). This composes with
/// GradCache's replay, which itself restores the generators before each chunk.
///
/// The block's parameters get their gradients from the nested backward (as PyTorch's
/// reentrant checkpoint does); a block input that does not require a gradient (a frozen
/// prefix below) is still recomputed, so its parameters are never silently skipped.

#include <contaccum/detail/rng_state.hpp>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <functional>
#include <utility>

namespace contaccum::detail {

/// The thread's autocast state (CPU and CUDA): captured, and re-entered for a scope.
struct autocast_state {
  bool cpu_on = false, cuda_on = false;
  at::ScalarType cpu_dtype = at::kBFloat16, cuda_dtype = at::kHalf;

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  [[nodiscard]] static autocast_state capture() {
    return {at::autocast::is_autocast_enabled(at::kCPU), at::autocast::is_autocast_enabled(at::kCUDA),
            at::autocast::get_autocast_dtype(at::kCPU), at::autocast::get_autocast_dtype(at::kCUDA)};
  }
  void apply() const {
    at::autocast::set_autocast_enabled(at::kCPU, cpu_on);
    at::autocast::set_autocast_enabled(at::kCUDA, cuda_on);
    at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype);
    at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype);
  }
#else
  [[nodiscard]] static autocast_state capture() { return {}; }  // autocast needs >= 2.4 (precision.hpp)
  void apply() const {}
#endif
};

using block_fn = std::function<torch::Tensor(const torch::Tensor&)>;

struct recompute_payload : torch::CustomClassHolder {
  block_fn block;
  rng_state generators;
  autocast_state autocast;
};

struct recompute_function : torch::autograd::Function<recompute_function> {
  // x: the block's input -> the block's output, computed without a graph.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               c10::intrusive_ptr<recompute_payload> payload) {
    payload->generators = rng_state::capture();
    payload->autocast = autocast_state::capture();
    ctx->save_for_backward({x});
    auto y = payload->block(x);
    ctx->saved_data["payload"] = c10::IValue::make_capsule(std::move(payload));
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto payload = c10::static_intrusive_pointer_cast<recompute_payload>(ctx->saved_data["payload"].toCapsule());
    auto x = ctx->get_saved_variables().front().detach().requires_grad_(true);
    const auto generators_now = rng_state::capture();
    const auto autocast_now = autocast_state::capture();
    payload->generators.restore();
    payload->autocast.apply();
    torch::Tensor y;
    try {
      torch::AutoGradMode grad_on(true);
      y = payload->block(x);
    } catch (...) {
      autocast_now.apply();
      generators_now.restore();
      throw;
    }
    autocast_now.apply();
    generators_now.restore();  // the draws after the block are the forward's
    torch::autograd::backward({y}, {grads.front()});  // the parameters' gradients, and x's
    return {x.grad(), torch::Tensor()};
  }
};

/// \brief block(x), recomputed in the backward instead of keeping its activations. Without
///        grad mode (inference, GradCache's first pass) it is block(x) and nothing more.
[[nodiscard]] inline torch::Tensor recomputed(block_fn block, const torch::Tensor& x) {
  if (!torch::GradMode::is_enabled()) return block(x);
  auto payload = c10::make_intrusive<recompute_payload>();
  payload->block = std::move(block);
  // An input without a gradient (a frozen prefix) still needs the node: the block's own
  // parameters are trained. A detached leaf copy gives the function a gradient edge.
  const auto input = x.requires_grad() ? x : x.detach().requires_grad_(true);
  return recompute_function::apply(input, std::move(payload));
}

}  // namespace contaccum::detail
