#pragma once
/// \file
/// \brief Concepts of the strategy family: encode schedules, negative pools, and the
///        strategies a driver composes from them.
///
/// A step consumes N_total pairs in forward passes of at most N_local pairs. Two
/// orthogonal choices make a strategy (DESIGN §7):
///  - an **encode schedule** decides how embeddings are made and gradients reach the
///    encoders: `Direct` (encode with autograd, backward per loss unit) or `CachedReplay`
///    (GradCache: encode without autograd, loss on detached leaves, replay each forward
///    and push the cached embedding gradients through it);
///  - a **negative pool** decides what a loss evaluation scores each query against:
///    `MicroBatch` (its own micro-batch), `Step` (every row of the step), `Banked<B>`
///    (the current unit plus a memory bank).
/// `Accumulate<Schedule, Pool>` runs any meaningful pair; FullBatch, GradAccum, GradCache,
/// ContAccum and ContAccumOverGradCache are aliases (strategy/strategies.hpp).
///
/// A strategy does not step the optimizer: the Trainer does that after checking the
/// result, then calls finish_step(applied).

#include <contaccum/data/batch.hpp>
#include <contaccum/detail/rng_state.hpp>
#include <contaccum/encoders/concepts.hpp>
#include <contaccum/loss/concepts.hpp>
#include <contaccum/loss/loss_inputs.hpp>
#include <contaccum/precision/precision.hpp>
#include <contaccum/strategy/detail/archetypes.hpp>
#include <contaccum/strategy/seam.hpp>

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace contaccum {

/// \brief Per-step context a strategy needs.
struct StepContext {
  int64_t step = 0;              ///< 0-based optimizer step (for error messages)
  int64_t micro_batch_size = 8;  ///< N_local
  BackwardSeam* seam = nullptr;  ///< the Trainer's seam; nullptr = the plain one-process seam
  int64_t world_size = 1;        ///< processes that share the step (the collective's)
  int64_t rank = 0;              ///< this process among them
  int64_t dropout_seed = -1;     ///< >= 0: seed every forward chunk (EncodeContext); -1: generators run on
  Precision precision = Precision::fp32;  ///< the encoders' compute type (EncodeContext::encoding)
};

/// \brief How a loss unit's forward chunks are encoded: the precision they compute in and
///        where they draw their dropout masks from.
///
/// Precision: every tower call runs inside `encoding(...)`, under autocast for bf16 / fp16,
/// and its embeddings come back in fp32 (precision/precision.hpp).
///
/// Seeds: off (seed < 0), the generators simply run on. On, each chunk's generators (CPU and
/// every CUDA device) are seeded from (seed, step, the chunk's *global* index) before its
/// query tower runs, so the masks depend on which rows a chunk holds, not on the process: a
/// step split over W processes draws what one process drawing the same chunks would. The
/// global index of this rank's chunk j (of K this step) is rank * K + j when the loss unit is
/// the whole step (rank r holds the step's r-th contiguous share) and j * W + rank when each
/// micro-batch is a unit (global micro-batch j is every rank's j-th).
struct EncodeContext {
  int64_t seed = -1;
  int64_t step = 0;
  int64_t first = 0;      ///< the unit's first chunk, counted in the step
  int64_t chunks = 1;     ///< K: this rank's chunks in the step
  int64_t world = 1, rank = 0;
  bool step_units = false;
  Precision precision = Precision::fp32;

  [[nodiscard]] bool seeded() const { return seed >= 0; }
  /// \brief The global index of the unit's j-th chunk.
  [[nodiscard]] int64_t global_index(int64_t j) const {
    const int64_t local = first + j;
    return step_units ? rank * chunks + local : local * world + rank;
  }
  /// \brief Seeds the generators for the unit's j-th chunk (nothing when unseeded).
  void enter(int64_t j) const {
    if (seeded()) detail::rng_state::seed_all(detail::chunk_seed(static_cast<uint64_t>(seed), step, global_index(j)));
  }
  /// \brief `tower()` (a tower call) in this context's precision; its embeddings in fp32.
  template <class F>
  [[nodiscard]] torch::Tensor encoding(F&& tower) const {
    AutocastScope autocast(precision);
    return to_master_precision(std::forward<F>(tower)());
  }
};

/// \brief What a strategy's accumulate() reports.
struct Accumulation {
  double loss = 0;                 ///< mean loss over the step's loss units (FullBatch/GradCache: the step loss)
  double negatives_per_query = 0;  ///< passages scored against each query, minus its positive
  int64_t micro_batches = 0;       ///< forward passes per tower (K)
  int64_t score_cache_hits = 0;    ///< loss evaluations whose banked rows the bank's score cache served
  int64_t score_cache_fallbacks = 0;  ///< ... that had to stream the bank scores instead (see the note)
  std::string score_cache_note;    ///< why the cache could not serve (empty without fallbacks)
};

/// \brief The current embeddings of one loss unit: q (n, H), p (n, H), h (n*m, H).
struct EncodedRows {
  torch::Tensor queries, positives, hard_negatives;
};

/// \brief An encode schedule: makes the embeddings of a loss unit (one or more forward
///        chunks) and pushes the unit's loss gradient into the encoders, through the seam.
///        `whole_step`: the schedule needs the whole step as one loss unit (CachedReplay).
template <class S, class Model>
concept EncodeScheduleFor =
    std::default_initializable<S> && BiEncoder<Model> &&
    requires(S s, Model& m, std::span<const PairBatch> chunks, const torch::Tensor& loss, int64_t units,
             BackwardSeam& seam, const EncodeContext& how) {
      { S::name } -> std::convertible_to<std::string_view>;
      { S::whole_step } -> std::convertible_to<bool>;
      { s.encode(m, chunks, how) } -> std::same_as<EncodedRows>;
      s.backward(m, chunks, loss, units, seam);
    };

/// \brief An encode schedule for any BiEncoder.
template <class S>
concept EncodeSchedule = EncodeScheduleFor<S, detail::bi_encoder_archetype>;

/// \brief Which rows a pool's loss evaluation spans.
enum class PoolScope {
  micro_batch,  ///< each micro-batch alone (GradAccum's in-batch negatives)
  step,         ///< all N_total rows of the step at once
  schedule,     ///< what the schedule's unit is: a micro-batch (Direct) or the step (CachedReplay)
};

/// \brief What a pool did for one loss evaluation.
struct PoolUse {
  enum class cache { none, hit, fallback } score_cache = cache::none;
  std::string why;  ///< set with a fallback
};

/// \brief A negative pool for losses of type L: it may add detached negatives (and cached
///        scores) to each evaluation's inputs, sees the unit's embeddings after the backward
///        (a bank enqueues them), and keeps or undoes the step's changes.
template <class P, class L>
concept NegativePoolFor = ContrastiveLoss<L> && requires(P p, LossInputs& in, const LossInputs& cin, const L& l,
                                                          int64_t n, bool applied) {
  { P::name } -> std::convertible_to<std::string_view>;
  { P::scope } -> std::convertible_to<PoolScope>;
  p.begin_step(l, n);  ///< n: rows per loss unit this step (0 = they vary)
  { p.extend(in, l, n) } -> std::same_as<PoolUse>;  ///< n: the step, for messages
  p.after_unit(cin);
  p.finish_step(applied);
};

/// \brief A negative pool for any ContrastiveLoss.
template <class P>
concept NegativePool = NegativePoolFor<P, detail::loss_archetype>;

/// \brief A schedule and a pool that mean something together. CachedReplay makes the
///        whole step one loss unit, so it cannot score each micro-batch alone.
template <class S, class P>
concept AccumulationPlan = EncodeSchedule<S> && NegativePool<P> && !(S::whole_step && P::scope == PoolScope::micro_batch);

/// \brief A strategy that can train Model with Loss.
template <class S, class Model, class Loss>
concept StrategyFor = BiEncoder<Model> && ContrastiveLoss<Loss> &&
                      requires(S s, Model& m, const Loss& l, const PairBatch& b, const StepContext& c, bool applied) {
                        { S::name } -> std::convertible_to<std::string_view>;
                        { s.accumulate(m, l, b, c) } -> std::same_as<Accumulation>;
                        s.finish_step(applied);
                      };

/// \brief A strategy: it trains any BiEncoder with any ContrastiveLoss.
template <class S>
concept Strategy = StrategyFor<S, detail::bi_encoder_archetype, detail::loss_archetype>;

}  // namespace contaccum
