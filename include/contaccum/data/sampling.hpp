#pragma once
/// \file
/// \brief DPR-style training pairs from examples: per epoch a seeded order of the
///        examples, and for each example one positive and m hard negatives.
///
/// What DPR's BiEncoder.create_biencoder_input does, made deterministic: the positive is
/// the first positive passage (or a random one with `shuffle_positives`); the hard
/// negatives are the example's hard negatives, shuffled, first m taken; an example with
/// no hard negative falls back to its (random) negatives when `fallback_to_negatives`
/// (DPR's hard_neg_fallback). Where DPR would then give a query fewer than m, a batch
/// needs exactly m for every query (PairBatch), so:
///   * fewer than m candidates: they are reused, each pass over them in a fresh order;
///   * no candidate at all: positives of other examples, drawn at random, stand in
///     (a random negative, which is what DPR's negative_ctxs are), never one equal to
///     one of the example's own positives.
///
/// Every draw comes from a generator seeded by (seed, epoch, example index), so an
/// epoch's pairs do not depend on how far, or in what order, the view is read.

#include <contaccum/data/records.hpp>
#include <contaccum/data/shuffle.hpp>
#include <contaccum/detail/error.hpp>

#include <range/v3/view/iota.hpp>
#include <range/v3/view/transform.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <utility>
#include <vector>

namespace contaccum {

/// \brief How pairs are drawn from examples. A plain aggregate: `describe(cfg)` prints it.
struct PairSamplingConfig {
  std::uint64_t seed = 0;
  std::int64_t hard_negatives_per_query = 1;  ///< m (the official ContAccum and DPR setups use 1)
  bool fallback_to_negatives = true;          ///< DPR's hard_neg_fallback: use negative_ctxs when there is no hard negative
  bool shuffle = true;                        ///< a new example order every epoch (else file order)
  bool shuffle_positives = false;             ///< draw the positive at random (else the first)
};

/// \brief Draws TextPairs from a set of examples, epoch by epoch.
///
/// \code
/// contaccum::PairSampler sampler(examples, {.seed = 13, .hard_negatives_per_query = 1});
/// for (const contaccum::TextPair& pair : sampler.epoch(0)) { ... }   // tokenize, batch
/// \endcode
class PairSampler {
public:
  explicit PairSampler(std::vector<TextExample> examples, PairSamplingConfig config = {})
      : examples_(std::make_shared<const std::vector<TextExample>>(std::move(examples))), config_(config) {
    detail::require(config_.hard_negatives_per_query >= 0, "PairSamplingConfig.hard_negatives_per_query must be >= 0, got ",
                    config_.hard_negatives_per_query);
    for (const auto& ex : *examples_)
      detail::require(!ex.positives.empty(), "PairSampler: example '", ex.query_id, "' has no positive passage");
    detail::require(config_.hard_negatives_per_query == 0 || size() != 1 || !needs_stand_ins(0),
                    "PairSampler: example '", size() == 1 ? examples_->front().query_id : "",
                    "' has no negative to sample and there is no other example to borrow one from");
  }

  [[nodiscard]] std::size_t size() const { return examples_->size(); }
  [[nodiscard]] const std::vector<TextExample>& examples() const { return *examples_; }
  [[nodiscard]] const PairSamplingConfig& config() const { return config_; }

  /// \brief The order in which epoch `epoch` visits the examples (indices into examples()).
  [[nodiscard]] std::vector<std::size_t> order(std::uint64_t epoch) const {
    if (!config_.shuffle) return identity(size());
    return seeded_permutation(size(), derive_seed(config_.seed, epoch, ~std::uint64_t{0}));
  }

  /// \brief The pair drawn from example `index` in epoch `epoch`.
  [[nodiscard]] TextPair sample(std::size_t index, std::uint64_t epoch) const {
    const auto& ex = examples_->at(index);
    std::mt19937_64 rng(derive_seed(config_.seed, epoch, index));
    TextPair pair{ex.query_id, ex.query, ex.positives.front(), {}};
    if (config_.shuffle_positives) pair.positive = ex.positives[uniform_index(rng, ex.positives.size())];

    const auto m = static_cast<std::size_t>(config_.hard_negatives_per_query);
    if (m == 0) return pair;
    const auto* candidates = &ex.hard_negatives;
    if (candidates->empty() && config_.fallback_to_negatives) candidates = &ex.negatives;
    if (!candidates->empty()) {
      // shuffled passes over the candidates until m are taken
      std::vector<std::size_t> pass(candidates->size());
      while (pair.hard_negatives.size() < m) {
        for (std::size_t i = 0; i < pass.size(); ++i) pass[i] = i;
        seeded_shuffle(pass, rng);
        for (std::size_t i = 0; i < pass.size() && pair.hard_negatives.size() < m; ++i)
          pair.hard_negatives.push_back((*candidates)[pass[i]]);
      }
      return pair;
    }
    // no candidate: borrow other examples' positives (random negatives)
    const auto own = [&ex](const Passage& p) {
      return std::find(ex.positives.begin(), ex.positives.end(), p) != ex.positives.end();
    };
    for (std::size_t tries = 0; pair.hard_negatives.size() < m; ++tries) {
      if (tries == 64 + 8 * m) {  // mostly duplicates of this example's positives: draw from the eligible ones
        std::vector<const Passage*> eligible;
        for (std::size_t j = 0; j < size(); ++j)
          for (const auto& p : (*examples_)[j].positives)
            if (j != index && !own(p)) eligible.push_back(&p);
        detail::require(!eligible.empty(), "PairSampler: example '", ex.query_id,
                        "' has no negative, and every other example's positives equal its own");
        while (pair.hard_negatives.size() < m) pair.hard_negatives.push_back(*eligible[uniform_index(rng, eligible.size())]);
        break;
      }
      const auto other = uniform_index(rng, size());
      if (other == index) continue;
      const auto& donor = (*examples_)[other];
      const auto& p = donor.positives[uniform_index(rng, donor.positives.size())];
      if (!own(p)) pair.hard_negatives.push_back(p);
    }
    return pair;
  }

  /// \brief Epoch `epoch`'s pairs, in its order, as a random-access view computed on read.
  [[nodiscard]] auto epoch(std::uint64_t epoch) const {
    auto order = std::make_shared<const std::vector<std::size_t>>(this->order(epoch));
    return ranges::views::iota(std::size_t{0}, size()) |
           ranges::views::transform([sampler = *this, order, epoch](std::size_t i) {
             return sampler.sample((*order)[i], epoch);
           });
  }

  /// \brief Examples that have no negative candidate (their negatives are borrowed).
  [[nodiscard]] std::size_t examples_without_negatives() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < size(); ++i) n += needs_stand_ins(i);
    return n;
  }

private:
  [[nodiscard]] bool needs_stand_ins(std::size_t i) const {
    const auto& ex = (*examples_)[i];
    return ex.hard_negatives.empty() && (!config_.fallback_to_negatives || ex.negatives.empty());
  }
  [[nodiscard]] static std::vector<std::size_t> identity(std::size_t n) {
    std::vector<std::size_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = i;
    return v;
  }

  std::shared_ptr<const std::vector<TextExample>> examples_;
  PairSamplingConfig config_;
};

}  // namespace contaccum
