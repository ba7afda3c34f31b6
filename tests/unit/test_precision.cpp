// Mixed precision: bf16 autocast against fp32 for every strategy, GradCache == FullBatch
// under the same autocast and masks, fp32 outside the encoders, and fp16 loss scaling
// (its overflow skip, back-off, growth and checkpointed state), on the CPU.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"
#include "support/tiny_trainer.hpp"

#include <cmath>

using namespace contaccum;
using Dual = DualEncoder<Bert, ClsPooling>;

namespace {

// Gradients of every parameter after one strategy.accumulate() in precision `p`.
template <class S>
std::vector<torch::Tensor> gradients_in(Precision p, Dual& model, S strategy, const PairBatch& batch, uint64_t seed,
                                        double* loss_out) {
  auto params = model->parameters();
  test::zero_grads(params);
  model->train();
  torch::manual_seed(seed);
  InfoNCE<Cosine> loss{Cosine{0.05}};
  auto acc = strategy.accumulate(model, loss, batch, StepContext{.step = 0, .micro_batch_size = 4, .precision = p});
  strategy.finish_step(true);
  *loss_out = acc.loss;
  return test::grads_of(params);
}

template <class S>
void check_bf16_close_to_fp32(S strategy, const char* name) {
  torch::manual_seed(21);
  Dual model(test::tiny_bert(0.0));  // no dropout: both precisions see the same network
  auto data = test::tiny_data(/*m=*/1);
  const auto batch = data.next(8);  // N_local 4: two micro-batches
  double l32 = 0, l16 = 0;
  auto g32 = gradients_in(Precision::fp32, model, strategy, batch, 3, &l32);
  auto g16 = gradients_in(Precision::bf16, model, strategy, batch, 3, &l16);
  const double err = test::relative_error(g16, g32);
  INFO(name << ": loss fp32 " << l32 << " bf16 " << l16 << ", relative gradient error " << err);
  CHECK(std::abs(l16 - l32) <= 0.02 * std::abs(l32));
  CHECK(err <= 0.05);   // bf16 keeps 8 significant bits: a few per cent through two layers
  CHECK(err >= 1e-4);   // and autocast really ran: fp32 would agree to ~1e-7
  for (const auto& g : g16) CHECK(g.scalar_type() == torch::kFloat);  // fp32 master gradients
}

}  // namespace

TEST_CASE("bf16 autocast: every strategy's loss and gradients are within bf16 tolerance of fp32", "[precision]") {
  check_bf16_close_to_fp32(FullBatch<>(), "FullBatch");
  check_bf16_close_to_fp32(GradAccum<>(), "GradAccum");
  check_bf16_close_to_fp32(GradCache<>(), "GradCache");
  check_bf16_close_to_fp32(ContAccum<DualBank>({.capacity = 16}), "ContAccum");
  check_bf16_close_to_fp32(ContAccumOverGradCache<DualBank>({.capacity = 16}), "ContAccumOverGradCache");
}

TEST_CASE("GradCache under bf16 equals FullBatch under bf16 with the same dropout masks", "[precision][gradcache]") {
  torch::manual_seed(22);
  Dual model(test::tiny_bert(0.1));
  auto data = test::tiny_data(/*m=*/2);
  const auto batch = data.next(12);
  double l_full = 0, l_cache = 0, l_cache32 = 0;
  // encode_chunk = N_local: FullBatch's forwards are GradCache's, mask for mask.
  auto full = gradients_in(Precision::bf16, model, FullBatch<>({.encode_chunk = 4}), batch, 9, &l_full);
  auto cache = gradients_in(Precision::bf16, model, GradCache<>(), batch, 9, &l_cache);
  auto cache32 = gradients_in(Precision::fp32, model, GradCache<>(), batch, 9, &l_cache32);
  const double err = test::relative_error(cache, full);
  INFO("loss FullBatch " << l_full << " GradCache " << l_cache << ", relative gradient error " << err);
  CHECK(l_cache == Approx(l_full).epsilon(1e-6));  // the replay recomputes the first pass's embeddings
  CHECK(err <= 1e-3);
  // Control: bf16 is really on, so the agreement above is bf16 against bf16 (fp32 against
  // fp32 differs by ~1e-7 here; bf16 against fp32 by a few 1e-4).
  CHECK(test::relative_error(cache32, cache) > 1e-4);
}

