// The Trainer: training makes progress with every strategy, StepStats are right,
// schedule, parameter groups, clipping and the memory meter.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

using namespace contaccum;
using Dual = DualEncoder<Bert, ClsPooling>;
using Shared = DualEncoder<Bert, MeanPooling, SharedTower>;

namespace {
template <class S>
std::pair<double, double> first_and_last_losses(S strategy, int steps = 40) {
  torch::manual_seed(1);
  Trainer<Dual, S> trainer(Dual(test::tiny_bert(0.0)), {.micro_batch_size = 4, .learning_rate = 3e-4}, std::move(strategy));
  auto data = test::tiny_data(1, 5);
  const auto eval_batch = data.next(16);
  // held-out loss with FullBatch semantics, no update
  auto held_out = [&] {
    torch::NoGradGuard g;
    trainer.model()->eval();
    auto q = trainer.model()->encode_queries(eval_batch.queries);
    auto d = trainer.model()->encode_passages(cat_rows(eval_batch.positives, eval_batch.hard_negatives));
    return InfoNCE<>{}(q, d).template item<double>();
  };
  const double before = held_out();
  for (int i = 0; i < steps; ++i) trainer.step(data.next(16));
  return {before, held_out()};
}
}  // namespace

TEST_CASE("Every strategy lowers the held-out loss on learnable pairs", "[trainer]") {
  auto check = [](auto strategy, const char* name) {
    auto [before, after] = first_and_last_losses(std::move(strategy));
    INFO(name << ": held-out loss " << before << " -> " << after);
    CHECK(after < 0.8 * before);
  };
  check(FullBatch<>(), "FullBatch");
  check(GradAccum<>(), "GradAccum");
  check(GradCache<>(), "GradCache");
  check(ContAccum<DualBank>({.capacity = 32}), "ContAccum");
  check(ContAccumOverGradCache<DualBank>({.capacity = 32}), "ContAccumOverGradCache");
}

TEST_CASE("StepStats report the step, the towers' gradient norms and the schedule", "[trainer]") {
  torch::manual_seed(2);
  Trainer<Dual, ContAccum<>> trainer(Dual(test::tiny_bert()),
                                     {.micro_batch_size = 4, .learning_rate = 1e-3, .warmup_steps = 2,
                                      .total_steps = 4, .decay = Decay::linear, .max_grad_norm = 0.0},
                                     ContAccum<>({.capacity = 8}));
  auto data = test::tiny_data(1);
  std::vector<double> lrs;
  for (int i = 0; i < 4; ++i) {
    auto s = trainer.step(data.next(12));
    CHECK(s.step == i);
    CHECK(s.pairs == 12);
    CHECK(s.micro_batches == 3);
    CHECK(std::isfinite(s.loss));
    CHECK(s.grad_norm_query > 0);
    CHECK(s.grad_norm_passage > 0);
    CHECK(s.grad_norm_ratio == Approx(s.grad_norm_passage / s.grad_norm_query));
    CHECK(s.grad_norm == Approx(std::hypot(s.grad_norm_query, s.grad_norm_passage)));
    CHECK(s.seconds > 0);
    CHECK(s.peak_memory_bytes > 0);
    lrs.push_back(s.learning_rate);
  }
  // transformers' linear schedule: step/warmup, then (total - step)/(total - warmup)
  CHECK(lrs == std::vector<double>{0.0, 0.5e-3, 1e-3, 0.5e-3});
  CHECK(trainer.steps_done() == 4);
}

TEST_CASE("A shared tower has GradNormRatio 1", "[trainer]") {
  Trainer<Shared, GradAccum<>> trainer(Shared(test::tiny_bert()), {.micro_batch_size = 4});
  auto s = trainer.step(test::tiny_data(1).next(8));
  CHECK(s.grad_norm_ratio == Approx(1.0));
}

