// Compile-time tests: concept satisfaction of every policy, and that wrong combinations
// are rejected. Compiling this file is the test.
#include <contaccum/contaccum.hpp>

#include "support/helpers.hpp"

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
static_assert(!ca::Adapter<ca::GradAccum<>>);
static_assert(ca::Adapter<ca::BiasOnly> && ca::AdapterFor<ca::BiasOnly, Dual> &&
              ca::AdapterFor<ca::BiasOnly, ca::GptNeox>);
static_assert(ca::Adapter<ca::BlockFreeze> && ca::AdapterFor<ca::BlockFreeze, Shared> &&
              ca::AdapterFor<ca::BlockFreeze, ca::DualEncoder<ca::GptNeox, ca::MeanPooling>>);
static_assert(ca::BlockFreezable<ca::Bert> && ca::BlockFreezable<ca::GptNeox>);
static_assert(!ca::BlockFreezable<test::LookupBiEncoder>, "a lookup table has no blocks to freeze");
static_assert(ca::Adapter<ca::LoRA> && ca::AdapterFor<ca::LoRA, Dual> && ca::AdapterFor<ca::LoRA, ca::GptNeox>);
// ContAccum's bank slot takes a Bank: ContAccum<RingBuffer> would not satisfy its constraint.
template <class B>
concept ContAccumAccepts = requires { typename ca::ContAccum<B>; };
static_assert(ContAccumAccepts<ca::DualBank>);
static_assert(!ContAccumAccepts<ca::RingBuffer>, "ContAccum<Bank>: RingBuffer is not a Bank");
