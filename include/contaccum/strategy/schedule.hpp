#pragma once
/// \file
/// \brief Encode schedules: how a loss unit's embeddings are made and how its gradient
///        reaches the encoders. Both satisfy EncodeSchedule (strategy/concepts.hpp).
///
///  - Direct: encode with autograd and backpropagate the unit's loss. When to use: the
///    micro-batch's graph fits (GradAccum, ContAccum), or the whole step's does (FullBatch).
///  - CachedReplay: GradCache (Gao et al. 2021). When to use: you want a loss over the
///    whole step (N_total rows, plus a bank) with one micro-batch's activation memory, and
///    can pay one extra forward (~4/3 of GradAccum's compute at best).
///      1. encode every chunk without autograd, saving every generator's state before each
///         tower call;
///      2. the loss over all of the step's detached embeddings (as leaves) -> dL/de;
///      3. per chunk: restore the generators, re-encode with autograd and push the cached
///         gradients through it (the surrogate sum(e * dL/de)).
///    Restoring the generators gives the second forward the first one's dropout masks;
///    without it the gradient would be wrong whenever dropout is on. The replay runs in the
///    first pass's precision (the same autocast state), so it recomputes the same embeddings.

#include <contaccum/data/batch.hpp>
#include <contaccum/detail/rng_state.hpp>
#include <contaccum/encoders/concepts.hpp>
#include <contaccum/strategy/concepts.hpp>
#include <contaccum/strategy/detail/encode.hpp>
#include <contaccum/strategy/seam.hpp>

#include <torch/torch.h>

#include <span>
#include <string_view>
#include <vector>

namespace contaccum {

/// \brief Encode with autograd; backward per loss unit.
struct Direct {
  static constexpr std::string_view name = "Direct";
  static constexpr bool whole_step = false;

  /// \brief The chunks' embeddings with their graphs: q (n, H), p (n, H), h (n*m, H).
  template <BiEncoder M>
  EncodedRows encode(M& model, std::span<const PairBatch> chunks, const EncodeContext& how = {}) {
    if (chunks.size() == 1) {  // queries first: the generators' draws keep the order they always had
      how.enter(0);
      auto q = detail::encode_queries(model, chunks.front(), how);  // (n, H)
      auto d = detail::encode_passages(model, chunks.front(), how);
      return {q, d.positives, d.hard_negatives};
    }
    std::vector<torch::Tensor> qs, ps, hs;
    for (size_t j = 0; j < chunks.size(); ++j) {
      const PairBatch& mb = chunks[j];
      how.enter(static_cast<int64_t>(j));
      qs.push_back(detail::encode_queries(model, mb, how));  // (n_j, H)
      auto d = detail::encode_passages(model, mb, how);
      ps.push_back(d.positives);
      hs.push_back(d.hard_negatives);
    }
    return {torch::cat(qs), torch::cat(ps), torch::cat(hs)};
  }

  template <BiEncoder M>
  void backward(M& /*model*/, std::span<const PairBatch> /*chunks*/, const torch::Tensor& loss, int64_t units,
                BackwardSeam& seam) {
    seam.backward(loss, units);
  }
};

/// \brief GradCache: encode without autograd, loss on leaves, replay with the generators restored.
class CachedReplay {
public:
  static constexpr std::string_view name = "CachedReplay";
  static constexpr bool whole_step = true;

  /// \brief Detached leaf embeddings of every chunk, concatenated in step order:
  ///        q (N, H), p (N, H), h (N*m, H). The generator states are kept for the replay.
  template <BiEncoder M>
  EncodedRows encode(M& model, std::span<const PairBatch> chunks, const EncodeContext& how = {}) {
    how_ = how;  // the replay runs in the same precision
    rng_q_.clear();
    rng_d_.clear();
    q_leaf_.clear();
    d_leaf_.clear();
    {
      torch::NoGradGuard no_grad;
      for (size_t j = 0; j < chunks.size(); ++j) {
        const PairBatch& mb = chunks[j];
        how.enter(static_cast<int64_t>(j));
        rng_q_.push_back(detail::rng_state::capture());
        q_leaf_.push_back(detail::encode_queries(model, mb, how).detach().requires_grad_(true));  // (n_j, H)
        rng_d_.push_back(detail::rng_state::capture());
        d_leaf_.push_back(detail::encode_documents(model, mb, how).detach().requires_grad_(true));  // (n_j + n_j*m, H)
      }
    }
    after_ = detail::rng_state::capture();
    std::vector<torch::Tensor> ps, hs;
    for (size_t j = 0; j < chunks.size(); ++j) {
      const auto n = chunks[j].size();
      ps.push_back(d_leaf_[j].slice(0, 0, n));
      hs.push_back(d_leaf_[j].slice(0, n));
    }
    return {torch::cat(q_leaf_), torch::cat(ps), torch::cat(hs)};
  }

  /// \brief The loss's gradient onto the leaves, then each chunk replayed with autograd
  ///        and its cached gradients pushed into the encoders.
  template <BiEncoder M>
  void backward(M& model, std::span<const PairBatch> chunks, const torch::Tensor& loss, int64_t units,
                BackwardSeam& seam) {
    seam.backward(loss, units);
    for (size_t j = 0; j < chunks.size(); ++j) {
      rng_q_[j].restore();
      auto q = detail::encode_queries(model, chunks[j], how_);
      rng_d_[j].restore();
      auto d = detail::encode_documents(model, chunks[j], how_);
      seam.backward({q, d}, {grad_of(q_leaf_[j]), grad_of(d_leaf_[j])});
    }
    after_.restore();  // the generators move on as if each chunk ran once
    q_leaf_.clear();
    d_leaf_.clear();
  }

private:
  static torch::Tensor grad_of(const torch::Tensor& leaf) {
    return leaf.grad().defined() ? leaf.grad() : torch::zeros_like(leaf);
  }

  std::vector<detail::rng_state> rng_q_, rng_d_;
  std::vector<torch::Tensor> q_leaf_, d_leaf_;  // per chunk: (n, H), (n + n*m, H)
  detail::rng_state after_;
  EncodeContext how_;
};

}  // namespace contaccum
