#pragma once
/// \file
/// \brief The fine-tuning methods of the compute-optimal grid and planner: a Method names an
///        adapter (its `name`), says whether it takes one integer setting (k, r), and
///        carries the adapter's cost on a GPT-NeoX shape, so the planner can price a method
///        it only knows by value. The four methods of the paper are built in
///        (Method::full, block_freeze, lora, bias_only); any CostedAdapter becomes one with
///        `method_of<A>()` (or `method_of<A>("setting")` for an adapter with a setting).
///
/// A setting is applied by the adapter's `with_setting(a, s)` customisation (found by
/// argument-dependent lookup, beside the adapter): a copy of `a` with its setting `s`. The
/// built-in ones: BlockFreeze's k (trainable_blocks) and LoRA's r (rank; alpha scaled with
/// it, so alpha / r stays as the prototype had it).
///
/// \code
/// // A user adapter (a CostedAdapter, compute/adapter_cost.hpp) with a setting:
/// namespace mine {
/// struct TopKNorms { static constexpr std::string_view name = "top_k_norms"; int64_t k = 1; ... };
/// inline TopKNorms with_setting(const TopKNorms& a, int64_t k) { auto b = a; b.k = k; return b; }
/// }
/// const auto top_k = contaccum::method_of<mine::TopKNorms>("k");  // "top_k_norms", setting k
/// double f = contaccum::method_flops_per_token(pythia_70m, top_k, 2);
/// \endcode

#include <contaccum/adapters/block_freeze.hpp>
#include <contaccum/adapters/lora.hpp>
#include <contaccum/compute/adapter_cost.hpp>
#include <contaccum/compute/flops_detailed.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/gpt_neox.hpp>

#include <concepts>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// \brief BlockFreeze with k = `trainable_blocks`.
[[nodiscard]] inline BlockFreeze with_setting(const BlockFreeze&, int64_t trainable_blocks) {
  return {.trainable_blocks = trainable_blocks};
}
/// \brief LoRA with rank r = `rank`; alpha becomes (alpha / rank) x r, the prototype's scaling kept.
[[nodiscard]] inline LoRA with_setting(const LoRA& prototype, int64_t rank) {
  LoRA out = prototype;
  out.alpha = prototype.alpha / static_cast<double>(prototype.rank) * static_cast<double>(rank);
  out.rank = rank;
  return out;
}

namespace detail {
template <class A>
inline constexpr bool the_adapter_has_no_with_setting_found_by_ADL = false;
template <class A>
concept SettableAdapterImpl = requires(const A& a, int64_t s) {
  { with_setting(a, s) } -> std::same_as<A>;
};
}  // namespace detail

/// \brief A CostedAdapter with one integer setting a grid varies: `with_setting(a, s)`
///        returns a copy of `a` with setting s (BlockFreeze: k, LoRA: r).
template <class A>
concept SettableAdapter =
    CostedAdapter<A> && (detail::SettableAdapterImpl<A> || detail::the_adapter_has_no_with_setting_found_by_ADL<A>);

/// \brief A fine-tuning method of the grid and the planner. Compared by name, the name that
///        grid and fits files store ("full", "block_freeze", "lora", "bias_only", or a user
///        adapter's `name`).
///
/// \code
/// contaccum::GridRecord r{.method = contaccum::Method::lora, .setting = 8, ...};
/// const auto mine = contaccum::method_of<mine::LayerNormOnly>();  // a user adapter's method
/// \endcode
struct Method {
  std::string_view name;     ///< the adapter's `name`; must outlive the Method (A::name does)
  std::string_view setting;  ///< what the setting means ("k", "r"); empty: the method takes none
  /// The method's adapter priced on a GPT-NeoX shape with a setting: the paper's training
  /// FLOPs per token (training_flops_per_token at seq_len 0) and N_t. Null for a Method made
  /// by hand rather than by method_of: the planner cannot price it.
  double (*cost_per_token)(const GptNeoxConfig&, std::optional<int64_t>) = nullptr;
  int64_t (*trainable_count)(const GptNeoxConfig&, std::optional<int64_t>) = nullptr;

  static const Method full, block_freeze, lora, bias_only;  ///< the paper's four methods

  friend constexpr bool operator==(const Method& a, const Method& b) { return a.name == b.name; }
};

