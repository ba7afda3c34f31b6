#pragma once
/// \file
/// \brief A one-line progress bar on stderr: done/total, elapsed, ETA and a caller's note.
///
/// \code
/// contaccum::ProgressBar bar("train", steps);
/// for (int64_t s = 0; s < steps; ++s) bar.update(s + 1, "loss 0.42");
/// \endcode

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace contaccum {

class ProgressBar {
public:
  /// \param start the count already done when the bar starts (a resumed run): the ETA
  ///        counts only the work done since.
  ProgressBar(std::string what, int64_t total, int64_t start = 0)
      : what_(std::move(what)), total_(total), start_(start) {}

  void update(int64_t done, const std::string& note = "") {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const int64_t fresh = done - start_;
    const double eta = fresh > 0 ? elapsed / static_cast<double>(fresh) * static_cast<double>(total_ - done) : 0;
    const int width = 24;
    const int filled = static_cast<int>(width * std::clamp<int64_t>(done, 0, total_) / std::max<int64_t>(total_, 1));
    std::fprintf(stderr, "\r%-12s [%s%s] %lld/%lld %s elapsed %4.0fs eta %4.0fs ", what_.c_str(),
                 std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(width - filled), '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), note.c_str(), elapsed, eta);
    if (done >= total_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }
  /// \brief A callback for embed_texts / exact_search (done, total).
  [[nodiscard]] std::function<void(std::size_t, std::size_t)> callback() {
    return [this](std::size_t done, std::size_t) { update(static_cast<int64_t>(done)); };
  }

private:
  std::string what_;
  int64_t total_, start_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

}  // namespace contaccum
