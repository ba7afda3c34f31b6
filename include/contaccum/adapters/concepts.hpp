#pragma once
/// \file
/// \brief The adapter family's concepts. An adapter decides which parameters of a model
///        train (and may add its own); the Trainer's optimizer sees exactly those.
///
///  * `Adapter<A>`: a policy with a `name`, default-constructible (the Trainer's default).
///  * `AdapterFor<A, Model>`: `a.prepare(model)` compiles. Every adapter constrains its
///    `prepare` on what it needs from the model, so this is true exactly when preparing
///    would compile: FullFineTune and BiasOnly need a `ParameterModule`; BlockFreeze a
///    `BlockFreezableModel` (adapters/block_freeze.hpp); LoRA a `LoraAdaptable` model
///    (adapters/lora.hpp).
///  * `ParameterModule<M>`: a torch::nn::Module or a holder of one, whose parameters can be
///    listed by name (`module_of(model).named_parameters()`).
///  * `TwoTowerModel<M>`: a bi-encoder built from two encoder towers, `query_encoder` and
///    `passage_encoder` of one type `tower_type<M>` (DualEncoder, either tower policy).
///
/// A concept that fails names what is missing: each one ORs in a term that is always false
/// and reads as the reason (`detail::the_model_is_neither_a_torch_module_nor_a_module_holder`),
/// which the compiler quotes in its note. Every concept here can be tested with
/// `static_assert(!AdapterFor<A, Model>)`; hard errors are left to the places that are
/// reached by a misuse (the Trainer's static_asserts).
///
/// \code
/// using Dual = contaccum::DualEncoder<contaccum::Bert, contaccum::ClsPooling>;
/// static_assert(contaccum::AdapterFor<contaccum::BlockFreeze, Dual>);
/// static_assert(!contaccum::AdapterFor<contaccum::BlockFreeze, MyLookupTable>);  // no blocks to freeze
/// \endcode

#include <torch/torch.h>

#include <concepts>
#include <memory>
#include <string_view>
#include <type_traits>
#include <utility>

namespace contaccum {
namespace detail {

// The failure terms: always false, named for the sentence a failed concept should say.
template <class M>
inline constexpr bool the_model_is_neither_a_torch_module_nor_a_module_holder = false;
template <class M>
inline constexpr bool the_model_has_no_query_encoder_and_passage_encoder_towers_of_one_type = false;
template <class A>
inline constexpr bool an_adapter_needs_a_default_constructor_and_a_static_name = false;
template <class A, class M>
inline constexpr bool the_adapter_has_no_prepare_that_accepts_this_model = false;

template <class M>
concept ParameterModuleImpl = std::derived_from<M, torch::nn::Module> || requires(M& m) {
  requires std::derived_from<std::remove_cvref_t<decltype(*m)>, torch::nn::Module>;
};

template <class M>
concept TwoTowerModelImpl = requires(M& m) {
  m->query_encoder;
  m->passage_encoder;
  requires std::same_as<std::remove_cvref_t<decltype(m->query_encoder)>,
                        std::remove_cvref_t<decltype(m->passage_encoder)>>;
  { m->query_encoder.ptr() } -> std::convertible_to<std::shared_ptr<torch::nn::Module>>;
};

template <class A>
concept AdapterImpl = std::default_initializable<A> && requires {
  { A::name } -> std::convertible_to<std::string_view>;
};

}  // namespace detail

/// \brief A torch::nn::Module, or a holder of one (Bert, GptNeox, DualEncoder<...>): what an
///        adapter can list the parameters of by name.
template <class M>
concept ParameterModule =
    detail::ParameterModuleImpl<M> || detail::the_model_is_neither_a_torch_module_nor_a_module_holder<M>;

/// \brief The torch::nn::Module of `model`, given as a holder (Bert, DualEncoder<...>) or as
///        the module itself.
///
/// \code
/// for (auto& p : contaccum::module_of(model).named_parameters()) p.value().requires_grad_(p.key().ends_with("bias"));
/// \endcode
template <ParameterModule M>
[[nodiscard]] torch::nn::Module& module_of(M& model) {
  if constexpr (std::derived_from<M, torch::nn::Module>) return model;
  else return *model;
}

/// \brief A bi-encoder made of two encoder towers of one type, `query_encoder` and
///        `passage_encoder` (the same module under SharedTower): an adapter that works on an
///        encoder works on the towers of such a model (DualEncoder).
template <class M>
concept TwoTowerModel = detail::TwoTowerModelImpl<M> ||
                        detail::the_model_has_no_query_encoder_and_passage_encoder_towers_of_one_type<M>;

/// \brief The encoder type of a TwoTowerModel's towers (Bert for DualEncoder<Bert, ...>).
template <TwoTowerModel M>
using tower_type = std::remove_cvref_t<decltype(std::declval<M&>()->query_encoder)>;

/// \brief An adapter policy: default-constructible (the Trainer's default argument) with a
///        `static constexpr std::string_view name` (used in reports and the planner's records).
template <class A>
concept Adapter = detail::AdapterImpl<A> || detail::an_adapter_needs_a_default_constructor_and_a_static_name<A>;

/// \brief An adapter that can prepare Model: `a.prepare(model)` (a const adapter) marks the
///        trainable parameters. Each adapter constrains `prepare` on what it needs, so this
///        holds exactly when preparing compiles.
template <class A, class Model>
concept AdapterFor = Adapter<A> && (requires(const A& a, Model& m) { a.prepare(m); } ||
                                    detail::the_adapter_has_no_prepare_that_accepts_this_model<A, Model>);

}  // namespace contaccum
