#pragma once
/// \file
/// \brief Accumulate<Schedule, Pool>: the one driver every strategy is.
///
/// Per optimizer step:
///   1. cut the step into forward chunks (MicroBatching: N_local rows, or a token budget);
///   2. group them into loss units: the whole step when the schedule needs it
///      (CachedReplay) or the pool spans the step (Step); else one unit per chunk;
///   3. per unit: the schedule encodes it; the collective exchanges the current rows
///      (through the seam); the pool adds its negatives; the loss is checked finite, then
///      its gradient (weight 1/units) reaches the encoders through the schedule and the
///      seam; the pool sees the unit (a bank enqueues it).
///
/// \code
/// // ContAccum over GradCache: a bank on top of the exact N_total-row loss.
/// contaccum::ContAccumOverGradCache<contaccum::DualBank> s({.capacity = 512});
/// // any other meaningful pair, e.g. GradCache with forwards cut by a token budget:
/// contaccum::Accumulate<contaccum::CachedReplay, contaccum::Step> g({.max_tokens = 4096});
/// \endcode

#include <contaccum/data/batch.hpp>
#include <contaccum/detail/banner.hpp>
#include <contaccum/encoders/concepts.hpp>
#include <contaccum/loss/concepts.hpp>
#include <contaccum/loss/loss_inputs.hpp>
#include <contaccum/strategy/concepts.hpp>
#include <contaccum/strategy/detail/encode.hpp>
#include <contaccum/strategy/pool.hpp>
#include <contaccum/strategy/schedule.hpp>
#include <contaccum/strategy/seam.hpp>
#include <contaccum/strategy/split.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace contaccum {

namespace detail {
template <class S, class P>
constexpr std::string_view plan_name() {
  constexpr bool cached = std::is_same_v<S, CachedReplay>, direct = std::is_same_v<S, Direct>;
  if constexpr (direct && std::is_same_v<P, Step>) return "FullBatch";
  else if constexpr (direct && std::is_same_v<P, MicroBatch>) return "GradAccum";
  else if constexpr (cached && std::is_same_v<P, Step>) return "GradCache";
  else if constexpr (direct && is_banked<P>) return "ContAccum";
  else if constexpr (cached && is_banked<P>) return "ContAccumOverGradCache";
  else return P::name;
}
}  // namespace detail

template <class Schedule, class Pool>
class Accumulate {
  static_assert(EncodeSchedule<Schedule>, CONTACCUM_BANNER
                "Accumulate's first parameter must satisfy EncodeSchedule (name, whole_step, encode, backward), "
                "e.g. Direct or CachedReplay");
  static_assert(NegativePool<Pool>, CONTACCUM_BANNER
                "Accumulate's second parameter must satisfy NegativePool (name, scope, begin_step, extend, "
                "after_unit, finish_step), e.g. MicroBatch, Step or Banked<DualBank>");
  static_assert(AccumulationPlan<Schedule, Pool>, CONTACCUM_BANNER
                "AccumulationPlan not satisfied: CachedReplay makes the whole step one loss, so it cannot score "
                "each micro-batch alone (CachedReplay x MicroBatch means nothing; use Direct x MicroBatch for "
                "GradAccum or CachedReplay x Step for GradCache)");

  static constexpr bool step_units = Schedule::whole_step || Pool::scope == PoolScope::step;

public:
  using schedule_type = Schedule;
  using pool_type = Pool;
  static constexpr std::string_view name = detail::plan_name<Schedule, Pool>();

  Accumulate() = default;
  explicit Accumulate(MicroBatching split, Pool pool = Pool{}, Schedule schedule = Schedule{})
      : split_(split), pool_(std::move(pool)), schedule_(std::move(schedule)) {}
  /// \brief A banked pool's config first: `ContAccum<>({.capacity = 1024})`.
  template <class P = Pool>
    requires requires { typename P::config_type; }
  explicit Accumulate(typename P::config_type pool_config, MicroBatching split = {})
      : split_(split), pool_(pool_config) {}

  /// \brief Accumulates one step's gradients (N_total pairs) into the encoders' .grad.
  template <BiEncoder M, ContrastiveLoss L>
  Accumulation accumulate(M& model, const L& loss, const PairBatch& batch, const StepContext& ctx) {
    static_assert(EncodeScheduleFor<Schedule, M>, CONTACCUM_BANNER "the encode schedule cannot encode this model");
    static_assert(NegativePoolFor<Pool, L>, CONTACCUM_BANNER "the negative pool cannot serve this loss");
    BackwardSeam& seam = ctx.seam != nullptr ? *ctx.seam : detail::plain_seam();
    const int64_t rows = rows_per_forward(batch, ctx);
    const auto chunks = split_step(batch, rows, split_.max_tokens);
    const auto k = static_cast<int64_t>(chunks.size());
    const std::span<const PairBatch> all(chunks);
    Accumulation out{.micro_batches = k};
    // rows per loss unit, the bank's block: 0 when a token budget makes them vary
    // Loss units: the whole step, or N_local rows each (made of one forward, or of several
    // encode_chunk-row forwards when encode_chunk divides N_local).
    const int64_t per_unit = step_units ? k : chunks_per_unit(batch, ctx);
    const int64_t unit_rows =
        step_units ? batch.size() : (split_.max_tokens > 0 ? 0 : std::min(rows * per_unit, batch.size()));
    pool_.begin_step(loss, unit_rows * ctx.world_size);  // rows per enqueue after the exchange
    EncodeContext how{.seed = ctx.dropout_seed, .step = ctx.step, .first = 0, .chunks = k,
                      .world = ctx.world_size, .rank = ctx.rank, .step_units = step_units,
                      .precision = ctx.precision};
    const int64_t units = (k + per_unit - 1) / per_unit;
    for (int64_t u = 0; u < units; ++u) {
      how.first = u * per_unit;
      const auto count = std::min(per_unit, k - how.first);
      run_unit(model, loss, all.subspan(static_cast<size_t>(how.first), static_cast<size_t>(count)), units, u, ctx,
               seam, how, out);
    }
    return out;
  }

