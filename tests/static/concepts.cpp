// Compile-time tests: concept satisfaction of every policy, and that wrong combinations
// are rejected. Compiling this file is the test.
#include <contaccum/contaccum.hpp>

#include "support/helpers.hpp"

#include <concepts>
#include <string_view>

namespace ca = contaccum;
using Dual = ca::DualEncoder<ca::Bert, ca::ClsPooling>;
using Shared = ca::DualEncoder<ca::Bert, ca::MeanPooling, ca::SharedTower>;

static_assert(ca::Encoder<ca::Bert>);
static_assert(!ca::Encoder<ca::ClsPooling>, "a pooling reader is not an encoder");
static_assert(!ca::Encoder<torch::nn::Linear>, "Linear takes one tensor: not an Encoder");
static_assert(ca::Pooler<ca::ClsPooling> && ca::Pooler<ca::MeanPooling>);
static_assert(!ca::Pooler<ca::Bert>, "an encoder is not a pooling reader");
static_assert(ca::Similarity<ca::DotProduct> && ca::Similarity<ca::Cosine>);
static_assert(!ca::Similarity<ca::MeanPooling>);
static_assert(ca::ContrastiveLoss<ca::InfoNCE<>> && ca::ContrastiveLoss<ca::InfoNCE<ca::Cosine>>);
static_assert(!ca::ContrastiveLoss<ca::Cosine>, "a similarity alone is not a loss");
static_assert(ca::BiEncoder<Dual> && ca::BiEncoder<Shared> && ca::BiEncoder<test::LookupBiEncoder>);
static_assert(!ca::BiEncoder<ca::Bert>, "a single encoder has no query/passage towers");
static_assert(ca::Bank<ca::DualBank>);
static_assert(!ca::Bank<ca::RingBuffer>, "a single ring is not a dual bank");
static_assert(ca::Collective<ca::SingleProcess>);

static_assert(ca::Strategy<ca::FullBatch<>> && ca::Strategy<ca::GradAccum<>> && ca::Strategy<ca::GradCache<>> &&
              ca::Strategy<ca::ContAccum<ca::DualBank>>);
static_assert(!ca::Strategy<ca::DualBank>, "a bank is not a strategy");
static_assert(!ca::Strategy<ca::InfoNCE<>>, "a loss is not a strategy");
static_assert(ca::StrategyFor<ca::ContAccum<>, Dual, ca::InfoNCE<>>);
static_assert(ca::StrategyFor<ca::GradCache<>, Shared, ca::InfoNCE<ca::Cosine>>);
static_assert(!ca::StrategyFor<ca::GradCache<>, ca::Bert, ca::InfoNCE<>>, "strategies train bi-encoders only");
static_assert(!ca::StrategyFor<ca::GradCache<>, Dual, ca::Cosine>, "the loss slot takes a loss");
static_assert(ca::Adapter<ca::FullFineTune> && ca::AdapterFor<ca::FullFineTune, Dual>);
static_assert(ca::Adapter<ca::BiasOnly> && ca::AdapterFor<ca::BiasOnly, Dual> &&
              ca::AdapterFor<ca::BiasOnly, ca::GptNeox>);
static_assert(ca::Adapter<ca::BlockFreeze> && ca::AdapterFor<ca::BlockFreeze, Shared> &&
              ca::AdapterFor<ca::BlockFreeze, ca::DualEncoder<ca::GptNeox, ca::MeanPooling>>);
static_assert(ca::BlockFreezable<ca::Bert> && ca::BlockFreezable<ca::GptNeox>);
static_assert(!ca::BlockFreezable<test::LookupBiEncoder>, "a lookup table has no blocks to freeze");
static_assert(ca::Adapter<ca::LoRA> && ca::AdapterFor<ca::LoRA, Dual> && ca::AdapterFor<ca::LoRA, ca::GptNeox>);