TEST_CASE("EncodeContext::encoding: reduced precision inside the tower, fp32 out, autocast off after",
          "[precision]") {
  auto a = torch::randn({4, 8}), b = torch::randn({8, 3});
  torch::ScalarType inside = torch::kFloat;
  const EncodeContext bf16{.precision = Precision::bf16};
  auto out = bf16.encoding([&] {
    auto y = torch::matmul(a, b);
    inside = y.scalar_type();
    return y;
  });
  CHECK(inside == torch::kBFloat16);
  CHECK(out.scalar_type() == torch::kFloat);
  CHECK(torch::matmul(a, b).scalar_type() == torch::kFloat);  // the scope closed
  CHECK(EncodeContext{}.encoding([&] { return torch::matmul(a, b); }).scalar_type() == torch::kFloat);
  // float64 models are never cast
  CHECK(bf16.encoding([&] { return torch::matmul(a.to(torch::kDouble), b.to(torch::kDouble)); }).scalar_type() ==
        torch::kDouble);
  CHECK(parse_precision("bf16") == Precision::bf16);
  CHECK_THAT(test::error_of([] { (void)parse_precision("bf61", "--precision"); }),
             Catch::Contains("--precision: unknown precision 'bf61'"));
}

TEST_CASE("A bf16 Trainer keeps fp32 weights, AdamW moments and banks, and trains", "[precision][trainer]") {
  auto config = test::tiny_trainer_config();
  config.precision = Precision::bf16;
  auto trainer = test::make_tiny_trainer<ContAccum<DualBank>>(3, config);
  auto loader = test::tiny_loader();
  const auto before = trainer.trainable_parameters().front().clone();
  for (int i = 0; i < 3; ++i) {
    const auto st = trainer.step(loader.next());
    CHECK(std::isfinite(st.loss));
    CHECK_FALSE(st.overflow);
    CHECK(st.loss_scale == 0.0);  // no loss scaling under bf16
  }
  CHECK_FALSE(torch::equal(before, trainer.trainable_parameters().front()));
  for (const auto& p : trainer.trainable_parameters()) CHECK(p.scalar_type() == torch::kFloat);
  StateDict s;
  trainer.save_state(s);
  for (const auto& [key, t] : s.tensors)
    if (key.starts_with("optimizer.") || key.starts_with("strategy.")) {
      INFO(key);
      CHECK((t.scalar_type() == torch::kFloat || !t.is_floating_point()));
    }
}