  /// \brief Keeps this step's pool changes (applied) or undoes them (the step failed).
  void finish_step(bool applied) { pool_.finish_step(applied); }

  /// \brief The pool's state between steps (the schedules keep none across steps).
  void save_state(StateDict& s, const std::string& prefix) const
    requires Stateful<Pool>
  {
    s.set(prefix + "plan", std::string(name));
    s.set(prefix + "split.encode_chunk", split_.encode_chunk);
    s.set(prefix + "split.max_tokens", split_.max_tokens);
    pool_.save_state(s, prefix);
  }
  void load_state(const StateReader& r, const std::string& prefix)
    requires Stateful<Pool>
  {
    r.require_same(prefix + "plan", std::string(name));
    r.require_same(prefix + "split.encode_chunk", split_.encode_chunk);
    r.require_same(prefix + "split.max_tokens", split_.max_tokens);
    pool_.load_state(r, prefix);
  }

  [[nodiscard]] const MicroBatching& split() const { return split_; }
  [[nodiscard]] const Pool& pool() const { return pool_; }
  [[nodiscard]] Pool& pool() { return pool_; }
  /// \brief The memory bank, when the pool has one.
  template <class P = Pool>
    requires requires(P& p) { p.bank(); }
  [[nodiscard]] auto& bank() {
    return pool_.bank();
  }
  template <class P = Pool>
    requires requires(const P& p) { p.bank(); }
  [[nodiscard]] const auto& bank() const {
    return pool_.bank();
  }

private:
  // Forwards per loss unit when each unit is N_local rows (the pools that score a
  // micro-batch at a time): 1, or N_local / encode_chunk.
  [[nodiscard]] int64_t chunks_per_unit(const PairBatch& batch, const StepContext& ctx) const {
    if (split_.encode_chunk <= 0 || split_.max_tokens > 0) return 1;
    const auto n_local = std::min(ctx.micro_batch_size, batch.size());
    if (split_.encode_chunk >= n_local) return 1;
    detail::require(n_local % split_.encode_chunk == 0, "step ", ctx.step, ": MicroBatching.encode_chunk (",
                    split_.encode_chunk, ") must divide the micro-batch size N_local (", n_local,
                    ") for ", name, ": each loss unit of N_local rows is encoded in forwards of encode_chunk rows");
    return n_local / split_.encode_chunk;
  }

  [[nodiscard]] int64_t rows_per_forward(const PairBatch& batch, const StepContext& ctx) const {
    if (split_.encode_chunk > 0) return split_.encode_chunk;
    if constexpr (!Schedule::whole_step && Pool::scope == PoolScope::step) return batch.size();  // FullBatch
    return ctx.micro_batch_size;
  }

  template <class M, class L>
  void run_unit(M& model, const L& loss, std::span<const PairBatch> chunks, int64_t units, int64_t index,
                const StepContext& ctx, BackwardSeam& seam, const EncodeContext& how, Accumulation& out) {
    const EncodedRows rows = schedule_.encode(model, chunks, how);
    detail::check_width(rows.queries, rows.positives, ctx.step);
    LossInputs in = seam.exchange({.queries = rows.queries, .positives = rows.positives,
                                   .hard_negatives = rows.hard_negatives});
    const PoolUse use = pool_.extend(in, loss, ctx.step);
    if (use.score_cache == PoolUse::cache::hit) ++out.score_cache_hits;
    if (use.score_cache == PoolUse::cache::fallback) {
      ++out.score_cache_fallbacks;
      if (out.score_cache_note.empty()) out.score_cache_note = use.why;
    }
    const double negatives = negatives_per_query(in);
    auto l = loss(in);
    const double value = detail::finite_or_throw(l, ctx.step, index);
    out.loss += units == 1 ? value : value / static_cast<double>(units);
    out.negatives_per_query += units == 1 ? negatives : negatives / static_cast<double>(units);
    schedule_.backward(model, chunks, l, units, seam);
    pool_.after_unit(in);
  }

  MicroBatching split_;
  Pool pool_;
  Schedule schedule_;
};

}  // namespace contaccum
