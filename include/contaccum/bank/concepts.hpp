#pragma once
/// \file
/// \brief Concepts of the memory-bank family.
///
///  - Bank: what the Banked<B> negative pool needs: rings of banked queries, positives and
///    hard negatives that a step fills (`enqueue`) inside a transaction it keeps or undoes.
///  - ScoreCachingBank: a Bank that also keeps exact log-sum-exps of its banked rows
///    against its banked columns (DualBank's score cache), so the loss need not rescore
///    the whole bank every evaluation. An optional ability, named: the pool uses it when
///    it is there and the loss is a SimilarityAwareLoss.

#include <contaccum/loss/score_record.hpp>

#include <torch/torch.h>

#include <concepts>
#include <cstdint>
#include <functional>
#include <string>

namespace contaccum {

template <class B>
concept Bank = requires(B b, const B& cb, const torch::Tensor& x) {
  typename B::config_type;
  requires std::constructible_from<B, typename B::config_type>;
  b.enqueue(x, x, x);
  { cb.queries() } -> std::convertible_to<torch::Tensor>;
  { cb.positives() } -> std::convertible_to<torch::Tensor>;
  { cb.hard_negatives() } -> std::convertible_to<torch::Tensor>;
  b.begin_step();
  b.commit_step();
  b.rollback_step();
  b.clear();
};

template <class B>
concept ScoreCachingBank =
    Bank<B> && requires(B b, const B& cb, const torch::Tensor& x, const ScoreRecord* seen, int64_t n,
                        std::function<torch::Tensor(const torch::Tensor&)> embed) {
      { cb.block_rows() } -> std::convertible_to<int64_t>;  ///< rows per enqueue (the cache's block); 0 = not fixed yet
      b.set_block_rows(n);                                  ///< the strategy's rows per enqueue
      b.enqueue(x, x, x, seen);           ///< with the loss's own scores, reused by the cache
      b.set_similarity(embed, 1.0, true);  ///< how the loss scores pairs
      { b.query_row_lse() } -> std::convertible_to<torch::Tensor>;     ///< undefined when it cannot serve
      { b.positive_row_lse() } -> std::convertible_to<torch::Tensor>;  ///< undefined when it cannot serve
      { b.pair_scores() } -> std::convertible_to<torch::Tensor>;       ///< undefined when it cannot serve
      { cb.caches_scores() } -> std::convertible_to<bool>;             ///< the cache is switched on
      { cb.score_cache_status() } -> std::convertible_to<std::string>;  ///< why it cannot serve ("" when it can)
    };

}  // namespace contaccum
