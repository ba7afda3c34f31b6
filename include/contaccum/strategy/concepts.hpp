#pragma once
/// \file
/// \brief The Strategy concept family and what a strategy returns for one optimizer step.
///
/// A strategy turns one optimizer step's batch (N_total pairs) into parameter gradients,
/// working through micro-batches of N_local pairs. It does not step the optimizer: the
/// Trainer does that after checking the result, then calls finish_step(applied).

#include <contaccum/data/batch.hpp>
#include <contaccum/encoders/concepts.hpp>
#include <contaccum/loss/info_nce.hpp>

#include <concepts>
#include <string_view>

namespace contaccum {

/// \brief Per-step context a strategy needs.
struct StepContext {
  int64_t step = 0;              ///< 0-based optimizer step (for error messages)
  int64_t micro_batch_size = 8;  ///< N_local
};

/// \brief What a strategy's accumulate() reports.
struct Accumulation {
  double loss = 0;                 ///< mean loss over the step's micro-batches (FullBatch/GradCache: the step loss)
  double negatives_per_query = 0;  ///< passages scored against each query, minus its positive
  int64_t micro_batches = 0;
};

/// \brief A strategy policy: a name, and the step-end hook.
template <class S>
concept Strategy = requires(S s, bool applied) {
  { S::name } -> std::convertible_to<std::string_view>;
  s.finish_step(applied);
};

/// \brief A strategy that can train Model with Loss.
template <class S, class Model, class Loss>
concept StrategyFor = Strategy<S> && BiEncoder<Model> && ContrastiveLoss<Loss> &&
                      requires(S s, Model& m, const Loss& l, const PairBatch& b, const StepContext& c) {
                        { s.accumulate(m, l, b, c) } -> std::same_as<Accumulation>;
                      };

}  // namespace contaccum
