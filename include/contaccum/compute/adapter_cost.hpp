#pragma once
/// \file
/// \brief The cost models' customisation point for adapters. The FLOP formulas
///        (compute/flops.hpp, compute/flops_detailed.hpp) and the memory model
///        (compute/memory_model.hpp) price an adapter on a model *shape*: a
///        ParameterInventory, the parameter tensors and linear layers of a Bert or GptNeox
///        listed from its config with the encoders' own names, on which the adapter marks
///        what trains, as its `prepare` would on the built encoder. An adapter can be costed
///        (`CostedAdapter<A>`) when two functions are found for it by argument-dependent
///        lookup, so a user declares them beside the adapter, in the adapter's namespace:
///
///     void mark_trainable(const A&, contaccum::ParameterInventory&);  // what prepare trains
///     contaccum::FlopFormula flop_formula(const A&);                  // which of the paper's formulas
///
/// `mark_trainable` sets ParameterEntry::trainable; an adapter that adds parameters (LoRA)
/// also adds their entries and marks the linear layers that carry a branch; one that runs
/// a frozen prefix without autograd (BlockFreeze) sets `first_trainable_layer`. The four
/// built-in adapters are customised at the end of this file.
///
/// \code
/// namespace mine {
/// struct LayerNormOnly {                       // trains the LayerNorms' weights and biases
///   static constexpr std::string_view name = "layer_norm_only";
///   template <contaccum::ParameterModule M> void prepare(M& model) const;
/// };
/// inline void mark_trainable(const LayerNormOnly&, contaccum::ParameterInventory& inv) {
///   for (auto& p : inv.params)
///     p.trainable = p.role == contaccum::ParameterRole::norm_weight || p.role == contaccum::ParameterRole::norm_bias;
/// }
/// constexpr contaccum::FlopFormula flop_formula(const LayerNormOnly&) { return contaccum::FlopFormula::frozen_base; }
/// }  // namespace mine
/// double f = contaccum::training_flops_per_token(pythia_70m, mine::LayerNormOnly{}, 0);  // 4N + 2N_t
/// \endcode

