#pragma once
/// \file
/// \brief ContAccum (Kim, Lee, Kang; NeurIPS 2024): gradient accumulation with a dual
/// memory bank of past query and passage embeddings. When to use: memory allows only a
/// small N_local and you want many negatives at GradAccum's cost.
///
/// Per micro-batch (the reference's LossCalculator):
///   Q = [q_cur; M_q],  D = [p_cur; M_p; h_cur; M_h],  labels = arange(|Q|)
///   L = mean CE over all |Q| rows (banked rows are constants, but they still send
///       gradient into the current passage columns), backward with weight 1/K,
///   then enqueue detached q_cur, p_cur, h_cur (FIFO; the oldest fall out).
/// The banks persist across optimizer steps unless the bank says otherwise.

#include <contaccum/bank/concepts.hpp>
#include <contaccum/bank/dual_bank.hpp>
#include <contaccum/dist/single_process.hpp>
#include <contaccum/strategy/concepts.hpp>
#include <contaccum/strategy/detail/encode.hpp>

#include <string_view>

namespace contaccum {

template <Bank B = DualBank, Collective C = SingleProcess>
class ContAccum {
public:
  static constexpr std::string_view name = "ContAccum";
  using bank_type = B;
  using config_type = typename B::config_type;

  explicit ContAccum(config_type config = {}, C collective = {}) : bank_(config), collective_(collective) {}

  template <BiEncoder M, ContrastiveLoss L>
  Accumulation accumulate(M& model, const L& loss, const PairBatch& batch, const StepContext& ctx) {
    const auto n_local = ctx.micro_batch_size;
    const auto k = (batch.size() + n_local - 1) / n_local;
    Accumulation out{.micro_batches = k};
    bank_.begin_step();
    if constexpr (requires { loss.similarity; bank_.set_similarity({}, 1.0, false); }) {
      bank_.set_similarity([sim = loss.similarity](const torch::Tensor& x) { return sim.embed(x); },
                           loss.similarity.scale(), loss.symmetric);
    }
    int64_t j = 0;
    for (const PairBatch& mb : micro_batches(batch, n_local)) {
      auto q = model->encode_queries(mb.queries);  // (n, H)
      auto d = detail::encode_passages(model, mb);  // (n, H), (n*m, H)
      detail::check_width(q, d.positives, ctx.step);
      check_bank_width(q, ctx.step);
      LossInputs in{.queries = q, .positives = d.positives, .hard_negatives = d.hard_negatives,
                    .bank_queries = bank_.queries(), .bank_positives = bank_.positives(),
                    .bank_hard_negatives = bank_.hard_negatives()};
      if constexpr (requires { bank_.query_row_lse(); }) {
        in.bank_query_lse = bank_.query_row_lse();
        in.bank_positive_lse = bank_.positive_row_lse();
        in.bank_pair_scores = bank_.pair_scores();
      }
      ScoreRecord record;
      in.record = &record;
      out.negatives_per_query += static_cast<double>(mb.size() - 1 + rows(in.bank_positives) +
                                                     d.hard_negatives.size(0) + rows(in.bank_hard_negatives)) /
                                 static_cast<double>(k);
      auto l = loss(collective_.exchange(in));
      out.loss += detail::finite_or_throw(l, ctx.step, j++) / static_cast<double>(k);
      (l / static_cast<double>(k)).backward();
      if constexpr (requires { bank_.enqueue(q, q, q, &record); })
        bank_.enqueue(q.detach(), d.positives.detach(), d.hard_negatives.detach(), &record);
      else
        bank_.enqueue(q.detach(), d.positives.detach(), d.hard_negatives.detach());
    }
    return out;
  }

  /// \brief Keeps this step's enqueues (applied) or undoes them (the step failed).
  void finish_step(bool applied) {
    if (applied) bank_.commit_step();
    else bank_.rollback_step();
  }

  [[nodiscard]] const B& bank() const { return bank_; }
  [[nodiscard]] B& bank() { return bank_; }

private:
  static int64_t rows(const torch::Tensor& t) { return t.defined() ? t.size(0) : 0; }
  void check_bank_width(const torch::Tensor& q, int64_t step) const {
    const auto bp = bank_.positives();
    if (!bp.defined() || bp.size(0) == 0 || bp.size(1) == q.size(1)) return;
    throw invalid_input(detail::cat("contaccum: step ", step, ": embeddings are ", q.size(1),
                                    " wide but the memory bank holds ", bp.size(1),
                                    "-wide ones (the embedding width changed)"));
  }

  B bank_;
  C collective_;
};

}  // namespace contaccum
