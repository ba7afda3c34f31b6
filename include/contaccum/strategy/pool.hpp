#pragma once
/// \file
/// \brief Negative pools: what a loss evaluation scores each query against. All satisfy
///        NegativePool (strategy/concepts.hpp).
///
///  - MicroBatch: the micro-batch alone (N_local - 1 in-batch negatives plus its hard
///    negatives). When to use: the memory floor, when negatives per query matter little.
///  - Step: every row of the step (N_total - 1 in-batch negatives plus all hard negatives).
///    When to use: you want FullBatch's negatives (with Direct if the step's graph fits,
///    with CachedReplay otherwise).
///  - Banked<B>: the schedule's unit plus a memory bank of past embeddings (ContAccum;
///    Kim, Lee, Kang, NeurIPS 2024):
///      Q = [q_unit; M_q],  D = [p_unit; M_p; h_unit; M_h],  labels = arange(|Q|),
///      mean CE over all |Q| rows (banked rows are constants, but they still send gradient
///      into the current passage columns), then the unit's rows are enqueued (FIFO).
///    Under Direct the unit is a micro-batch (the paper's ContAccum); under CachedReplay it
///    is the whole step (ContAccum over GradCache: N_total current rows plus the banks,
///    exact gradients, one micro-batch's activation memory).
///    When to use: memory allows only a small N_local and you want many negatives.

#include <contaccum/bank/concepts.hpp>
#include <contaccum/bank/dual_bank.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/loss/concepts.hpp>
#include <contaccum/loss/loss_inputs.hpp>
#include <contaccum/loss/score_record.hpp>
#include <contaccum/state/state_dict.hpp>
#include <contaccum/strategy/concepts.hpp>

#include <torch/torch.h>

#include <string>
#include <string_view>

namespace contaccum {

namespace detail {
/// The pools that add nothing to the current rows: they differ only in their scope.
template <PoolScope S>
struct current_rows_only {
  static constexpr PoolScope scope = S;
  template <ContrastiveLoss L>
  void begin_step(const L& /*loss*/, int64_t /*rows_per_unit*/) {}
  template <ContrastiveLoss L>
  PoolUse extend(LossInputs& /*in*/, const L& /*loss*/, int64_t /*step*/) {
    return {};
  }
  void after_unit(const LossInputs& /*in*/) {}
  void finish_step(bool /*applied*/) {}
  /// Nothing outlives a step: a checkpoint holds nothing for these pools.
  void save_state(StateDict& /*s*/, const std::string& /*prefix*/) const {}
  void load_state(const StateReader& /*r*/, const std::string& /*prefix*/) {}
};
}  // namespace detail

/// \brief Each micro-batch is its own loss (GradAccum's pool).
struct MicroBatch : detail::current_rows_only<PoolScope::micro_batch> {
  static constexpr std::string_view name = "MicroBatch";
};

/// \brief One loss over every row of the step (FullBatch's and GradCache's pool).
struct Step : detail::current_rows_only<PoolScope::step> {
  static constexpr std::string_view name = "Step";
};

/// \brief The unit's rows plus a memory bank B (ContAccum's pool). DESIGN §7 calls it
///        Bank<B>; `Bank` is the bank family's concept, hence the name.
template <Bank B = DualBank>
class Banked {
public:
  static constexpr std::string_view name = "Bank";
  static constexpr PoolScope scope = PoolScope::schedule;
  using bank_type = B;
  using config_type = typename B::config_type;

  explicit Banked(config_type config = {}) : bank_(config) {}

  /// \brief Opens the bank's step transaction; fixes its block (rows per enqueue) on the
  ///        first step; tells a score-caching bank how a similarity-aware loss scores.
  template <ContrastiveLoss L>
  void begin_step(const L& loss, int64_t rows_per_unit) {
    if constexpr (ScoreCachingBank<B>) bank_.set_block_rows(rows_per_unit);
    bank_.begin_step();
    if constexpr (ScoreCachingBank<B> && SimilarityAwareLoss<L>) {
      bank_.set_similarity([sim = loss.similarity](const torch::Tensor& x) { return sim.embed(x); },
                           loss.similarity.scale(), loss.symmetric);
    }
  }

  /// \brief Adds the banked rows (and, from a score-caching bank, their cached
  ///        log-sum-exps) to one evaluation's inputs. Says whether the cache served.
  template <ContrastiveLoss L>
  PoolUse extend(LossInputs& in, const L& loss, int64_t step) {
    check_width(in.queries, step);
    in.bank_queries = bank_.queries();
    in.bank_positives = bank_.positives();
    in.bank_hard_negatives = bank_.hard_negatives();
    if constexpr (ScoreCachingBank<B>) {
      if (!bank_.caches_scores()) return {};
      record_ = ScoreRecord{};
      in.record = &record_;  // the loss leaves its score blocks here; the enqueue reuses them
      if (rows_of(in.bank_queries) == 0) return {};
      in.bank_query_lse = bank_.query_row_lse();
      in.bank_positive_lse = bank_.positive_row_lse();
      in.bank_pair_scores = bank_.pair_scores();
      bool symmetric = false;
      if constexpr (SimilarityAwareLoss<L>) symmetric = loss.symmetric;
      if (in.bank_query_lse.defined() && (!symmetric || in.bank_positive_lse.defined()))
        return {PoolUse::cache::hit, {}};
      return {PoolUse::cache::fallback, bank_.score_cache_status()};
    } else {
      return {};
    }
  }

  /// \brief Enqueues the unit's rows, detached (after its backward, as the reference does).
  void after_unit(const LossInputs& in) {
    auto h = in.hard_negatives.defined() ? in.hard_negatives.detach() : in.hard_negatives;
    if constexpr (ScoreCachingBank<B>) {
      bank_.enqueue(in.queries.detach(), in.positives.detach(), h, in.record);
      record_ = ScoreRecord{};  // its detached logits are not needed past the enqueue
    } else
      bank_.enqueue(in.queries.detach(), in.positives.detach(), h);
  }

  /// \brief Keeps this step's enqueues (applied) or undoes them (the step failed).
  void finish_step(bool applied) {
    if (applied) bank_.commit_step();
    else bank_.rollback_step();
  }

  [[nodiscard]] const B& bank() const { return bank_; }
  [[nodiscard]] B& bank() { return bank_; }

  /// \brief The bank's state (a bank that is not Stateful cannot be checkpointed).
  void save_state(StateDict& s, const std::string& prefix) const
    requires Stateful<B>
  {
    bank_.save_state(s, prefix + "bank.");
  }
  void load_state(const StateReader& r, const std::string& prefix)
    requires Stateful<B>
  {
    bank_.load_state(r, prefix + "bank.");
  }

private:
  void check_width(const torch::Tensor& q, int64_t step) const {
    const auto bp = bank_.positives();
    if (!bp.defined() || bp.size(0) == 0 || bp.size(1) == q.size(1)) return;
    throw invalid_input(detail::cat("contaccum: step ", step, ": embeddings are ", q.size(1),
                                    " wide but the memory bank holds ", bp.size(1),
                                    "-wide ones (the embedding width changed)"));
  }

  B bank_;
  ScoreRecord record_;
};

namespace detail {
template <class P>
inline constexpr bool is_banked = false;
template <class B>
inline constexpr bool is_banked<Banked<B>> = true;
}  // namespace detail

}  // namespace contaccum
