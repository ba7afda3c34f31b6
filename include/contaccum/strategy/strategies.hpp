#pragma once
/// \file
/// \brief The field's strategies as schedule x pool pairs (DESIGN §2, §7).
///
/// | strategy               | schedule     | pool      | loss unit     | negatives per query               |
/// |------------------------|--------------|-----------|---------------|-----------------------------------|
/// | FullBatch              | Direct       | Step      | the step      | N_total - 1 + N_total m           |
/// | GradAccum              | Direct       | MicroBatch| a micro-batch | N_local - 1 + N_local m           |
/// | GradCache              | CachedReplay | Step      | the step      | N_total - 1 + N_total m           |
/// | ContAccum<B>           | Direct       | Banked<B> | a micro-batch | N_local - 1 + N_local m + bank    |
/// | ContAccumOverGradCache | CachedReplay | Banked<B> | the step      | N_total - 1 + N_total m + bank    |
/// | (meaningless)          | CachedReplay | MicroBatch| -             | fails to compile: AccumulationPlan|
///
/// The template parameter `C` of the first four is kept so that code written as
/// `GradCache<>` compiles unchanged; the collective is the Trainer's slot now
/// (Trainer<Model, Strategy, Adapter, Loss, Collective>).

#include <contaccum/bank/concepts.hpp>
#include <contaccum/bank/dual_bank.hpp>
#include <contaccum/dist/single_process.hpp>
#include <contaccum/strategy/accumulate.hpp>

#include <concepts>

namespace contaccum {

/// \brief One InfoNCE over all N_total pairs, one backward. The reference every other
///        strategy is measured against; memory grows with N_total.
template <std::same_as<SingleProcess> C = SingleProcess>
using FullBatch = Accumulate<Direct, Step>;

/// \brief Each micro-batch its own InfoNCE over N_local pairs; gradients summed with 1/K.
template <std::same_as<SingleProcess> C = SingleProcess>
using GradAccum = Accumulate<Direct, MicroBatch>;

/// \brief FullBatch's gradient with one micro-batch's activation memory (Gao et al. 2021).
template <std::same_as<SingleProcess> C = SingleProcess>
using GradCache = Accumulate<CachedReplay, Step>;

/// \brief ContAccum (Kim, Lee, Kang; NeurIPS 2024): GradAccum plus a dual memory bank.
template <Bank B = DualBank, std::same_as<SingleProcess> C = SingleProcess>
using ContAccum = Accumulate<Direct, Banked<B>>;

/// \brief ContAccum over GradCache: the exact N_total-row loss of GradCache plus the
///        bank's negatives, with one micro-batch's activation memory. Nobody else ships it.
template <Bank B = DualBank>
using ContAccumOverGradCache = Accumulate<CachedReplay, Banked<B>>;

}  // namespace contaccum
