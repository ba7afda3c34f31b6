#pragma once
/// \file
/// \brief Snapshot and replay of the random generators that dropout draws from: the CPU
///        generator and the default generator of every CUDA device. GradCache needs this
///        so its second (autograd) forward sees the same dropout masks as the first.

#include <ATen/Context.h>
#include <torch/cuda.h>

#include <mutex>
#include <vector>

namespace contaccum::detail {

/// \brief The state of the CPU generator and of each CUDA device's default generator.
class rng_state {
public:
  /// \brief Captures the current state of every default generator.
  [[nodiscard]] static rng_state capture() {
    rng_state s;
    s.cpu_ = read(at::globalContext().defaultGenerator(c10::DeviceType::CPU));
    const auto n = cuda_devices();
    s.cuda_.reserve(n);
    for (int i = 0; i < n; ++i)
      s.cuda_.push_back(read(at::globalContext().defaultGenerator(c10::Device(c10::DeviceType::CUDA, i))));
    return s;
  }

  /// \brief Puts every default generator back to this state.
  void restore() const {
    write(at::globalContext().defaultGenerator(c10::DeviceType::CPU), cpu_);
    for (int i = 0; i < static_cast<int>(cuda_.size()); ++i)
      write(at::globalContext().defaultGenerator(c10::Device(c10::DeviceType::CUDA, i)), cuda_[i]);
  }

private:
  static int cuda_devices() { return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0; }
  static at::Tensor read(const at::Generator& g) {
    auto& gen = const_cast<at::Generator&>(g);
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get_state();
  }
  static void write(const at::Generator& g, const at::Tensor& state) {
    auto& gen = const_cast<at::Generator&>(g);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }

  at::Tensor cpu_;
  std::vector<at::Tensor> cuda_;
};

}  // namespace contaccum::detail
