#pragma once
/// \file
/// \brief The pieces of a Trainer's state that are not the strategy's: the model's
///        tensors, AdamW's moments and step counts, and the random generators. Each has a
///        save, a check (reads and validates into a plan, changing nothing) and an apply.

#include <contaccum/detail/error.hpp>
#include <contaccum/state/state_dict.hpp>

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum::detail {

/// \brief A readable name of T (GCC and Clang spell it from __PRETTY_FUNCTION__).
template <class T>
[[nodiscard]] std::string type_name() {
  std::string_view f = __PRETTY_FUNCTION__;
  const auto b = f.find("T = ");
  if (b == std::string_view::npos) return std::string(f);
  f.remove_prefix(b + 4);
  const auto e = f.find_first_of(";]");
  return std::string(f.substr(0, e));
}

/// \brief Every parameter and buffer of a module, by its name.
[[nodiscard]] inline std::vector<std::pair<std::string, torch::Tensor>> module_tensors(const torch::nn::Module& m) {
  std::vector<std::pair<std::string, torch::Tensor>> all;
  for (const auto& p : m.named_parameters()) all.emplace_back(p.key(), p.value());
  for (const auto& b : m.named_buffers()) all.emplace_back(b.key(), b.value());
  return all;
}

inline void save_module_tensors(StateDict& s, const std::string& prefix, const torch::nn::Module& m) {
  for (const auto& [name, t] : module_tensors(m)) s.put(prefix + name, t);
}

/// \brief Checks that the saved tensors under `prefix` are exactly the module's (names,
///        shapes, dtypes); one error lists every missing, unexpected and mis-shaped tensor.
///        Returns the copies to apply.
[[nodiscard]] inline std::vector<std::pair<torch::Tensor, torch::Tensor>> check_module_tensors(
    const StateReader& r, const std::string& prefix, const torch::nn::Module& m) {
  std::vector<std::pair<torch::Tensor, torch::Tensor>> plan;
  std::string problems;
  std::map<std::string, bool> expected;
  for (const auto& [name, t] : module_tensors(m)) {
    expected[prefix + name] = true;
    if (!r.has_tensor(prefix + name)) {
      problems += cat("\n  missing: ", prefix, name, " ", t.sizes());
      continue;
    }
    const auto& saved = r.tensor(prefix + name);
    if (saved.sizes() != t.sizes() || saved.scalar_type() != t.scalar_type())
      problems += cat("\n  mismatch: ", prefix, name, " is ", saved.sizes(), " ", saved.scalar_type(),
                      " in the checkpoint, this model has ", t.sizes(), " ", t.scalar_type());
    else
      plan.emplace_back(t, saved);
  }
  for (const auto& key : r.keys_under(prefix))
    if (!expected.contains(key)) problems += cat("\n  unexpected: ", key);
  if (!problems.empty())
    throw invalid_input(cat("contaccum: checkpoint ", r.source(),
                            ": the model does not match this trainer's (another model, shape or adapter?):",
                            problems));
  return plan;
}

inline void apply_tensor_copies(const std::vector<std::pair<torch::Tensor, torch::Tensor>>& plan) {
  torch::NoGradGuard no_grad;
  for (const auto& [dst, src] : plan) dst.copy_(src);
}

/// \brief AdamW's per-parameter state, keyed by parameter name.
inline void save_adamw(StateDict& s, const std::string& prefix, torch::optim::AdamW& opt,
                       const std::map<const void*, std::string>& names) {
  for (const auto& group : opt.param_groups())
    for (const auto& p : group.params()) {
      const auto it = opt.state().find(p.unsafeGetTensorImpl());
      if (it == opt.state().end()) continue;
      const auto& st = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      const auto& name = names.at(p.unsafeGetTensorImpl());
      s.set(prefix + name + ".step", st.step());
      s.put(prefix + name + ".exp_avg", st.exp_avg());
      s.put(prefix + name + ".exp_avg_sq", st.exp_avg_sq());
      s.put(prefix + name + ".max_exp_avg_sq", st.max_exp_avg_sq());
    }
}

/// \brief One parameter's restored AdamW state (nullptr: none saved yet, the first step).
struct adamw_entry {
  void* key;
  std::unique_ptr<torch::optim::AdamWParamState> state;
};

[[nodiscard]] inline std::vector<adamw_entry> check_adamw(const StateReader& r, const std::string& prefix,
                                                          torch::optim::AdamW& opt,
                                                          const std::map<const void*, std::string>& names) {
  std::vector<adamw_entry> plan;
  std::map<std::string, bool> known;
  for (const auto& group : opt.param_groups())
    for (const auto& p : group.params()) {
      const auto& name = names.at(p.unsafeGetTensorImpl());
      for (const char* k : {".step", ".exp_avg", ".exp_avg_sq", ".max_exp_avg_sq"}) known[prefix + name + k] = true;
      adamw_entry e{p.unsafeGetTensorImpl(), nullptr};
      if (!r.has_value(prefix + name + ".step") && r.has_tensor(prefix + name + ".exp_avg"))
        r.fail(prefix + name + ".step", "is missing but the parameter has saved moments");
      if (r.has_value(prefix + name + ".step")) {
        auto st = std::make_unique<torch::optim::AdamWParamState>();
        st->step(r.value<int64_t>(prefix + name + ".step"));
        st->exp_avg(r.placed(r.tensor(prefix + name + ".exp_avg", p.sizes(), p.scalar_type())).to(p.device()));
        st->exp_avg_sq(r.placed(r.tensor(prefix + name + ".exp_avg_sq", p.sizes(), p.scalar_type())).to(p.device()));
        if (r.has_tensor(prefix + name + ".max_exp_avg_sq"))
          st->max_exp_avg_sq(
              r.placed(r.tensor(prefix + name + ".max_exp_avg_sq", p.sizes(), p.scalar_type())).to(p.device()));
        e.state = std::move(st);
      }
      plan.push_back(std::move(e));
    }
  for (const auto& key : r.keys_under(prefix))
    if (!known.contains(key))
      r.fail(key, "belongs to no trainable parameter of this trainer (another adapter or model?)");
  return plan;
}

inline void apply_adamw(torch::optim::AdamW& opt, std::vector<adamw_entry>& plan) {
  for (auto& e : plan) {
    if (e.state) opt.state()[e.key] = std::move(e.state);
    else opt.state().erase(e.key);
  }
}

/// \brief Generator states: the CPU's and each CUDA device's default generator.
[[nodiscard]] inline int cuda_generators() {
  return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
}
[[nodiscard]] inline at::Generator default_generator(int cuda_index) {
  return cuda_index < 0 ? at::globalContext().defaultGenerator(c10::DeviceType::CPU)
                        : at::globalContext().defaultGenerator(c10::Device(c10::DeviceType::CUDA,
                                                                           static_cast<c10::DeviceIndex>(cuda_index)));
}
[[nodiscard]] inline torch::Tensor generator_state(int cuda_index) {
  auto g = default_generator(cuda_index);
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

inline void save_generators(StateDict& s, const std::string& prefix) {
  s.put(prefix + "cpu", generator_state(-1));
  const int n = cuda_generators();
  s.set(prefix + "cuda_devices", n);
  for (int i = 0; i < n; ++i) s.put(prefix + "cuda." + std::to_string(i), generator_state(i));
}

/// \brief Validated generator states to apply: (cuda index or -1, state).
[[nodiscard]] inline std::vector<std::pair<int, torch::Tensor>> check_generators(const StateReader& r,
                                                                                 const std::string& prefix) {
  std::vector<std::pair<int, torch::Tensor>> plan;
  auto one = [&](int index, const std::string& key) {
    const auto now = generator_state(index);
    const auto& saved = r.tensor(key, now.sizes(), now.scalar_type());
    plan.emplace_back(index, saved.clone());
  };
  one(-1, prefix + "cpu");
  const auto saved_devices = r.value<int>(prefix + "cuda_devices");
  if (saved_devices > cuda_generators())
    r.fail(prefix + "cuda_devices", "is ", saved_devices, " but this machine has ", cuda_generators(),
           " CUDA devices: their generators (dropout masks) cannot be restored");
  const int n = std::min(saved_devices, cuda_generators());
  for (int i = 0; i < n; ++i) one(i, prefix + "cuda." + std::to_string(i));
  return plan;
}

inline void apply_generators(const std::vector<std::pair<int, torch::Tensor>>& plan) {
  for (const auto& [index, state] : plan) {
    auto g = default_generator(index);
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(state);
  }
}

}  // namespace contaccum::detail