// Adapters: AdapterFor holds exactly where prepare compiles. Each adapter's prepare is
// constrained on what it needs: FullFineTune and BiasOnly a module with named parameters,
// BlockFreeze encoders with Transformer blocks (BlockFreezable) or towers of them, LoRA
// encoders built from AdaptableLinear (has_adaptable_linears) or towers of them.
namespace adapter_checks {
using NeoxDual = ca::DualEncoder<ca::GptNeox, ca::MeanPooling>;
using NeoxShared = ca::DualEncoder<ca::GptNeox, ca::LastTokenPooling, ca::SharedTower>;
struct PlainStruct {};  // not a torch module: nothing to prepare

static_assert(ca::ParameterModule<ca::Bert> && ca::ParameterModule<ca::BertImpl> && ca::ParameterModule<Dual> &&
              ca::ParameterModule<test::LookupBiEncoder>);
static_assert(!ca::ParameterModule<PlainStruct> && !ca::ParameterModule<int>);
static_assert(ca::TwoTowerModel<Dual> && ca::TwoTowerModel<Shared> && ca::TwoTowerModel<NeoxShared>);
static_assert(!ca::TwoTowerModel<ca::Bert>, "one encoder is not two towers");
static_assert(!ca::TwoTowerModel<test::LookupBiEncoder>, "a BiEncoder without encoder towers");
static_assert(std::same_as<ca::tower_type<Shared>, ca::Bert> && std::same_as<ca::tower_type<NeoxDual>, ca::GptNeox>);

static_assert(!ca::Adapter<PlainStruct>, "an adapter has a name");
static_assert(!ca::AdapterFor<ca::GradAccum<>, Dual>, "a strategy has no prepare: it is no adapter");

// FullFineTune and BiasOnly: any module with parameters, the lookup bi-encoder included.
static_assert(ca::AdapterFor<ca::FullFineTune, ca::Bert> && ca::AdapterFor<ca::FullFineTune, ca::GptNeox> &&
              ca::AdapterFor<ca::FullFineTune, Shared> && ca::AdapterFor<ca::FullFineTune, NeoxDual> &&
              ca::AdapterFor<ca::FullFineTune, test::LookupBiEncoder>);
static_assert(!ca::AdapterFor<ca::FullFineTune, PlainStruct>, "FullFineTune needs a module");
static_assert(ca::AdapterFor<ca::BiasOnly, ca::Bert> && ca::AdapterFor<ca::BiasOnly, Shared> &&
              ca::AdapterFor<ca::BiasOnly, NeoxShared> && ca::AdapterFor<ca::BiasOnly, test::LookupBiEncoder>);
static_assert(!ca::AdapterFor<ca::BiasOnly, PlainStruct>, "BiasOnly needs a module");

// BlockFreeze: an encoder with blocks, or a DualEncoder of them.
static_assert(ca::BlockFreezableModel<Dual> && ca::BlockFreezableModel<ca::Bert> &&
              ca::BlockFreezableTowers<NeoxShared> && !ca::BlockFreezableTowers<ca::GptNeox>);
static_assert(ca::AdapterFor<ca::BlockFreeze, ca::Bert> && ca::AdapterFor<ca::BlockFreeze, ca::GptNeox> &&
              ca::AdapterFor<ca::BlockFreeze, Dual> && ca::AdapterFor<ca::BlockFreeze, NeoxShared>);
static_assert(!ca::AdapterFor<ca::BlockFreeze, test::LookupBiEncoder>, "a lookup table has no blocks to freeze");
static_assert(!ca::AdapterFor<ca::BlockFreeze, torch::nn::Linear>, "a linear layer has no blocks");
static_assert(!ca::AdapterFor<ca::BlockFreeze, PlainStruct>);

// LoRA: encoders whose linear layers are AdaptableLinear, or a DualEncoder of them.
static_assert(ca::has_adaptable_linears<ca::Bert> && ca::has_adaptable_linears<ca::GptNeoxImpl> &&
              !ca::has_adaptable_linears<test::LookupBiEncoder>);
static_assert(ca::LoraAdaptable<NeoxShared> && ca::AdaptableLinearTowers<Dual> && !ca::LoraAdaptable<PlainStruct>);
static_assert(ca::AdapterFor<ca::LoRA, ca::Bert> && ca::AdapterFor<ca::LoRA, Shared> &&
              ca::AdapterFor<ca::LoRA, NeoxDual> && ca::AdapterFor<ca::LoRA, NeoxShared>);
static_assert(!ca::AdapterFor<ca::LoRA, test::LookupBiEncoder>, "a lookup table has no linear layer to adapt");
static_assert(!ca::AdapterFor<ca::LoRA, torch::nn::Linear>, "a plain torch::nn::Linear cannot take a branch");
static_assert(!ca::AdapterFor<ca::LoRA, PlainStruct>);

// The cost models' customisation (compute/adapter_cost.hpp): the four built-in adapters are
// costed; an adapter that only prepares is not, and neither is a non-adapter.
struct UncostedAdapter {
  static constexpr std::string_view name = "uncosted";
  template <ca::ParameterModule M>
  void prepare(M&) const {}
};
static_assert(ca::CostedAdapter<ca::FullFineTune> && ca::CostedAdapter<ca::BlockFreeze> &&
              ca::CostedAdapter<ca::LoRA> && ca::CostedAdapter<ca::BiasOnly>);
static_assert(ca::AdapterFor<UncostedAdapter, Dual> && !ca::CostedAdapter<UncostedAdapter>);
static_assert(!ca::CostedAdapter<PlainStruct>);
static_assert(ca::SettableAdapter<ca::BlockFreeze> && ca::SettableAdapter<ca::LoRA> &&
              !ca::SettableAdapter<ca::FullFineTune> && !ca::SettableAdapter<ca::BiasOnly>);
static_assert(ca::GridAdapter<ca::LoRA> && !ca::GridAdapter<UncostedAdapter>);
static_assert(ca::flops_per_token<ca::FullFineTune>(10, 0) == 60.0 &&
              ca::flops_per_token<ca::BlockFreeze>(10, 1) == 24.0);
static_assert(ca::Method::lora == ca::method_of<ca::LoRA>("r") && ca::Method::full.setting.empty() &&
              ca::Method::block_freeze.setting == "k");
}  // namespace adapter_checks

// ContAccum's bank slot takes a Bank: ContAccum<RingBuffer> would not satisfy its constraint.
template <class B>
concept ContAccumAccepts = requires { typename ca::ContAccum<B>; };
static_assert(ContAccumAccepts<ca::DualBank>);
static_assert(!ContAccumAccepts<ca::RingBuffer>, "ContAccum<Bank>: RingBuffer is not a Bank");
