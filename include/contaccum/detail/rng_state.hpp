#pragma once
/// \file
/// \brief Snapshot and replay of the random generators that dropout draws from: the CPU
///        generator and the default generator of every CUDA device. GradCache needs this
///        so its second (autograd) forward sees the same dropout masks as the first.

#include <ATen/Context.h>
#include <torch/cuda.h>

#include <cstdint>
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

  /// \brief Seeds every default generator (CPU and each CUDA device) with `seed`.
  static void seed_all(uint64_t seed) {
    seed_one(at::globalContext().defaultGenerator(c10::DeviceType::CPU), seed);
    for (int i = 0; i < cuda_devices(); ++i)
      seed_one(at::globalContext().defaultGenerator(c10::Device(c10::DeviceType::CUDA, i)), seed);
  }

private:
  static void seed_one(const at::Generator& g, uint64_t seed) {
    auto& gen = const_cast<at::Generator&>(g);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(seed);
  }
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

/// \brief splitmix64's finalizer: a well-mixed 64-bit word from any 64-bit word.
[[nodiscard]] constexpr uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/// \brief The seed of a step's global forward chunk: distinct (step, chunk) pairs give
///        unrelated seeds.
[[nodiscard]] constexpr uint64_t chunk_seed(uint64_t seed, int64_t step, int64_t chunk) {
  return mix64(mix64(mix64(seed) ^ static_cast<uint64_t>(step)) ^ static_cast<uint64_t>(chunk));
}

}  // namespace contaccum::detail
