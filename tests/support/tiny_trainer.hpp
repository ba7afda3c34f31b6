#pragma once
// A tiny trainer for the checkpoint and resume tests: a 2-layer BERT with dropout, synthetic
// pairs with hard negatives, and every stateful strategy, small enough that a process that
// trains it runs in well under a second.

#include "support/helpers.hpp"

#include <contaccum/contaccum.hpp>

#include <string>

namespace test {

using TinyDual = contaccum::DualEncoder<contaccum::Bert, contaccum::ClsPooling>;

inline constexpr int64_t tiny_steps = 6;  // the run's length (the LR schedule's total)
inline constexpr int64_t tiny_batch = 4;  // N_total; micro-batches of 2

inline contaccum::TrainerConfig tiny_trainer_config(double lr = 1e-3) {
  return {.micro_batch_size = 2, .learning_rate = lr, .weight_decay = 0.01, .warmup_steps = 2,
          .total_steps = tiny_steps, .max_grad_norm = 1.0};
}

inline contaccum::SyntheticLoader tiny_loader(uint64_t seed = 5) {
  return contaccum::SyntheticLoader(
      {.vocab_size = 120, .passage_length = 12, .query_length = 6, .hard_negatives = 1, .seed = seed}, tiny_batch);
}

// The strategies a resumed run must continue exactly, by name.
inline auto tiny_strategy(contaccum::FullBatch<>*) { return contaccum::FullBatch<>(); }
inline auto tiny_strategy(contaccum::GradAccum<>*) { return contaccum::GradAccum<>(); }
inline auto tiny_strategy(contaccum::GradCache<>*) { return contaccum::GradCache<>(); }
inline auto tiny_strategy(contaccum::ContAccum<contaccum::DualBank>*) {
  return contaccum::ContAccum<contaccum::DualBank>({.capacity = 6});  // wraps around within 6 steps
}
inline auto tiny_strategy(contaccum::ContAccumOverGradCache<contaccum::DualBank>*) {
  return contaccum::ContAccumOverGradCache<contaccum::DualBank>({.capacity = 8});
}

template <class S>
using TinyTrainer = contaccum::Trainer<TinyDual, S, contaccum::FullFineTune, contaccum::InfoNCE<contaccum::Cosine>>;

// A fresh tiny trainer; the model's initial weights come from `init_seed`.
template <class S>
TinyTrainer<S> make_tiny_trainer(uint64_t init_seed = 3, contaccum::TrainerConfig config = tiny_trainer_config(),
                                 contaccum::BertConfig bert = tiny_bert(0.1)) {
  torch::manual_seed(init_seed);
  return TinyTrainer<S>(TinyDual(bert), config, tiny_strategy(static_cast<S*>(nullptr)), {},
                        contaccum::InfoNCE<contaccum::Cosine>{contaccum::Cosine{0.1}});
}

}  // namespace test
