#pragma once
/// \file
/// \brief Peak-memory measurement. CPU: a counting allocator installed around LibTorch's
///        own (every CPU tensor allocation after install() is counted, in requested
///        bytes). CUDA: the caching allocator's statistics (allocated bytes).

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>
#ifdef CONTACCUM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <atomic>
#include <cstring>
#include <mutex>

namespace contaccum {

namespace detail {

struct cpu_memory_counters {
  std::atomic<int64_t> current{0};
  std::atomic<int64_t> peak{0};
  void add(int64_t n) {
    const auto now = current.fetch_add(n) + n;
    auto p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {}
  }
};
inline cpu_memory_counters& cpu_counters() {
  static cpu_memory_counters c;
  return c;
}

// Wraps LibTorch's CPU allocator: a 64-byte header (the CPU alignment) in front of each
// block stores its size, so the raw deleter knows what to subtract.
class counting_cpu_allocator final : public c10::Allocator {
public:
  static constexpr std::size_t header = 64;

  explicit counting_cpu_allocator(c10::Allocator* base) : base_(base) { base_deleter() = base->raw_deleter(); }

  c10::DataPtr allocate(std::size_t n) override {
    if (n == 0) return base_->allocate(0);
    void* raw = base_->raw_allocate(n + header);
    std::memcpy(raw, &n, sizeof n);
    cpu_counters().add(static_cast<int64_t>(n));
    void* data = static_cast<char*>(raw) + header;
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

private:
  static c10::DeleterFnPtr& base_deleter() {
    static c10::DeleterFnPtr d = nullptr;
    return d;
  }
  static void release(void* data) {
    if (data == nullptr) return;
    void* raw = static_cast<char*>(data) - header;
    std::size_t n = 0;
    std::memcpy(&n, raw, sizeof n);
    cpu_counters().current.fetch_sub(static_cast<int64_t>(n));
    base_deleter()(raw);
  }
  c10::Allocator* base_;
};

#ifdef CONTACCUM_WITH_CUDA
// The caching allocator's "allocated bytes" statistic. The stat types moved between
// namespaces across LibTorch 2.x; `auto` and index 0 (StatType::AGGREGATE in every
// version) keep this version-independent.
inline auto cuda_allocated_bytes(const torch::Device& device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
  return stats.allocated_bytes[0];
}
#endif

}  // namespace detail

/// \brief Process-wide peak-memory meter for CPU and CUDA devices.
///
/// \code
/// contaccum::MemoryMeter::install();
/// contaccum::MemoryMeter::reset_peak(device);
/// ... work ...
/// auto bytes = contaccum::MemoryMeter::peak_bytes(device);
/// \endcode
class MemoryMeter {
public:
  /// \brief Installs the counting CPU allocator (idempotent). False if LibTorch's CPU
  ///        allocator cannot be wrapped (it has no raw deleter).
  static bool install() {
    static std::once_flag once;
    static bool ok = false;
    std::call_once(once, [] {
      auto* base = c10::GetCPUAllocator();
      if (base->raw_deleter() == nullptr) return;
      static detail::counting_cpu_allocator counting(base);
      c10::SetCPUAllocator(&counting, /*priority=*/1);
      ok = c10::GetCPUAllocator() == &counting;
    });
    return ok;
  }
  static bool installed() { return install(); }

  /// \brief Bytes held now by tensors allocated since install() (CPU) or by the caching allocator (CUDA).
  static int64_t current_bytes(const torch::Device& device = torch::kCPU) {
#ifdef CONTACCUM_WITH_CUDA
    if (device.is_cuda()) return detail::cuda_allocated_bytes(device).current;
#endif
    (void)device;
    return detail::cpu_counters().current.load();
  }
  /// \brief High-water mark since the last reset_peak().
  static int64_t peak_bytes(const torch::Device& device = torch::kCPU) {
#ifdef CONTACCUM_WITH_CUDA
    if (device.is_cuda()) return detail::cuda_allocated_bytes(device).peak;
#endif
    (void)device;
    return detail::cpu_counters().peak.load();
  }
  static void reset_peak(const torch::Device& device = torch::kCPU) {
#ifdef CONTACCUM_WITH_CUDA
    if (device.is_cuda()) {
      c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : 0);
      return;
    }
#endif
    (void)device;
    detail::cpu_counters().peak.store(detail::cpu_counters().current.load());
  }

};

}  // namespace contaccum
