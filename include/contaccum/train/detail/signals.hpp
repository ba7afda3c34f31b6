#pragma once
/// \file
/// \brief SIGINT/SIGTERM during fit(): the first asks the run to stop at the next step
///        boundary (checkpoint, then exit with 128 + signal); a second one exits at once
///        (_exit, no destructor runs, so no half-written file is touched again; checkpoints
///        are written atomically, so the last one stays whole).

#include <csignal>
#include <cstring>

#include <unistd.h>

namespace contaccum::detail {

inline volatile std::sig_atomic_t pending_stop_signal = 0;

extern "C" inline void contaccum_stop_handler(int sig) {
  if (pending_stop_signal != 0) ::_exit(128 + sig);
  pending_stop_signal = sig;
  constexpr const char msg[] =
      "\ncontaccum: stopping after this optimizer step (a checkpoint is written); press Ctrl-C again to quit now\n";
  [[maybe_unused]] const auto n = ::write(2, msg, sizeof msg - 1);
}

/// \brief Installs the stop handlers for its lifetime and restores the previous ones.
class stop_signals {
public:
  explicit stop_signals(bool enabled) : enabled_(enabled) {
    pending_stop_signal = 0;
    if (!enabled_) return;
    struct sigaction sa {};
    sa.sa_handler = contaccum_stop_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~stop_signals() {
    if (!enabled_) return;
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }
  stop_signals(const stop_signals&) = delete;
  stop_signals& operator=(const stop_signals&) = delete;

  /// \brief The signal that asked to stop, or 0.
  [[nodiscard]] static int pending() { return static_cast<int>(pending_stop_signal); }

private:
  bool enabled_;
  struct sigaction old_int_ {}, old_term_ {};
};

}  // namespace contaccum::detail
