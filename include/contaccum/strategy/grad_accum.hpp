#pragma once
/// \file
/// \brief GradAccum: each micro-batch is its own InfoNCE over N_local pairs (N_local - 1
/// in-batch negatives plus its hard negatives); gradients summed with weight 1/K.
/// When to use: the memory floor, when negatives per query matter little.
///
///   grad = (1/K) sum_k grad InfoNCE(q^k, [p^k; h^k])

#include <contaccum/dist/single_process.hpp>
#include <contaccum/strategy/concepts.hpp>
#include <contaccum/strategy/detail/encode.hpp>

#include <string_view>

namespace contaccum {

template <Collective C = SingleProcess>
class GradAccum {
public:
  static constexpr std::string_view name = "GradAccum";

  explicit GradAccum(C collective = {}) : collective_(collective) {}

  template <BiEncoder M, ContrastiveLoss L>
  Accumulation accumulate(M& model, const L& loss, const PairBatch& batch, const StepContext& ctx) {
    const auto n_local = ctx.micro_batch_size;
    const auto k = (batch.size() + n_local - 1) / n_local;
    Accumulation out{.micro_batches = k};
    int64_t j = 0;
    for (const PairBatch& mb : micro_batches(batch, n_local)) {
      auto q = model->encode_queries(mb.queries);  // (n, H)
      auto d = detail::encode_passages(model, mb);
      detail::check_width(q, d.positives, ctx.step);
      auto l = loss(collective_.exchange({.queries = q, .positives = d.positives, .hard_negatives = d.hard_negatives}));
      out.loss += detail::finite_or_throw(l, ctx.step, j++) / static_cast<double>(k);
      (l / static_cast<double>(k)).backward();
      out.negatives_per_query += static_cast<double>(mb.size() - 1 + d.hard_negatives.size(0)) / static_cast<double>(k);
    }
    return out;
  }

  void finish_step(bool /*applied*/) {}

private:
  C collective_;
};

}  // namespace contaccum