namespace detail {

// The adapter a grid cell or the planner builds for a method before its setting: A{}, and
// for LoRA the compute-optimal recipe's four GPT-NeoX linears.
template <class A>
[[nodiscard]] A method_prototype() {
  return A{};
}
template <>
[[nodiscard]] inline LoRA method_prototype<LoRA>() {
  return LoRA{.target_modules = "query_key_value|dense|dense_h_to_4h|dense_4h_to_h"};
}

// `prototype` with `setting` applied, when there is one (validate_setting has checked it).
template <CostedAdapter A>
[[nodiscard]] A with_method_setting(A prototype, std::optional<int64_t> setting) {
  if constexpr (SettableAdapter<A>) {
    if (setting) return with_setting(prototype, *setting);
  }
  return prototype;
}

template <CostedAdapter A>
double method_cost_per_token(const GptNeoxConfig& c, std::optional<int64_t> setting) {
  return training_flops_per_token(c, with_method_setting(method_prototype<A>(), setting), 0);  // the paper's formula
}
template <CostedAdapter A>
int64_t method_trainable_count(const GptNeoxConfig& c, std::optional<int64_t> setting) {
  return trainable_non_embedding_parameters(c, with_method_setting(method_prototype<A>(), setting));
}

}  // namespace detail

/// \brief The method of adapter A, which takes no setting (FullFineTune, BiasOnly, ...).
template <CostedAdapter A>
[[nodiscard]] constexpr Method method_of() {
  return {std::string_view(A::name), "", &detail::method_cost_per_token<A>, &detail::method_trainable_count<A>};
}

/// \brief The method of adapter A with one integer setting, called `setting` in tables
///        ("k", "r"); the setting is applied with `with_setting`.
template <SettableAdapter A>
[[nodiscard]] constexpr Method method_of(std::string_view setting) {
  return {std::string_view(A::name), setting, &detail::method_cost_per_token<A>, &detail::method_trainable_count<A>};
}

inline constexpr Method Method::full = method_of<FullFineTune>();
inline constexpr Method Method::block_freeze = method_of<BlockFreeze>("k");
inline constexpr Method Method::lora = method_of<LoRA>("r");
inline constexpr Method Method::bias_only = method_of<BiasOnly>();

/// \brief The paper's four methods, in its order.
inline constexpr Method all_methods[] = {Method::full, Method::block_freeze, Method::lora, Method::bias_only};

/// \brief The method's name, as its adapter spells it ("full", "block_freeze", "lora", "bias_only", ...).
[[nodiscard]] constexpr std::string_view method_name(const Method& m) { return m.name; }

/// \brief The Method named `name`: one of the paper's four or of `extra` (user methods, made
///        with method_of). Throws invalid_input naming `where` and the names it knows.
[[nodiscard]] inline Method parse_method(std::string_view name, std::string_view where = "method",
                                         const std::vector<Method>& extra = {}) {
  std::vector<Method> known(std::begin(all_methods), std::end(all_methods));
  known.insert(known.end(), extra.begin(), extra.end());
  std::string names;
  for (std::size_t i = 0; i < known.size(); ++i) {
    if (known[i].name == name) return known[i];
    names += detail::cat(i == 0 ? "" : i + 1 == known.size() ? " or " : ", ", known[i].name);
  }
  detail::require(false, where, ": unknown fine-tuning method \"", name, "\" (expected ", names, ")");
  return Method::full;
}

/// \brief What the method's setting means: k trainable blocks (block_freeze), the LoRA
///        rank r (lora); empty for a method without one (full, bias_only).
[[nodiscard]] constexpr std::string_view setting_name(const Method& m) { return m.setting; }

/// \brief "k=2", "r=8", or "-" for a method without a setting.
[[nodiscard]] inline std::string describe_setting(const Method& m, std::optional<int64_t> setting) {
  if (!setting) return "-";
  return std::string(setting_name(m)) + "=" + std::to_string(*setting);
}

/// \brief Throws invalid_input (naming `where`) when a method's setting is missing,
///        present where it has none, or not positive.
inline void validate_setting(const Method& m, std::optional<int64_t> setting, std::string_view where) {
  const bool needs = !m.setting.empty();
  detail::require(needs == setting.has_value(), where, ": method ", method_name(m),
                  needs ? detail::cat(" needs a setting (", setting_name(m), ")")
                        : std::string(" takes no setting, got ") + std::to_string(setting.value_or(0)));
  detail::require(!setting || *setting > 0, where, ": ", setting_name(m), " must be positive, got ",
                  setting.value_or(0));
}

}  // namespace contaccum