#include <contaccum/adapters/bias_only.hpp>
#include <contaccum/adapters/block_freeze.hpp>
#include <contaccum/adapters/concepts.hpp>
#include <contaccum/adapters/detail/modules.hpp>
#include <contaccum/adapters/full_fine_tune.hpp>
#include <contaccum/adapters/lora.hpp>
#include <contaccum/detail/error.hpp>

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace contaccum {

/// \brief The paper's training FLOPs per token (Ziarko et al. 2024, arXiv 2406.04165), N the
///        non-embedding parameters and N_t the trainable ones among them. A forward pass
///        costs 2N; a backward pass 2N for the activation gradients plus 2N for the weight
///        gradients, each only where it is needed.
enum class FlopFormula {
  full,           ///< 6N: full fine-tuning; both backward halves everywhere
  frozen_prefix,  ///< 2N + 4N_t: block freezing; no backward below the first trainable block
  frozen_base,    ///< 4N + 2N_t: LoRA, bias-only; activation gradients everywhere, weight gradients for N_t only
};

/// \brief What a parameter tensor is to the cost models.
enum class ParameterRole {
  embedding_table,  ///< word / position / token-type embeddings, GptNeox embed_in
  lm_head,          ///< GptNeox embed_out: allocated, never run by an embedding model
  weight,           ///< a linear layer's weight
  bias,             ///< a linear layer's bias
  norm_weight,      ///< a LayerNorm's weight
  norm_bias,        ///< a LayerNorm's bias
  lora,             ///< LoRA's A or B
};

/// \brief One parameter tensor of an encoder shape.
struct ParameterEntry {
  std::string path;  ///< encoder-relative name, e.g. "gpt_neox.layers.0.attention.dense.weight"
  int64_t numel = 0;
  ParameterRole role = ParameterRole::weight;
  int64_t block = -1;  ///< Transformer block index; -1 outside the blocks
  bool trainable = false;
};

/// \brief One linear layer of an encoder shape.
struct LinearEntry {
  std::string path;  ///< module path, e.g. "encoder.layer.3.intermediate.dense"
  int64_t in = 0, out = 0;
  bool bias = true;
  int64_t block = -1;       ///< -1: GptNeox's embed_out
  int64_t lora_rank = 0;    ///< set by LoRA; 0 = no branch
  double lora_dropout = 0;  ///< LoRA's dropout on the branch input
};

/// \brief One encoder shape (Bert or GptNeox): its parameters and linear layers, in
///        forward (named_parameters) order, and what an adapter made of them.
struct ParameterInventory {
  bool gpt_neox = false;  ///< GptNeox's layout (else Bert's)
  int64_t layers = 0, hidden = 0, heads = 0, intermediate = 0;
  std::vector<ParameterEntry> params;
  std::vector<LinearEntry> linears;
  /// The layer an adapter sets with set_first_trainable_layer: the embeddings and the
  /// blocks below it run under NoGradGuard (BlockFreeze: L - k). Empty: every block
  /// records its graph.
  std::optional<int64_t> first_trainable_layer;

  [[nodiscard]] const ParameterEntry* find(const std::string& path) const {
    for (const auto& p : params)
      if (p.path == path) return &p;
    return nullptr;
  }
  /// \brief Whether the parameter `path` exists and trains.
  [[nodiscard]] bool trains(const std::string& path) const {
    const auto* p = find(path);
    return p != nullptr && p->trainable;
  }
  [[nodiscard]] const LinearEntry& linear(const std::string& path) const {
    for (const auto& l : linears)
      if (l.path == path) return l;
    detail::require(false, "internal: no linear layer ", path);
    return linears.front();
  }
};

// The built-in adapters' customisations: what each prepare trains, on a shape.

/// \brief FullFineTune: everything trains.
inline void mark_trainable(const FullFineTune&, ParameterInventory& inv) {
  for (auto& p : inv.params) p.trainable = true;
}
constexpr FlopFormula flop_formula(const FullFineTune&) { return FlopFormula::full; }

/// \brief BlockFreeze: the last k blocks (and GptNeox's final LayerNorm) train; the
///        embeddings and the blocks below run without autograd.
inline void mark_trainable(const BlockFreeze& adapter, ParameterInventory& inv) {
  const auto k = adapter.trainable_blocks;
  detail::require(k >= 0 && k <= inv.layers, "BlockFreeze: trainable_blocks (k) = ", k, " is outside [0, ",
                  inv.layers, "]: the encoder has ", inv.layers, " blocks");
  for (auto& p : inv.params)
    p.trainable = (p.block >= inv.layers - k) || (inv.gpt_neox && p.path.starts_with("gpt_neox.final_layer_norm"));
  inv.first_trainable_layer = inv.layers - k;
}
constexpr FlopFormula flop_formula(const BlockFreeze&) { return FlopFormula::frozen_prefix; }

/// \brief BiasOnly: every parameter whose name ends in "bias".
inline void mark_trainable(const BiasOnly&, ParameterInventory& inv) {
  for (auto& p : inv.params) p.trainable = p.path.ends_with("bias");
}
constexpr FlopFormula flop_formula(const BiasOnly&) { return FlopFormula::frozen_base; }

/// \brief LoRA: everything is frozen; each linear layer target_modules selects gets a
///        trainable A (r, in) and B (out, r), registered after the layer's weight and bias.
inline void mark_trainable(const LoRA& adapter, ParameterInventory& inv) {
  adapter.validate();
  const auto pattern = detail::compile_module_pattern(adapter.target_modules, "LoRA.target_modules");
  int64_t chosen = 0;
  for (auto& l : inv.linears) {
    if (!detail::module_path_matches(pattern, l.path)) continue;
    ++chosen;
    l.lora_rank = adapter.rank;
    l.lora_dropout = adapter.dropout;
  }
  // A and B are registered on their layer, after its weight and bias (named_parameters order).
  std::vector<ParameterEntry> params;
  for (auto p : inv.params) {
    p.trainable = false;
    params.push_back(p);
    const auto layer = p.path.substr(0, p.path.rfind('.'));
    const auto l = std::find_if(inv.linears.begin(), inv.linears.end(),
                                [&](const LinearEntry& e) { return e.path == layer; });
    if (l == inv.linears.end() || l->lora_rank == 0 || !p.path.ends_with(l->bias ? ".bias" : ".weight")) continue;
    params.push_back({layer + ".lora_A.weight", l->lora_rank * l->in, ParameterRole::lora, l->block, true});
    params.push_back({layer + ".lora_B.weight", l->out * l->lora_rank, ParameterRole::lora, l->block, true});
  }
  inv.params = std::move(params);
  detail::require(chosen > 0, "LoRA: target_modules \"", adapter.target_modules, "\" matches none of the ",
                  inv.linears.size(), " linear layers of this shape");
}
constexpr FlopFormula flop_formula(const LoRA&) { return FlopFormula::frozen_base; }

namespace detail {
template <class A>
inline constexpr bool the_cost_models_find_no_mark_trainable_and_flop_formula_for_this_adapter_by_ADL = false;

template <class A>
concept CostedAdapterImpl = requires(const A& a, ParameterInventory& inv) {
  mark_trainable(a, inv);
  { flop_formula(a) } -> std::same_as<FlopFormula>;
};
}  // namespace detail

/// \brief An adapter the cost models can price: `mark_trainable(a, inventory)` and
///        `flop_formula(a)` are found by argument-dependent lookup (see the file comment).
template <class A>
concept CostedAdapter =
    Adapter<A> && (detail::CostedAdapterImpl<A> ||
                   detail::the_cost_models_find_no_mark_trainable_and_flop_formula_for_this_adapter_by_ADL<A>);

/// \brief The paper's training FLOPs per token under `formula`, for N non-embedding
///        parameters of which N_t train.
///
/// \code
/// // Pythia-70m, LoRA r = 8 on the four linears: 4 x 18915328 + 2 x 393216 = 76447744
/// auto cost = contaccum::flops_per_token(contaccum::FlopFormula::frozen_base, 18915328, 393216);
/// \endcode
[[nodiscard]] constexpr double flops_per_token(FlopFormula formula, double n, double n_trainable) {
  switch (formula) {
    case FlopFormula::full: return 6.0 * n;
    case FlopFormula::frozen_prefix: return 2.0 * n + 4.0 * n_trainable;
    case FlopFormula::frozen_base: return 4.0 * n + 2.0 * n_trainable;
  }
  return 0.0;
}

}  // namespace contaccum
