#pragma once
/// \file
/// \brief AdamW with BERT-style parameter groups (no weight decay on biases and norm
///        weights), the learning-rate schedules of Hugging Face (linear warmup, then
///        constant, linear or cosine decay to 0), and per-group gradient norms.

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <numbers>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace contaccum {

enum class Decay { constant, linear, cosine };
NLOHMANN_JSON_SERIALIZE_ENUM(Decay, {{Decay::constant, "constant"}, {Decay::linear, "linear"}, {Decay::cosine, "cosine"}})

/// \brief Learning-rate multiplier used for optimizer step `step` (0-based), as in
///        transformers' get_{constant,linear,cosine}_schedule_with_warmup.
[[nodiscard]] inline double lr_factor(int64_t step, int64_t warmup_steps, int64_t total_steps, Decay decay) {
  if (step < warmup_steps) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  if (decay == Decay::constant || total_steps <= 0) return 1.0;
  const double progress = static_cast<double>(step - warmup_steps) /
                          static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  if (decay == Decay::linear) return std::max(0.0, 1.0 - progress);
  return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
}

/// \brief True for parameters BERT-style training exempts from weight decay.
[[nodiscard]] inline bool exempt_from_weight_decay(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  return name.ends_with("bias") || has("LayerNorm") || has("layer_norm") || has("layernorm") || has("norm.weight");
}

struct AdamWConfig {
  double learning_rate = 2e-5;
  double weight_decay = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

/// \brief AdamW over the trainable (requires_grad) parameters, in two groups: decayed,
///        and exempt (biases, norms).
[[nodiscard]] inline std::unique_ptr<torch::optim::AdamW> make_adamw(
    const torch::OrderedDict<std::string, torch::Tensor>& named, const AdamWConfig& c) {
  std::vector<torch::Tensor> decay, exempt;
  for (const auto& p : named) {
    if (!p.value().requires_grad()) continue;
    (exempt_from_weight_decay(p.key()) ? exempt : decay).push_back(p.value());
  }
  auto opts = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(c.learning_rate)
                                                            .betas({c.beta1, c.beta2})
                                                            .eps(c.eps)
                                                            .weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, opts(c.weight_decay));
  groups.emplace_back(exempt, opts(0.0));
  return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(c.learning_rate));
}

/// \brief Sets every group's learning rate.
inline void set_learning_rate(torch::optim::Optimizer& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
}

/// \brief L2 norm of the gradients of `params` (parameters without a gradient count 0),
///        with a single device-to-host read.
[[nodiscard]] inline double grad_norm(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().detach().norm());
  return norms.empty() ? 0.0 : torch::stack(norms).norm().item<double>();
}

/// \brief The gradient norms a step reports: each tower's and the whole trainable set's.
struct GradientNorms {
  double query = 0, passage = 0, total = 0;
  torch::Tensor total_tensor;  ///< `total` on the gradients' device (0-d), for clip_gradients
};

/// \brief Norms of the query tower's, the passage tower's and all trainable gradients.
///        Each distinct gradient's norm is taken once, in its own dtype (no copy), and the
///        three group norms come back in one device-to-host read. The total is what
///        torch::nn::utils::clip_grad_norm_ computes, bit for bit.
[[nodiscard]] inline GradientNorms gradient_norms(const std::vector<torch::Tensor>& all,
                                                  const std::vector<torch::Tensor>& query,
                                                  const std::vector<torch::Tensor>& passage) {
  std::vector<std::pair<const void*, torch::Tensor>> seen;  // parameter -> its gradient's norm
  auto norm_of = [&](const torch::Tensor& p) -> torch::Tensor {
    const void* key = p.unsafeGetTensorImpl();
    for (const auto& [k, n] : seen)
      if (k == key) return n;
    seen.emplace_back(key, p.grad().detach().norm());
    return seen.back().second;
  };
  auto group = [&](const std::vector<torch::Tensor>& params) -> torch::Tensor {
    std::vector<torch::Tensor> norms;
    for (const auto& p : params)
      if (p.grad().defined()) norms.push_back(norm_of(p));
    if (norms.empty()) return {};
    return norms.size() == 1 ? norms.front() : torch::stack(norms).norm();
  };
  GradientNorms out;
  out.total_tensor = group(all);
  if (!out.total_tensor.defined()) return out;
  const auto q = group(query), p = group(passage);
  auto or_zero = [&](const torch::Tensor& t) { return t.defined() ? t : torch::zeros_like(out.total_tensor); };
  const auto host = torch::stack({or_zero(q), or_zero(p), out.total_tensor}).to(torch::kCPU, torch::kDouble);
  const double* v = host.data_ptr<double>();
  out.query = v[0];
  out.passage = v[1];
  out.total = v[2];
  return out;
}

/// \brief Scales the gradients of `params` by max_norm / (total + 1e-6) when that is below
///        1, with `norms.total_tensor` from gradient_norms over the same parameters: the same
///        result as torch::nn::utils::clip_grad_norm_, without taking the norms again.
inline void clip_gradients(const std::vector<torch::Tensor>& params, double max_norm, const GradientNorms& norms) {
  if (!norms.total_tensor.defined() || max_norm / (norms.total + 1e-6) >= 1.0) return;
  const auto coef = torch::clamp(max_norm / (norms.total_tensor + 1e-6), std::nullopt, 1.0);
  for (const auto& p : params)
    if (p.grad().defined()) p.grad().detach().mul_(coef);
}

}  // namespace contaccum
