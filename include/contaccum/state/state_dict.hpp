#pragma once
/// \file
/// \brief The state protocol: what a component (Trainer, strategy, bank, data loader)
///        saves so that a run continues bit for bit after a restart.
///
/// A component writes its state into a StateDict under a dotted prefix ("strategy.bank.")
/// and reads it back through a StateReader, which names the checkpoint file and the key in
/// every error. Tensors go to safetensors files, everything else to JSON (checkpoint.hpp).
///
/// \code
/// contaccum::StateDict s;
/// bank.save_state(s, "bank.");                            // tensors + values under "bank."
/// bank.load_state(contaccum::StateReader(s, "ckpt"), "bank.");
/// \endcode

#include <contaccum/detail/error.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <concepts>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

namespace contaccum {

/// \brief Saved state: tensors and JSON values, both by dotted key.
struct StateDict {
  std::map<std::string, torch::Tensor> tensors;  ///< CPU or device tensors, written contiguous
  nlohmann::json values = nlohmann::json::object();  ///< flat: key -> JSON value

  /// \brief Stores a tensor (detached; an undefined tensor is not stored). It is a view of
  ///        the component's tensor, not a copy: write the StateDict out (or clone it) before
  ///        training goes on.
  void put(const std::string& key, const torch::Tensor& t) {
    if (t.defined()) tensors[key] = t.detach();
  }
  /// \brief Stores a value.
  template <class T>
  void set(const std::string& key, const T& v) {
    values[key] = v;
  }
  /// \brief Stores every field of a settings object under `prefix` (prefix + field).
  void set_all(const std::string& prefix, const nlohmann::json& settings) {
    for (const auto& [field, v] : settings.items()) values[prefix + field] = v;
  }
};

/// \brief Reads a StateDict back with errors that name the checkpoint, the file and the key.
class StateReader {
public:
  /// \param source the checkpoint folder (or any name) errors mention.
  /// \param device where components put the tensors they restore (the trainer's device).
  explicit StateReader(const StateDict& s, std::string source = "state", torch::Device device = torch::kCPU)
      : s_(&s), source_(std::move(source)), device_(device) {}

  [[nodiscard]] const std::string& source() const { return source_; }
  [[nodiscard]] torch::Device device() const { return device_; }
  /// \brief An owned copy of `t` on device() (restored state never aliases the file's tensors).
  [[nodiscard]] torch::Tensor placed(const torch::Tensor& t) const {
    return t.defined() ? t.to(device_, /*non_blocking=*/false, /*copy=*/true) : t;
  }
  [[nodiscard]] bool has_tensor(const std::string& key) const { return s_->tensors.contains(key); }
  [[nodiscard]] bool has_value(const std::string& key) const { return s_->values.contains(key); }

  /// \brief The tensor at `key`; an error naming it when it is missing.
  [[nodiscard]] const torch::Tensor& tensor(const std::string& key) const {
    const auto it = s_->tensors.find(key);
    if (it == s_->tensors.end()) fail(key, "is missing (tensor)");
    return it->second;
  }
  /// \brief The tensor at `key`, which must have this shape and dtype.
  [[nodiscard]] const torch::Tensor& tensor(const std::string& key, c10::IntArrayRef shape,
                                            c10::ScalarType dtype) const {
    const auto& t = tensor(key);
    if (t.sizes() != shape) fail(key, "has shape ", t.sizes(), " but this run needs ", shape);
    if (t.scalar_type() != dtype) fail(key, "has dtype ", t.scalar_type(), " but this run needs ", dtype);
    return t;
  }
  /// \brief The value at `key` as T; an error naming it when it is missing or of another type.
  template <class T>
  [[nodiscard]] T value(const std::string& key) const {
    const auto it = s_->values.find(key);
    if (it == s_->values.end()) fail(key, "is missing");
    // no silent conversion: 2.7 is not an integer, -1 not a count
    bool ok = true;
    if constexpr (std::is_same_v<T, bool>) ok = it->is_boolean();
    else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>)
      ok = it->is_number_unsigned() || (it->is_number_integer() && it->template get<int64_t>() >= 0);
    else if constexpr (std::is_integral_v<T>) ok = it->is_number_integer();
    else if constexpr (std::is_floating_point_v<T>) ok = it->is_number();
    else if constexpr (std::is_same_v<T, std::string>) ok = it->is_string();
    if (!ok) fail(key, "has the wrong type: ", it->dump());
    try {
      return it->template get<T>();
    } catch (const nlohmann::json::exception&) {
      fail(key, "has the wrong type: ", it->dump());
    }
  }
  /// \brief Throws: "contaccum: checkpoint SOURCE: field 'KEY' ..."
  template <class... Parts>
  [[noreturn]] void fail(const std::string& key, Parts&&... parts) const {
    throw invalid_input(detail::cat("contaccum: checkpoint ", source_, ": field '", key, "' ",
                                    std::forward<Parts>(parts)...));
  }
  /// \brief Requires the saved value at `key` to equal this run's (a setting that must not
  ///        change across a resume).
  template <class T>
  void require_same(const std::string& key, const T& now) const {
    const auto saved = value<T>(key);
    if (!(saved == now))
      fail(key, "is ", nlohmann::json(saved).dump(), " in the checkpoint but ", nlohmann::json(now).dump(),
           " in this run");
  }
  /// \brief require_same for every field of a settings object saved with StateDict::set_all.
  void require_same_all(const std::string& prefix, const nlohmann::json& settings) const {
    for (const auto& [field, v] : settings.items()) require_same(prefix + field, v);
  }
  /// \brief Keys under `prefix` (tensors and values), for "unexpected entry" checks.
  [[nodiscard]] std::vector<std::string> keys_under(const std::string& prefix) const {
    std::vector<std::string> k;
    for (const auto& [key, t] : s_->tensors)
      if (key.starts_with(prefix)) k.push_back(key);
    for (const auto& [key, v] : s_->values.items())
      if (key.starts_with(prefix)) k.push_back(key);
    return k;
  }

private:
  const StateDict* s_;
  std::string source_;
  torch::Device device_;
};

/// \brief A component that can save and restore its state under a prefix.
template <class T>
concept Stateful = requires(const T& c, T& m, StateDict& s, const StateReader& r, const std::string& prefix) {
  c.save_state(s, prefix);
  m.load_state(r, prefix);
};

}  // namespace contaccum
