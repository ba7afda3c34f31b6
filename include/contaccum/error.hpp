#pragma once
/// \file
/// \brief The exceptions contaccum throws. Every error says what was wrong and where
///        (which step, field, file or line), so a user can fix the input.

#include <stdexcept>
#include <string>
#include <utility>

namespace contaccum {

/// \brief Base of all contaccum errors.
class error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// \brief Input that does not fit the contract (shape, count, width, config field).
class invalid_input : public error {
public:
  using error::error;
};

/// \brief A loss or gradient that is NaN or Inf. Thrown before any parameter changes.
class non_finite_loss : public error {
public:
  non_finite_loss(std::string what, long long step) : error(std::move(what)), step_(step) {}
  /// \brief The optimizer step (0-based) at which the value appeared.
  [[nodiscard]] long long step() const noexcept { return step_; }

private:
  long long step_;
};

}  // namespace contaccum
