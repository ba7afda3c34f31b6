#pragma once
/// \file
/// \brief LoRA (Hu et al. 2021): each selected linear layer gets a trainable low-rank
///        update, y = W x + b + (alpha / r) B A dropout(x); everything else is frozen.
///
/// Semantics are PEFT's LoraLayer (peft 0.21): A (r, in) kaiming-uniform with a = sqrt(5),
/// B (out, r) zeros, so training starts from the base model; scaling alpha / r; dropout on
/// the branch input only; merge adds scaling B A to W, unmerge subtracts it. Parameter
/// names are PEFT's too: `<layer>.lora_A.weight`, `<layer>.lora_B.weight` beside the
/// layer's own `weight` and `bias` (PEFT adds the adapter name, ".default", in memory and
/// drops it in its files), so an adapter saves as PEFT's adapter_model.safetensors
/// (checkpoint/peft_adapter.hpp).
///
/// Layers are chosen by `target_modules`, a regular expression that must match a module
/// path or one of its dotted suffixes: "query|value" (BERT, PEFT's default there),
/// "query_key_value|dense|dense_h_to_4h|dense_4h_to_h" (the four GPT-NeoX linears of the
/// compute-optimal recipe), "q_proj|v_proj" (Llama / Qwen2, PEFT's default there). The
/// default selects every linear layer of the Transformer blocks of Bert, GptNeox and Llama
/// (not GptNeox's LM head embed_out).
/// When to use: the compute-optimal recipe (Ziarko et al. 2024, arXiv 2406.04165) finds
/// LoRA the best method at large compute budgets and rank barely mattering (~128 a good
/// default at Pythia scale); it also keeps the trained state small.

