#pragma once
/// \file
/// \brief The backward seam: the one path every gradient of an optimizer step takes.
///
/// A strategy never calls `.backward()` itself. It hands each loss evaluation's inputs to
/// `exchange` (the Trainer's collective gathers them across ranks there) and every
/// backward to `backward`: the loss of a unit with its share 1/units of the step, and
/// GradCache's replay, which pushes already-weighted embedding gradients into the
/// encoders. Loss scaling (fp16), `no_sync`-style deferral and the collective live behind
/// this seam, so no strategy changes when they arrive. The Trainer passes its own seam in
/// StepContext; a strategy used on its own gets `plain_seam()`.

#include <contaccum/loss/loss_inputs.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace contaccum {

class BackwardSeam {
public:
  BackwardSeam() = default;
  BackwardSeam(const BackwardSeam&) = default;
  BackwardSeam& operator=(const BackwardSeam&) = default;
  virtual ~BackwardSeam() = default;

  /// \brief The loss inputs of one evaluation made global (identity on one process).
  [[nodiscard]] virtual LossInputs exchange(const LossInputs& in) { return in; }

  /// \brief Backpropagates loss / units: one loss unit's share of the step (units = 1:
  ///        the loss as it is). loss: a scalar.
  virtual void backward(const torch::Tensor& loss, int64_t units) {
    ++calls_;
    (units == 1 ? loss : loss / static_cast<double>(units)).backward();
  }

  /// \brief Backpropagates given gradients into outputs (GradCache's replay: the surrogate
  ///        sum(output * grad); the gradients already carry the loss's weight).
  virtual void backward(const std::vector<torch::Tensor>& outputs, const std::vector<torch::Tensor>& grads) {
    ++calls_;
    torch::autograd::backward(outputs, grads);
  }

  /// \brief Backward calls that went through this seam.
  [[nodiscard]] int64_t calls() const { return calls_; }

protected:
  int64_t calls_ = 0;
};

namespace detail {
/// \brief The seam of a strategy used without a Trainer: one process, no scaling.
inline BackwardSeam& plain_seam() {
  thread_local BackwardSeam seam;
  return seam;
}
}  // namespace detail

}  // namespace contaccum
