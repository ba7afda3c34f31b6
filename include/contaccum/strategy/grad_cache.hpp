#pragma once
/// \file
/// \brief GradCache (Gao et al. 2021): the full-batch gradient with one micro-batch's
/// activation memory. When to use: you want FullBatch's N_total negatives exactly and can
/// pay one extra forward (~4/3 of GradAccum's compute at best).
///
///  1. encode every micro-batch without autograd, saving the RNG state before each tower call;
///  2. loss over all N_total detached embeddings (as leaves) -> dL/dq, dL/dp, dL/dh;
///  3. per micro-batch: restore the RNG state, re-encode with autograd, backprop the
///     cached embedding gradients (the surrogate sum(e * dL/de)).
/// Restoring the RNG state gives the second forward the first forward's dropout masks;
/// without it the gradient would be wrong whenever dropout is on.

#include <contaccum/detail/rng_state.hpp>
#include <contaccum/dist/single_process.hpp>
#include <contaccum/strategy/concepts.hpp>
#include <contaccum/strategy/detail/encode.hpp>

#include <string_view>
#include <vector>

namespace contaccum {

template <Collective C = SingleProcess>
class GradCache {
public:
  static constexpr std::string_view name = "GradCache";

  explicit GradCache(C collective = {}) : collective_(collective) {}

  template <BiEncoder M, ContrastiveLoss L>
  Accumulation accumulate(M& model, const L& loss, const PairBatch& batch, const StepContext& ctx) {
    const auto n_local = ctx.micro_batch_size;
    std::vector<PairBatch> chunks;
    for (const PairBatch& mb : micro_batches(batch, n_local)) chunks.push_back(mb);
    const auto k = static_cast<int64_t>(chunks.size());

    // 1. forward without autograd, remembering the generators before each tower call.
    std::vector<detail::rng_state> rng_q, rng_d;
    std::vector<torch::Tensor> q_leaf, d_leaf;  // per chunk: (n, H), (n + n*m, H)
    {
      torch::NoGradGuard no_grad;
      for (const auto& mb : chunks) {
        rng_q.push_back(detail::rng_state::capture());
        q_leaf.push_back(model->encode_queries(mb.queries).detach().requires_grad_(true));
        rng_d.push_back(detail::rng_state::capture());
        d_leaf.push_back(model->encode_passages(cat_rows(mb.positives, mb.hard_negatives)).detach().requires_grad_(true));
      }
    }
    const auto after_forward = detail::rng_state::capture();

    // 2. full-batch loss on the cached embeddings; gradients land on the leaves.
    std::vector<torch::Tensor> ps, hs;
    for (int64_t j = 0; j < k; ++j) {
      const auto n = chunks[j].size();
      ps.push_back(d_leaf[j].slice(0, 0, n));
      hs.push_back(d_leaf[j].slice(0, n));
    }
    LossInputs in{.queries = torch::cat(q_leaf), .positives = torch::cat(ps), .hard_negatives = torch::cat(hs)};
    detail::check_width(in.queries, in.positives, ctx.step);
    auto l = loss(collective_.exchange(in));
    const double v = detail::finite_or_throw(l, ctx.step, 0);
    l.backward();

    // 3. replay each chunk with autograd and push the cached gradients through it.
    for (int64_t j = 0; j < k; ++j) {
      rng_q[j].restore();
      auto q = model->encode_queries(chunks[j].queries);
      rng_d[j].restore();
      auto d = model->encode_passages(cat_rows(chunks[j].positives, chunks[j].hard_negatives));
      torch::autograd::backward({q, d}, {q_leaf[j].grad(), d_leaf[j].grad()});
    }
    after_forward.restore();  // the generators move on as if each chunk ran once

    const auto n = batch.size();
    return {v, static_cast<double>(n - 1 + n * batch.negatives_per_query()), k};
  }

  void finish_step(bool /*applied*/) {}

private:
  C collective_;
};

}  // namespace contaccum
