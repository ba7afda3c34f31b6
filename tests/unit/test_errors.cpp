// Bad input: each gets a clear error naming what was wrong, and loses nothing.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

using namespace contaccum;
using Dual = DualEncoder<Bert, ClsPooling>;

TEST_CASE("Mismatched query and positive counts are rejected", "[errors]") {
  Trainer<Dual, GradAccum<>> trainer(Dual(test::tiny_bert()), {.micro_batch_size = 4});
  auto b = test::tiny_data(1).next(8);
  b.positives = b.positives.slice(0, 7);
  CHECK_THROWS_WITH(trainer.step(b), Catch::Contains("8 queries but 7 positives"));
  auto c = test::tiny_data(1).next(8);
  c.hard_negatives = c.hard_negatives.slice(0, 5);
  CHECK_THROWS_WITH(trainer.step(c), Catch::Contains("5 hard negatives for 8 queries"));
  auto d = test::tiny_data(1).next(4);
  d.queries.attention_mask[2].zero_();
  CHECK_THROWS_WITH(trainer.step(d), Catch::Contains("PairBatch.queries row 2 has no real token"));
  CHECK(trainer.steps_done() == 0);
}

TEST_CASE("A hard-negative count that changes mid-run is rejected", "[errors]") {
  Trainer<Dual, ContAccum<>> trainer(Dual(test::tiny_bert()), {.micro_batch_size = 4}, ContAccum<>({.capacity = 8}));
  trainer.step(test::tiny_data(1).next(8));
  CHECK_THROWS_WITH(trainer.step(test::tiny_data(2).next(8)),
                    Catch::Contains("step 1: 2 hard negatives per query, but earlier steps had 1"));
}

TEST_CASE("An embedding width that changes is rejected by the bank", "[errors]") {
  torch::manual_seed(1);
  test::LookupBiEncoder narrow(64, 4), wide(64, 6);
  ContAccum<> strategy({.capacity = 8});
  InfoNCE<> loss;
  strategy.accumulate(narrow, loss, test::lookup_batch(0, 0, 4, 1), StepContext{0, 4});
  strategy.finish_step(true);
  CHECK_THROWS_WITH(strategy.accumulate(wide, loss, test::lookup_batch(4, 8, 4, 1), StepContext{1, 4}),
                    Catch::Contains("step 1: embeddings are 6 wide but the memory bank holds 4-wide ones"));
}

TEST_CASE("Query and passage embeddings of different widths are rejected", "[errors]") {
  struct Mismatched : test::LookupBiEncoderImpl {
    Mismatched() : LookupBiEncoderImpl(32, 4) {
      passages.set_data(torch::randn({32, 5}, torch::kFloat64));
    }
  };
  auto model = std::make_shared<Mismatched>();
  torch::nn::ModuleHolder<Mismatched> holder(model);
  GradAccum<> strategy;
  CHECK_THROWS_WITH(strategy.accumulate(holder, InfoNCE<>{}, test::lookup_batch(0, 0, 4, 0), StepContext{3, 4}),
                    Catch::Contains("step 3: query embeddings [4, 4] and passage embeddings [4, 5]"));
}

namespace {
// Scales embeddings by a factor that a test can set to NaN.
struct PoisonedImpl : torch::nn::Module {
  explicit PoisonedImpl(const BertConfig& c) : inner(register_module("inner", Dual(c))) {}
  torch::Tensor encode_queries(const TokenBatch& b) { return inner->encode_queries(b) * factor; }
  torch::Tensor encode_passages(const TokenBatch& b) { return inner->encode_passages(b); }
  std::vector<torch::Tensor> query_parameters() const { return inner->query_parameters(); }
  std::vector<torch::Tensor> passage_parameters() const { return inner->passage_parameters(); }
  Dual inner;
  double factor = 1.0;
};
TORCH_MODULE(Poisoned);
}  // namespace

TEST_CASE("A NaN or Inf loss stops the step: no update, bank unchanged, error names the step", "[errors]") {
  for (double poison : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    torch::manual_seed(3);
    Trainer<Poisoned, ContAccum<>> trainer(Poisoned(test::tiny_bert()), {.micro_batch_size = 4},
                                           ContAccum<>({.capacity = 8}));
    auto data = test::tiny_data(1);
    trainer.step(data.next(8));
    std::vector<torch::Tensor> before;
    for (const auto& p : trainer.model()->parameters()) before.push_back(p.detach().clone());
    const auto bank_before = trainer.strategy().bank().positive_ring().oldest_first().clone();

    trainer.model()->factor = poison;
    INFO("poison " << poison);
    try {
      trainer.step(data.next(8));
      FAIL("no error for a non-finite loss");
    } catch (const non_finite_loss& e) {
      CHECK(e.step() == 1);
      CHECK_THAT(e.what(), Catch::Contains("step 1: loss is"));
      CHECK_THAT(e.what(), Catch::Contains("no parameter was updated"));
    }
    auto after = trainer.model()->parameters();
    for (size_t i = 0; i < before.size(); ++i) CHECK(torch::equal(before[i], after[i]));
    CHECK(torch::equal(trainer.strategy().bank().positive_ring().oldest_first(), bank_before));
    // the run goes on once the input is sane again
    trainer.model()->factor = 1.0;
    CHECK(std::isfinite(trainer.step(data.next(8)).loss));
    CHECK(trainer.steps_done() == 2);
  }
}

TEST_CASE("Invalid trainer and bank settings are rejected", "[errors]") {
  CHECK_THROWS_WITH((Trainer<Dual, GradAccum<>>(Dual(test::tiny_bert()), {.micro_batch_size = 0})),
                    Catch::Contains("micro_batch_size must be positive"));
  CHECK_THROWS_WITH((Trainer<Dual, GradAccum<>>(Dual(test::tiny_bert()), {.learning_rate = -1})),
                    Catch::Contains("learning_rate must be positive"));
  CHECK_THROWS_WITH(ContAccum<>({.capacity = -4}), Catch::Contains("capacity must be >= 0"));
}