#include <contaccum/adapters/concepts.hpp>
#include <contaccum/adapters/detail/modules.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/bert.hpp>
#include <contaccum/encoders/gpt_neox.hpp>
#include <contaccum/encoders/llama.hpp>
#include <contaccum/encoders/linear.hpp>

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace contaccum {

/// \brief The low-rank branch LoRA installs in an AdaptableLinear. Its modules are also
///        registered on that layer as lora_A, lora_B and lora_dropout.
class LoraBranch final : public LinearBranch {
public:
  /// \brief A and B for `base` (in -> out), on base's device and dtype, initialised as PEFT does.
  LoraBranch(const torch::nn::LinearImpl& base, int64_t rank, double alpha, double dropout)
      : lora_A(torch::nn::LinearOptions(base.weight.size(1), rank).bias(false)),
        lora_B(torch::nn::LinearOptions(rank, base.weight.size(0)).bias(false)),
        lora_dropout(dropout),
        rank_(rank),
        alpha_(alpha),
        dropout_(dropout),
        scaling_(alpha / static_cast<double>(rank)) {
    lora_A->to(base.weight.device(), base.weight.scalar_type());
    lora_B->to(base.weight.device(), base.weight.scalar_type());
    torch::NoGradGuard no_grad;
    torch::nn::init::kaiming_uniform_(lora_A->weight, std::sqrt(5.0));  // bound 1 / sqrt(in)
    torch::nn::init::zeros_(lora_B->weight);
  }

  /// \brief y + scaling * B(A(dropout(x))), or y when merged. x: (..., in); y: (..., out).
  torch::Tensor apply(const torch::Tensor& x, const torch::Tensor& y) override {
    if (merged_) return y;
    auto h = dropout_ > 0 ? lora_dropout(x) : x;
    return y + lora_B(lora_A(h)) * scaling_;  // PEFT's order: result + lora_B(lora_A(dropout(x))) * scaling
  }

  /// \brief scaling * B A: the update merge adds to the base weight, (out, in).
  [[nodiscard]] torch::Tensor delta_weight() const {
    return torch::matmul(lora_B->weight, lora_A->weight) * scaling_;
  }

  [[nodiscard]] int64_t rank() const { return rank_; }
  [[nodiscard]] double alpha() const { return alpha_; }
  [[nodiscard]] double dropout() const { return dropout_; }
  [[nodiscard]] double scaling() const { return scaling_; }
  [[nodiscard]] bool merged() const override { return merged_; }

  /// \brief W += scaling B A; the branch then adds nothing. No-op when already merged.
  void merge(torch::nn::LinearImpl& base) {
    if (merged_) return;
    torch::NoGradGuard no_grad;
    base.weight.add_(delta_weight().to(base.weight.scalar_type()));
    merged_ = true;
  }
  /// \brief W -= scaling B A (undoes merge up to float rounding). No-op when not merged.
  void unmerge(torch::nn::LinearImpl& base) {
    if (!merged_) return;
    torch::NoGradGuard no_grad;
    base.weight.sub_(delta_weight().to(base.weight.scalar_type()));
    merged_ = false;
  }

  torch::nn::Linear lora_A, lora_B;  // (r, in), (out, r); PEFT's names
  torch::nn::Dropout lora_dropout;

private:
  int64_t rank_;
  double alpha_, dropout_, scaling_;
  bool merged_ = false;
};

namespace detail {

// A module path belongs to a LoRA branch itself (".lora_A", ".lora_B", ".lora_dropout").
[[nodiscard]] inline bool is_lora_module(const std::string& path) {
  const auto dot = path.rfind('.');
  return std::string_view(path).substr(dot == std::string::npos ? 0 : dot + 1).starts_with("lora_");
}

/// \brief Every linear layer of `root` with its path (LoRA's own A and B left out).
[[nodiscard]] inline std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> linear_layers(
    torch::nn::Module& root) {
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> out;
  for (const auto& item : root.named_modules("", /*include_self=*/false)) {
    if (dynamic_cast<torch::nn::LinearImpl*>(item.value().get()) == nullptr || is_lora_module(item.key())) continue;
    out.emplace_back(item.key(), item.value());
  }
  return out;
}

/// \brief Every layer of `root` carrying a LoRA branch, with its path.
struct LoraLayer {
  std::string path;
  AdaptableLinearImpl* linear;
  LoraBranch* branch;
};
[[nodiscard]] inline std::vector<LoraLayer> lora_layers(torch::nn::Module& root) {
  std::vector<LoraLayer> out;
  for (auto& [path, module] : linear_layers(root)) {
    auto* linear = dynamic_cast<AdaptableLinearImpl*>(module.get());
    auto* branch = linear != nullptr ? dynamic_cast<LoraBranch*>(linear->branch.get()) : nullptr;
    if (branch != nullptr) out.push_back({path, linear, branch});
  }
  return out;
}

// "a, b, c" of the distinct linear-layer names of `root`, layer indices written N.
[[nodiscard]] inline std::string linear_layer_names(torch::nn::Module& root) {
  std::set<std::string> names;
  for (const auto& entry : linear_layers(root)) names.insert(with_layer_index_as_n(entry.first));
  std::ostringstream os;
  bool first = true;
  for (const auto& n : names) {
    os << (first ? "" : ", ") << n;
    first = false;
  }
  return names.empty() ? std::string("(none)") : os.str();
}

}  // namespace detail

/// \brief Whether encoder E builds the linear layers LoRA targets as AdaptableLinear (the
///        layer with a branch slot; a plain torch::nn::Linear cannot take a branch). True
///        for Bert, GptNeox and Llama (holders and modules); a user encoder built from
///        AdaptableLinear opts in with
///        `template <> inline constexpr bool contaccum::has_adaptable_linears<MyEncoder> = true;`
///        (next to MyEncoder, before any use).
template <class E>
inline constexpr bool has_adaptable_linears = false;
template <>
inline constexpr bool has_adaptable_linears<Bert> = true;
template <>
inline constexpr bool has_adaptable_linears<BertImpl> = true;
template <>
inline constexpr bool has_adaptable_linears<GptNeox> = true;
template <>
inline constexpr bool has_adaptable_linears<GptNeoxImpl> = true;
template <>
inline constexpr bool has_adaptable_linears<Llama> = true;
template <>
inline constexpr bool has_adaptable_linears<LlamaImpl> = true;

namespace detail {
template <class M>
inline constexpr bool lora_needs_an_encoder_with_has_adaptable_linears_or_a_TwoTowerModel_of_them = false;
}  // namespace detail

/// \brief A TwoTowerModel (DualEncoder) whose towers have AdaptableLinear layers.
template <class M>
concept AdaptableLinearTowers = TwoTowerModel<M> && has_adaptable_linears<tower_type<M>>;

/// \brief A model LoRA can prepare: an encoder whose linear layers are AdaptableLinear
///        (has_adaptable_linears), or a model with AdaptableLinearTowers. Which layers get
///        a branch is decided at run time by `target_modules`.
template <class M>
concept LoraAdaptable = (ParameterModule<M> && (has_adaptable_linears<M> || AdaptableLinearTowers<M>)) ||
                        detail::lora_needs_an_encoder_with_has_adaptable_linears_or_a_TwoTowerModel_of_them<M>;

/// \brief Adapter: LoRA on the linear layers whose path matches `target_modules`. Works
///        on a LoraAdaptable model (Bert, GptNeox, a DualEncoder of them).
///
/// \code
/// contaccum::LoRA lora{.rank = 16, .alpha = 32, .target_modules = "query_key_value"};
/// lora.prepare(model);                 // or let the Trainer call it
/// ... train ...
/// contaccum::merge_lora(model);        // W += (alpha / r) B A in every adapted layer
/// contaccum::save_gpt_neox(model, "out/merged");
/// \endcode
struct LoRA {
  static constexpr std::string_view name = "lora";

  int64_t rank = 8;        ///< r
  double alpha = 8.0;      ///< lora_alpha; the update is scaled by alpha / r
  double dropout = 0.0;    ///< lora_dropout, on the branch input
  std::string target_modules =
      "query|key|value|dense|query_key_value|dense_h_to_4h|dense_4h_to_h|q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|"
      "down_proj";

  /// \brief Freezes every parameter of `model`, then installs a fresh branch (trainable A
  ///        and B) in each matching layer. Throws invalid_input for a bad setting, a
  ///        pattern matching no layer (the error lists the linear layers there are), a
  ///        matching layer that cannot take a branch, or one that already has a branch.
  template <LoraAdaptable Model>
  void prepare(Model& model) const {
    validate();
    auto& root = detail::module_of(model);
    const auto pattern = detail::compile_module_pattern(target_modules, "LoRA.target_modules");
    const auto layers = detail::linear_layers(root);
    std::vector<std::pair<std::string, AdaptableLinearImpl*>> chosen;
    for (const auto& [path, module] : layers) {
      if (!detail::module_path_matches(pattern, path)) continue;
      auto* linear = dynamic_cast<AdaptableLinearImpl*>(module.get());
      detail::require(linear != nullptr, "LoRA: layer ", path, " matches target_modules but is a plain ",
                      "torch::nn::Linear; build it as contaccum::AdaptableLinear");
      detail::require(!linear->branch, "LoRA: layer ", path,
                      " already carries an adapter branch (prepare called twice?)");
      chosen.emplace_back(path, linear);
    }
    detail::require(!chosen.empty(), "LoRA: target_modules \"", target_modules, "\" matches none of the ",
                    layers.size(), " linear layers; their names (N = layer index): ", detail::linear_layer_names(root));
    for (auto& p : root.parameters()) p.requires_grad_(false);
    for (auto& [path, linear] : chosen) {
      auto branch = std::make_shared<LoraBranch>(*linear, rank, alpha, dropout);
      linear->register_module("lora_A", branch->lora_A);
      linear->register_module("lora_B", branch->lora_B);
      linear->register_module("lora_dropout", branch->lora_dropout);
      branch->lora_dropout->train(linear->is_training());
      linear->branch = std::move(branch);
    }
  }

  /// \brief Throws invalid_input naming the field when a setting is out of range.
  void validate() const {
    detail::require(rank > 0, "LoRA: rank must be positive, got ", rank);
    detail::require(std::isfinite(alpha) && alpha > 0, "LoRA: alpha must be positive, got ", alpha);
    detail::require(dropout >= 0 && dropout < 1, "LoRA: dropout must be in [0, 1), got ", dropout);
  }
};

/// \brief Adds scaling B A into the base weight of every LoRA layer of `model` (module or
///        holder); outputs are unchanged up to rounding, and a merged model saves as a
///        plain Hugging Face model (save_bert / save_gpt_neox). Returns the layers merged now.
template <class Model>
int64_t merge_lora(Model& model) {
  int64_t n = 0;
  for (auto& l : detail::lora_layers(detail::module_of(model))) {
    n += l.branch->merged() ? 0 : 1;
    l.branch->merge(*l.linear);
  }
  return n;
}

/// \brief Subtracts scaling B A from every merged LoRA layer again (training can go on).
///        Returns the layers unmerged now.
template <class Model>
int64_t unmerge_lora(Model& model) {
  int64_t n = 0;
  for (auto& l : detail::lora_layers(detail::module_of(model))) {
    n += l.branch->merged() ? 1 : 0;
    l.branch->unmerge(*l.linear);
  }
  return n;
}

}  // namespace contaccum
