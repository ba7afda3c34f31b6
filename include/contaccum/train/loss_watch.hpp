#pragma once
/// \file
/// \brief The loss half of the Trainer's collapse check: a training loss that climbs to the
///        level of a model that ranks nothing is reported, although it stays finite.
///
/// InfoNCE over 1 positive and m negatives is log(1 + m) nats when every candidate scores
/// the same (chance). The watch divides each step's loss by log(1 + m), so a bank that fills
/// up (m grows, and the loss with it) does not look like divergence, and keeps a short
/// exponential mean of it (weight 1/4 per step). It reports when that mean has reached 0.8 of
/// chance *and* 4 times the first step's relative loss: a fine-tuned or pretrained model
/// starts far below chance (the quick main job's first step: loss 0.32 at m = 5, 0.18 of
/// chance), so reaching
/// chance means training has destroyed what it knew; a model trained from scratch starts at
/// chance (about 1) and is never reported for staying there. The state is part of a
/// checkpoint, so a resumed run reports at the same step as an unbroken one.

#include <contaccum/detail/error.hpp>
#include <contaccum/state/state_dict.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

namespace contaccum {

class LossWatch {
 public:
  static constexpr double chance_fraction = 0.8;  ///< report at this share of chance level...
  static constexpr double rise_factor = 4.0;      ///< ...and this multiple of the first step's
  static constexpr double weight = 0.25;          ///< of each new step in the running mean
  static constexpr int64_t min_steps = 3;         ///< steps seen before any report

  /// \brief Takes a finished step's loss and negatives per query; returns a warning when the
  ///        loss has risen to chance level (empty otherwise, and for m < 1 or a non-finite loss).
  std::string observe(double loss, double negatives_per_query) {
    if (negatives_per_query < 1 || !std::isfinite(loss)) return {};
    const double chance = std::log(1.0 + negatives_per_query);
    const double relative = loss / chance;
    if (steps_ == 0) start_ = recent_ = relative;
    else recent_ = (1.0 - weight) * recent_ + weight * relative;
    ++steps_;
    if (steps_ < min_steps || recent_ < std::max(chance_fraction, rise_factor * start_)) return {};
    return detail::cat("the loss has risen to chance level: its recent mean is ", recent_, " of log(1 + m) (",
                       recent_ * chance, " nats for m = ", negatives_per_query, "), from ", start_,
                       " at the first step (is the learning rate too high?)");
  }

  [[nodiscard]] double start() const { return start_; }    ///< first step's loss / log(1 + m)
  [[nodiscard]] double recent() const { return recent_; }  ///< running mean of loss / log(1 + m)
  [[nodiscard]] int64_t steps() const { return steps_; }

  void save_state(StateDict& s, const std::string& prefix) const {
    s.set(prefix + "start", start_);
    s.set(prefix + "recent", recent_);
    s.set(prefix + "steps", steps_);
  }
  /// \brief Checked before anything changes. A checkpoint written before the watch existed
  ///        has none of its keys: the watch then starts again from the next step.
  void load_state(const StateReader& r, const std::string& prefix) {
    if (!r.has_value(prefix + "steps")) {
      *this = LossWatch{};
      return;
    }
    const auto steps = r.value<int64_t>(prefix + "steps");
    const auto start = r.value<double>(prefix + "start");
    const auto recent = r.value<double>(prefix + "recent");
    if (steps < 0) r.fail(prefix + "steps", "is ", steps);
    if (!std::isfinite(start)) r.fail(prefix + "start", "is ", start);
    if (!std::isfinite(recent)) r.fail(prefix + "recent", "is ", recent);
    steps_ = steps;
    start_ = start;
    recent_ = recent;
  }

 private:
  double start_ = 0;
  double recent_ = 0;
  int64_t steps_ = 0;
};

}  // namespace contaccum
