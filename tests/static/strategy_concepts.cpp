// Compile-time tests of the strategy family's concepts: the two axes (encode schedule,
// negative pool), the plans they make, the optional abilities named as refinements, and
// that each concept rejects what it should. Compiling this file is the test.
#include <contaccum/contaccum.hpp>

#include "support/helpers.hpp"

namespace ca = contaccum;
using Dual = ca::DualEncoder<ca::Bert, ca::ClsPooling>;

namespace {
// A loss that only scores: no similarity, no symmetric flag.
struct OpaqueLoss {
  torch::Tensor operator()(const ca::LossInputs& in) const { return in.queries.sum(); }
};
// A bank with rings but no score cache (so no block size either).
struct PlainBank {
  using config_type = ca::BankConfig;
  explicit PlainBank(config_type) {}
  void enqueue(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {}
  torch::Tensor queries() const { return {}; }
  torch::Tensor positives() const { return {}; }
  torch::Tensor hard_negatives() const { return {}; }
  void begin_step() {}
  void commit_step() {}
  void rollback_step() {}
  void clear() {}
};
// A collective that forgot reduce_gradients.
struct HalfCollective {
  ca::LossInputs exchange(const ca::LossInputs& in) const { return in; }
  int64_t world_size() const { return 1; }
  int64_t rank() const { return 0; }
};
}  // namespace

// Losses: the ability a score-caching bank needs is a named refinement.
static_assert(ca::ContrastiveLoss<OpaqueLoss> && !ca::SimilarityAwareLoss<OpaqueLoss>,
              "a loss need not name its similarity to train");
static_assert(ca::SimilarityAwareLoss<ca::InfoNCE<>> && ca::SimilarityAwareLoss<ca::InfoNCE<ca::Cosine>>);
static_assert(!ca::ContrastiveLoss<ca::DotProduct>, "a similarity is not a loss");

// Banks: the score cache is an optional, named ability.
static_assert(ca::Bank<PlainBank> && !ca::ScoreCachingBank<PlainBank>);
static_assert(ca::ScoreCachingBank<ca::DualBank>);
static_assert(!ca::Bank<ca::BankScoreCache>, "a score cache alone is not a bank");

// Collectives.
static_assert(ca::Collective<ca::SingleProcess>);
static_assert(!ca::Collective<HalfCollective>, "a collective must reduce gradients");

// The two axes, and each rejects the other.
static_assert(ca::EncodeSchedule<ca::Direct> && ca::EncodeSchedule<ca::CachedReplay>);
static_assert(ca::EncodeScheduleFor<ca::CachedReplay, Dual> && ca::EncodeScheduleFor<ca::Direct, test::LookupBiEncoder>);
static_assert(!ca::EncodeSchedule<ca::Step> && !ca::EncodeSchedule<ca::DualBank>, "a pool is not a schedule");
static_assert(!ca::EncodeScheduleFor<ca::Direct, ca::Bert>, "a schedule encodes bi-encoders");
static_assert(ca::NegativePool<ca::MicroBatch> && ca::NegativePool<ca::Step> && ca::NegativePool<ca::Banked<ca::DualBank>> &&
              ca::NegativePool<ca::Banked<PlainBank>>);
static_assert(!ca::NegativePool<ca::Direct> && !ca::NegativePool<ca::DualBank>, "a schedule or a bank is not a pool");
static_assert(ca::NegativePoolFor<ca::Banked<>, OpaqueLoss>, "a bank serves a loss that does not name its similarity");

// Plans: every pair means something except CachedReplay x MicroBatch.
static_assert(ca::AccumulationPlan<ca::Direct, ca::MicroBatch> && ca::AccumulationPlan<ca::Direct, ca::Step> &&
              ca::AccumulationPlan<ca::CachedReplay, ca::Step> && ca::AccumulationPlan<ca::Direct, ca::Banked<>> &&
              ca::AccumulationPlan<ca::CachedReplay, ca::Banked<>>);
static_assert(!ca::AccumulationPlan<ca::CachedReplay, ca::MicroBatch>, "CachedReplay x MicroBatch means nothing");
static_assert(!ca::AccumulationPlan<ca::Step, ca::Direct>, "the axes are ordered: schedule, then pool");

// The aliases are the plans of the table in strategy/strategies.hpp.
static_assert(std::same_as<ca::FullBatch<>, ca::Accumulate<ca::Direct, ca::Step>>);
static_assert(std::same_as<ca::GradAccum<>, ca::Accumulate<ca::Direct, ca::MicroBatch>>);
static_assert(std::same_as<ca::GradCache<>, ca::Accumulate<ca::CachedReplay, ca::Step>>);
static_assert(std::same_as<ca::ContAccum<>, ca::Accumulate<ca::Direct, ca::Banked<ca::DualBank>>>);
static_assert(std::same_as<ca::ContAccumOverGradCache<>, ca::Accumulate<ca::CachedReplay, ca::Banked<ca::DualBank>>>);
static_assert(ca::GradCache<>::name == "GradCache" && ca::ContAccumOverGradCache<>::name == "ContAccumOverGradCache" &&
              ca::ContAccum<PlainBank>::name == "ContAccum");

// Strategies: checked against archetypes, so they train any bi-encoder with any loss.
static_assert(ca::Strategy<ca::ContAccumOverGradCache<>> && ca::Strategy<ca::ContAccum<PlainBank>>);
static_assert(ca::StrategyFor<ca::ContAccumOverGradCache<>, Dual, ca::InfoNCE<ca::Cosine>>);
static_assert(ca::StrategyFor<ca::GradCache<>, test::LookupBiEncoder, OpaqueLoss>);
static_assert(!ca::Strategy<ca::Direct> && !ca::Strategy<ca::Banked<>>, "an axis alone is not a strategy");
static_assert(!ca::StrategyFor<ca::GradAccum<>, Dual, ca::Cosine>, "the loss slot takes a loss");