TEST_CASE("fp16 loss scaling: an overflow skips the step and halves the scale; finite steps grow it",
          "[precision][trainer]") {
  auto config = test::tiny_trainer_config();
  config.precision = Precision::fp16;
  config.total_steps = 0;  // constant learning rate after warm-up: the skipped steps still count
  // 2^40 overflows fp16 (max 65504) in the backward of any layer: injected overflows.
  config.loss_scale_init = std::ldexp(1.0, 40);
  config.loss_scale_growth_interval = 3;
  auto trainer = test::make_tiny_trainer<GradCache<>>(3, config);
  auto loader = test::tiny_loader();
  const auto first = trainer.trainable_parameters().front().clone();

  const auto st = trainer.step(loader.next());
  CHECK(st.overflow);
  CHECK(st.loss_scale == std::ldexp(1.0, 40));
  CHECK(std::isfinite(st.loss));  // the loss itself is fine: only the scaled backward overflowed
  CHECK(trainer.loss_scaler().scale() == std::ldexp(1.0, 39));
  CHECK(torch::equal(first, trainer.trainable_parameters().front()));  // nothing updated
  CHECK(trainer.steps_done() == 1);

  // Then GradScaler's rule, step by step: overflow halves, 3 finite steps in a row double.
  double expected = trainer.loss_scaler().scale();
  int64_t run = 0, applied = 0, skipped = 1;
  for (int i = 0; i < 40; ++i) {
    const auto s = trainer.step(loader.next());
    CHECK(s.loss_scale == expected);
    if (s.overflow) {
      expected *= 0.5;
      run = 0;
      ++skipped;
    } else {
      CHECK(std::isfinite(s.grad_norm));
      ++applied;
      if (++run == 3) {
        expected *= 2;
        run = 0;
      }
    }
    REQUIRE(trainer.loss_scaler().scale() == expected);
    if (applied >= 4) break;
  }
  INFO("skipped " << skipped << " steps, scale now " << trainer.loss_scaler().scale());
  CHECK(applied >= 4);                                                        // training continued
  CHECK_FALSE(torch::equal(first, trainer.trainable_parameters().front()));  // and updated

  // The scaler's state travels with the checkpoint.
  StateDict saved;
  trainer.save_state(saved);
  auto resumed = test::make_tiny_trainer<GradCache<>>(3, config);
  resumed.load_state(StateReader(saved, "memory"));
  CHECK(resumed.loss_scaler().scale() == trainer.loss_scaler().scale());
  CHECK(resumed.loss_scaler().growth_tracker() == trainer.loss_scaler().growth_tracker());
  // An fp32 trainer refuses the fp16 run's checkpoint, naming the field.
  auto fp32 = test::make_tiny_trainer<GradCache<>>(3);
  CHECK_THAT(test::error_of([&] { fp32.load_state(StateReader(saved, "memory")); }),
             Catch::Contains("TrainerConfig.precision"));
}

TEST_CASE("LossScaler follows GradScaler's rule", "[precision]") {
  LossScaler off;
  CHECK_FALSE(off.enabled());
  CHECK(off.scale() == 1.0);
  LossScaler s(true, {.init_scale = 8, .growth_interval = 2});
  s.update(false);
  CHECK(s.scale() == 8);
  s.update(false);
  CHECK(s.scale() == 16);
  CHECK(s.growth_tracker() == 0);
  s.update(false);
  s.update(true);
  CHECK(s.scale() == 8);
  CHECK(s.growth_tracker() == 0);
  CHECK_THAT(test::error_of([] { LossScaler(true, {.init_scale = 0}); }), Catch::Contains("init_scale"));
  CHECK_THAT(test::error_of([] { LossScaler(true, {.backoff_factor = 1.5}); }), Catch::Contains("backoff_factor"));
}

// ---- activation recompute (gradient checkpointing) ----

namespace {

template <class Model>
void set_recompute(Model& model, bool on) {
  model->query_encoder->set_gradient_checkpointing(on);
  model->passage_encoder->set_gradient_checkpointing(on);
}

// Gradients after one accumulate() in `p`, from generator seed `seed` (dropout on).
template <class Model, class S>
std::vector<torch::Tensor> grads_after(Model& model, S strategy, const PairBatch& batch, uint64_t seed,
                                       Precision p = Precision::fp32) {
  auto params = model->parameters();
  test::zero_grads(params);
  model->train();
  torch::manual_seed(seed);
  InfoNCE<> loss;
  (void)strategy.accumulate(model, loss, batch, StepContext{.step = 0, .micro_batch_size = 4, .precision = p});
  strategy.finish_step(true);
  return test::grads_of(params);
}

template <class Model, class S>
void check_recompute_exact(Model& model, S strategy, const PairBatch& batch, const char* name) {
  set_recompute(model, false);
  auto plain = grads_after(model, strategy, batch, 17);
  set_recompute(model, true);
  auto again = grads_after(model, strategy, batch, 17);
  set_recompute(model, false);
  const double err = test::relative_error(again, plain);
  INFO(name << ": relative gradient error with recompute " << err);
  CHECK(err <= 1e-10);
  // Control: dropout is on, so masks drawn anew in the recompute would not agree.
  auto other = grads_after(model, strategy, batch, 18);
  CHECK(test::relative_error(other, plain) > 1e-3);
}

}  // namespace