TEST_CASE("Learning-rate schedules match transformers' formulas", "[trainer][schedule]") {
  CHECK(lr_factor(0, 10, 100, Decay::linear) == 0.0);
  CHECK(lr_factor(5, 10, 100, Decay::linear) == Approx(0.5));
  CHECK(lr_factor(10, 10, 100, Decay::linear) == Approx(1.0));
  CHECK(lr_factor(55, 10, 100, Decay::linear) == Approx(0.5));
  CHECK(lr_factor(100, 10, 100, Decay::linear) == Approx(0.0));
  CHECK(lr_factor(55, 10, 100, Decay::cosine) == Approx(0.5));
  CHECK(lr_factor(10 + 45 / 2, 10, 100, Decay::cosine) == Approx(0.5 * (1 + std::cos(M_PI * 22.0 / 90.0))));
  CHECK(lr_factor(500, 10, 100, Decay::constant) == 1.0);
  CHECK(lr_factor(50, 0, 0, Decay::linear) == 1.0);
}

TEST_CASE("AdamW groups exempt biases and LayerNorm from weight decay", "[trainer][optim]") {
  Trainer<Dual, GradAccum<>> trainer(Dual(test::tiny_bert()), {.weight_decay = 0.1});
  auto& groups = trainer.optimizer().param_groups();
  REQUIRE(groups.size() == 2);
  CHECK(static_cast<torch::optim::AdamWOptions&>(groups[0].options()).weight_decay() == 0.1);
  CHECK(static_cast<torch::optim::AdamWOptions&>(groups[1].options()).weight_decay() == 0.0);
  int64_t biases_and_norms = 0, total = 0;
  for (const auto& p : trainer.model()->named_parameters()) {
    ++total;
    biases_and_norms += exempt_from_weight_decay(p.key());
  }
  CHECK(static_cast<int64_t>(groups[1].params().size()) == biases_and_norms);
  CHECK(static_cast<int64_t>(groups[0].params().size() + groups[1].params().size()) == total);
  CHECK(exempt_from_weight_decay("query_encoder.encoder.layer.0.attention.output.LayerNorm.weight"));
  CHECK(!exempt_from_weight_decay("query_encoder.encoder.layer.0.attention.self.query.weight"));
}

TEST_CASE("Gradients are clipped to max_grad_norm before the update", "[trainer][optim]") {
  Trainer<Dual, GradAccum<>> trainer(Dual(test::tiny_bert()), {.micro_batch_size = 4, .max_grad_norm = 0.01});
  auto s = trainer.step(test::tiny_data(1).next(8));
  REQUIRE(s.grad_norm > 0.01);  // it had something to clip
  CHECK(grad_norm(trainer.trainable_parameters()) == Approx(0.01).epsilon(1e-4));
}

TEST_CASE("The CPU memory meter counts tensor allocations", "[memory]") {
  REQUIRE(MemoryMeter::install());
  const auto base = MemoryMeter::current_bytes();
  MemoryMeter::reset_peak();
  {
    auto big = torch::empty({1 << 20}, torch::kFloat64);  // 8 MiB
    CHECK(MemoryMeter::current_bytes() - base >= (8 << 20));
  }
  CHECK(MemoryMeter::current_bytes() - base < (1 << 20));
  CHECK(MemoryMeter::peak_bytes() - base >= (8 << 20));
  MemoryMeter::reset_peak();
  CHECK(MemoryMeter::peak_bytes() - base < (1 << 20));
}

TEST_CASE("Configs print and compare field by field", "[config]") {
  // the last field, storage_dtype, prints as LibTorch names it (Undefined: as enqueued)
  CHECK_THAT(describe(BankConfig{.capacity = 64, .query_bank = false}), Catch::StartsWith("{64, 0, 1, 1, 1, 0, "));
  CHECK(describe(BankConfig{.capacity = 8, .storage_dtype = torch::kBFloat16}) == "{8, 1, 1, 1, 1, 0, BFloat16}");
  CHECK(same_config(TrainerConfig{}, TrainerConfig{}));
  CHECK(!same_config(TrainerConfig{}, TrainerConfig{.micro_batch_size = 2}));
}
