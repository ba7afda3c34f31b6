#pragma once
/// \file
/// \brief Dynamic loss scaling for fp16 training, with GradScaler's rule (torch.amp):
///        the loss is multiplied by a power of two before the backward, the gradients are
///        divided by it before the norm and the clip, a step whose gradients are not finite
///        is skipped (not an error) and halves the scale, and every `growth_interval`
///        finite steps in a row double it.
///
/// Powers of two make the scaling exact: the unscaled gradients are the fp32 gradients the
/// same graph would give unscaled, except where fp16 would have underflowed.

#include <contaccum/detail/error.hpp>
#include <contaccum/state/state_dict.hpp>

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace contaccum {

/// \brief GradScaler's defaults (init_scale 2^16, growth 2, backoff 0.5, interval 2000).
struct LossScalerConfig {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class LossScaler {
public:
  LossScaler() = default;
  /// \brief enabled = false: scale 1, never skips (fp32 and bf16).
  LossScaler(bool enabled, LossScalerConfig c) : enabled_(enabled), config_(c), scale_(enabled ? c.init_scale : 1.0) {
    detail::require(c.init_scale > 0 && std::isfinite(c.init_scale), "TrainerConfig.loss_scale_init (LossScalerConfig.init_scale) must be positive "
                    "and finite, got ", c.init_scale);
    detail::require(c.growth_factor > 1, "LossScalerConfig.growth_factor must be > 1, got ", c.growth_factor);
    detail::require(c.backoff_factor > 0 && c.backoff_factor < 1, "LossScalerConfig.backoff_factor must be in "
                    "(0, 1), got ", c.backoff_factor);
    detail::require(c.growth_interval > 0, "TrainerConfig.loss_scale_growth_interval (LossScalerConfig.growth_interval) must be positive, got ",
                    c.growth_interval);
  }

  [[nodiscard]] bool enabled() const { return enabled_; }
  /// \brief The factor the loss is multiplied by (1 when disabled).
  [[nodiscard]] double scale() const { return scale_; }
  /// \brief Finite steps since the scale last changed.
  [[nodiscard]] int64_t growth_tracker() const { return growth_tracker_; }

  /// \brief Divides the gradients of `params` by the scale (nothing when disabled).
  void unscale(const std::vector<torch::Tensor>& params) const {
    if (!enabled_ || scale_ == 1.0) return;
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().detach().mul_(1.0 / scale_);
  }

  /// \brief After a step: `overflow` (its gradients were not finite) backs the scale off and
  ///        restarts the count; otherwise the count grows and doubles the scale at the interval.
  void update(bool overflow) {
    if (!enabled_) return;
    if (overflow) {
      scale_ *= config_.backoff_factor;
      growth_tracker_ = 0;
      return;
    }
    if (++growth_tracker_ == config_.growth_interval) {
      scale_ *= config_.growth_factor;
      growth_tracker_ = 0;
    }
  }

  void save_state(StateDict& s, const std::string& prefix) const {
    s.set(prefix + "scale", scale_);
    s.set(prefix + "growth_tracker", growth_tracker_);
  }
  /// \brief Checked before anything changes; a missing or bad entry names its key.
  void load_state(const StateReader& r, const std::string& prefix) {
    const auto scale = r.value<double>(prefix + "scale");
    const auto tracker = r.value<int64_t>(prefix + "growth_tracker");
    if (!(scale > 0) || !std::isfinite(scale)) r.fail(prefix + "scale", "is ", scale);
    if (tracker < 0) r.fail(prefix + "growth_tracker", "is ", tracker);
    scale_ = scale;
    growth_tracker_ = tracker;
  }

private:
  bool enabled_ = false;
  LossScalerConfig config_{};
  double scale_ = 1.0;
  int64_t growth_tracker_ = 0;
};

}  // namespace contaccum