TEST_CASE("Activation recompute leaves BERT's gradients unchanged (float64, dropout), alone and under GradCache",
          "[recompute]") {
  torch::manual_seed(31);
  Dual model(test::tiny_bert(0.1));
  model->to(torch::kFloat64);
  auto data = test::tiny_data(/*m=*/1);
  const auto batch = data.next(8);
  check_recompute_exact(model, GradAccum<>(), batch, "BERT, GradAccum");
  check_recompute_exact(model, GradCache<>(), batch, "BERT, GradCache");
  check_recompute_exact(model, ContAccumOverGradCache<DualBank>({.capacity = 16}), batch, "BERT, ContAccum/GradCache");
}

TEST_CASE("Activation recompute leaves GPT-NeoX's gradients unchanged (float64, dropout), alone and under GradCache",
          "[recompute]") {
  using Neox = DualEncoder<GptNeox, LastTokenPooling>;
  torch::manual_seed(32);
  Neox model(GptNeoxConfig{.vocab_size = 120, .hidden_size = 32, .num_hidden_layers = 2, .num_attention_heads = 4,
                           .intermediate_size = 48, .rotary_pct = 0.5, .max_position_embeddings = 64,
                           .attention_dropout = 0.1, .hidden_dropout = 0.1});
  model->to(torch::kFloat64);
  auto data = test::tiny_data(/*m=*/1);
  const auto batch = data.next(8);
  check_recompute_exact(model, GradAccum<>(), batch, "GPT-NeoX, GradAccum");
  check_recompute_exact(model, GradCache<>(), batch, "GPT-NeoX, GradCache");
}

TEST_CASE("Activation recompute replays autocast: bf16 gradients with and without it agree", "[recompute][precision]") {
  torch::manual_seed(33);
  Dual model(test::tiny_bert(0.1));
  auto data = test::tiny_data(/*m=*/1);
  const auto batch = data.next(8);
  auto plain = grads_after(model, GradCache<>(), batch, 5, Precision::bf16);
  set_recompute(model, true);
  auto again = grads_after(model, GradCache<>(), batch, 5, Precision::bf16);
  set_recompute(model, false);
  auto fp32 = grads_after(model, GradCache<>(), batch, 5, Precision::fp32);
  const double err = test::relative_error(again, plain);
  INFO("bf16 with vs without recompute: " << err << "; bf16 vs fp32: " << test::relative_error(plain, fp32));
  CHECK(err <= 1e-5);  // the recompute ran in bf16 too: an fp32 recompute would differ like fp32 does
  CHECK(test::relative_error(plain, fp32) > 1e-4);
}

TEST_CASE("Activation recompute lowers the measured peak memory of a step", "[recompute][memory]") {
  REQUIRE(MemoryMeter::install());
  torch::manual_seed(34);
  Dual model(BertConfig{.vocab_size = 120, .hidden_size = 64, .num_hidden_layers = 4, .num_attention_heads = 4,
                        .intermediate_size = 256, .max_position_embeddings = 64});
  SyntheticPairs data({.vocab_size = 120, .passage_length = 48, .query_length = 16, .hard_negatives = 1, .seed = 2});
  const auto batch = data.next(16);
  auto peak_of = [&](bool on) {
    set_recompute(model, on);
    auto params = model->parameters();
    test::zero_grads(params);
    MemoryMeter::reset_peak();
    const auto base = MemoryMeter::current_bytes();
    (void)grads_after(model, FullBatch<>(), batch, 3);
    return MemoryMeter::peak_bytes() - base;
  };
  const auto plain = peak_of(false), recompute = peak_of(true);
  set_recompute(model, false);
  INFO("peak above the start: " << plain / 1024 << " KiB plain, " << recompute / 1024 << " KiB with recompute");
  CHECK(recompute < plain * 3 / 4);
}
