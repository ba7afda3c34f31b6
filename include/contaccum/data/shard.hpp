#pragma once
/// \file
/// \brief Each rank's share of every global step: `shard_of` and `ShardedLoader`.
///
/// Every rank draws the same global batch (the loaders are seeded alike) and keeps its
/// contiguous r-th share, so the shares are disjoint, cover the step, and follow from the
/// seed alone; a resumed run (the loader's state is the global loader's) draws the same
/// shares. With the C10dCollective the step then trains on the global batch exactly:
/// GradCache, FullBatch and ContAccum over GradCache as one process on that batch would;
/// GradAccum and ContAccum (a loss per micro-batch) with global micro-batch j made of every
/// rank's j-th micro-batch (docs/distributed.md).

#include <contaccum/data/batch.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/state/state_dict.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace contaccum {

/// \brief Rank `rank`'s contiguous share of a global batch of N pairs (N / world each;
///        N must divide evenly: every rank's step must have the same shape).
[[nodiscard]] inline PairBatch shard_of(const PairBatch& global, int64_t rank, int64_t world) {
  detail::require(world >= 1 && rank >= 0 && rank < world, "shard_of: rank ", rank, " of world ", world);
  const auto n = global.size();
  detail::require(n % world == 0, "shard_of: a global batch of ", n, " pairs does not split evenly over ", world,
                  " ranks (make the batch size a multiple of the world size)");
  const auto share = n / world;
  return global.slice(rank * share, (rank + 1) * share);
}

/// \brief A loader whose next() is this rank's share of the inner loader's global batch.
template <class L>
class ShardedLoader {
public:
  ShardedLoader(L inner, int64_t rank, int64_t world) : inner_(std::move(inner)), rank_(rank), world_(world) {
    detail::require(world >= 1 && rank >= 0 && rank < world, "ShardedLoader: rank ", rank, " of world ", world);
  }
  /// \brief Sharded the way a collective (C10dCollective, SingleProcess) sees the run.
  template <class C>
    requires requires(const C& c) {
      c.rank();
      c.world_size();
    }
  ShardedLoader(L inner, const C& collective) : ShardedLoader(std::move(inner), collective.rank(), collective.world_size()) {}

  [[nodiscard]] PairBatch next() { return shard_of(inner_.next(), rank_, world_); }

  /// \brief The global loader's state: the same on every rank, and independent of the
  ///        world size, so a run may resume on another number of ranks.
  void save_state(StateDict& s, const std::string& prefix) const { inner_.save_state(s, prefix); }
  void load_state(const StateReader& r, const std::string& prefix) { inner_.load_state(r, prefix); }

  /// \brief Steps in one epoch of the global data (when the inner loader knows it).
  [[nodiscard]] auto steps_per_epoch() const
    requires requires(const L& l) { l.steps_per_epoch(); }
  {
    return inner_.steps_per_epoch();
  }
  [[nodiscard]] const L& inner() const { return inner_; }
  [[nodiscard]] int64_t rank() const { return rank_; }
  [[nodiscard]] int64_t world_size() const { return world_; }

private:
  L inner_;
  int64_t rank_, world_;
};

template <class L>
ShardedLoader(L, int64_t, int64_t) -> ShardedLoader<L>;
template <class L, class C>
ShardedLoader(L, const C&) -> ShardedLoader<L>;

}  // namespace contaccum
