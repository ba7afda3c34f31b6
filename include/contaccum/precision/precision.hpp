#pragma once
/// \file
/// \brief The precision a training step encodes in: fp32, or bf16 / fp16 autocast with
///        fp32 master weights, optimizer state, loss and memory banks.
///
/// Under `bf16` or `fp16` only the encoders' forward passes run under LibTorch's autocast
/// (matrix products in the reduced type, reductions and norms as autocast decides); every
/// embedding leaves the encoder cast back to fp32, so the loss, its log-sum-exp over the
/// bank's columns, the score cache and the banks stay fp32, and the backward runs outside
/// autocast, in the types the forward chose. Parameters and AdamW's moments stay in their
/// own dtype (fp32). float64 models are untouched (autocast never casts them).
///
/// fp16's narrow range needs loss scaling (precision/loss_scaler.hpp); bf16 has fp32's
/// range and does not. Autocast needs LibTorch >= 2.4 (its per-device API).

#include <contaccum/detail/error.hpp>

#include <ATen/autocast_mode.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <torch/version.h>

#include <string>
#include <string_view>

namespace contaccum {

/// \brief The encoders' compute type during training.
enum class Precision {
  fp32,  ///< no autocast
  bf16,  ///< bfloat16 autocast (CPU and CUDA)
  fp16,  ///< float16 autocast with dynamic loss scaling (meant for CUDA)
};
NLOHMANN_JSON_SERIALIZE_ENUM(Precision, {{Precision::fp32, "fp32"}, {Precision::bf16, "bf16"}, {Precision::fp16, "fp16"}})

[[nodiscard]] constexpr std::string_view to_string(Precision p) {
  switch (p) {
    case Precision::bf16: return "bf16";
    case Precision::fp16: return "fp16";
    default: return "fp32";
  }
}

/// \brief "fp32", "bf16" or "fp16"; anything else is invalid_input naming `where`.
[[nodiscard]] inline Precision parse_precision(std::string_view text, std::string_view where = "precision") {
  for (auto p : {Precision::fp32, Precision::bf16, Precision::fp16})
    if (text == to_string(p)) return p;
  throw invalid_input(detail::cat(where, ": unknown precision '", text, "' (use fp32, bf16 or fp16)"));
}

/// \brief The reduced type autocast computes in; kFloat for fp32.
[[nodiscard]] constexpr torch::ScalarType compute_dtype(Precision p) {
  return p == Precision::bf16 ? torch::kBFloat16 : p == Precision::fp16 ? torch::kHalf : torch::kFloat;
}

/// \brief Autocast on for CPU and (when present) CUDA while alive, in `p`'s type; restores
///        the previous state on exit and drops autocast's weight-cast cache when the
///        outermost scope closes. fp32: does nothing.
class AutocastScope {
public:
  explicit AutocastScope(Precision p) : on_(p != Precision::fp32) {
    if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    for (auto& d : devices_) {
      d.was_on = at::autocast::is_autocast_enabled(d.type);
      d.was = at::autocast::get_autocast_dtype(d.type);
      at::autocast::set_autocast_enabled(d.type, true);
      at::autocast::set_autocast_dtype(d.type, compute_dtype(p));
    }
    at::autocast::increment_nesting();
#else
    throw invalid_input(detail::cat("precision ", to_string(p), " needs LibTorch >= 2.4 (this build has ",
                                    TORCH_VERSION_MAJOR, ".", TORCH_VERSION_MINOR, ")"));
#endif
  }
  ~AutocastScope() {
    if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    for (auto& d : devices_) {
      at::autocast::set_autocast_enabled(d.type, d.was_on);
      at::autocast::set_autocast_dtype(d.type, d.was);
    }
#endif
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

private:
  struct device_state {
    at::DeviceType type;
    bool was_on = false;
    at::ScalarType was = at::kFloat;
  };
  bool on_;
  device_state devices_[2] = {{at::kCPU}, {at::kCUDA}};
};

/// \brief `e` in fp32 when autocast left it in a reduced type (bf16, fp16); else `e`.
[[nodiscard]] inline torch::Tensor to_master_precision(const torch::Tensor& e) {
  const auto t = e.scalar_type();
  return t == torch::kBFloat16 || t == torch::kHalf ? e.to(torch::kFloat) : e;
}

}  // namespace contaccum
