#pragma once
/// \file
/// \brief Generated retrieval pairs with a learnable signal, for smoke runs and tests.
///
/// Each passage is a random token sequence (ids >= 1; 0 is padding); its query is a
/// random subset of the passage's tokens, shuffled; hard negatives are other passages
/// that share a prefix of the positive. Lengths vary, so padding and masks are exercised.

#include <contaccum/data/batch.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/state/state_dict.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <string>

namespace contaccum {

struct SyntheticPairsConfig {
  int64_t vocab_size = 1000;
  int64_t passage_length = 32;   ///< max passage length; actual lengths in [length/2, length]
  int64_t query_length = 8;      ///< max query length; actual lengths in [2, length]
  int64_t hard_negatives = 1;    ///< m per query
  uint64_t seed = 0;
};

class SyntheticPairs {
public:
  explicit SyntheticPairs(SyntheticPairsConfig c = {}) : c_(c), gen_(at::make_generator<at::CPUGeneratorImpl>(c.seed)) {}
  // A copy draws on from the same position with its own generator (at::Generator alone
  // would share one between the copies).
  SyntheticPairs(const SyntheticPairs& o) : c_(o.c_), gen_(o.gen_.clone()) {}
  SyntheticPairs& operator=(const SyntheticPairs& o) {
    if (this != &o) {
      c_ = o.c_;
      gen_ = o.gen_.clone();
    }
    return *this;
  }
  SyntheticPairs(SyntheticPairs&&) = default;
  SyntheticPairs& operator=(SyntheticPairs&&) = default;

  /// \brief n pairs (and n*m hard negatives) on the CPU.
  PairBatch next(int64_t n) {
    auto passages = random_passages(n);
    // queries: a random subset of each passage's real tokens, in random order
    const auto tq = c_.query_length;
    auto q_ids = torch::zeros({n, tq}, torch::kLong);
    auto q_mask = torch::zeros({n, tq}, torch::kLong);
    auto p_len = passages.attention_mask.sum(1);
    auto acc_ids = q_ids.accessor<int64_t, 2>();
    auto acc_mask = q_mask.accessor<int64_t, 2>();
    auto acc_p = passages.input_ids.accessor<int64_t, 2>();
    for (int64_t i = 0; i < n; ++i) {
      const auto len = p_len[i].item<int64_t>();
      const auto ql = std::min<int64_t>(len, 2 + randint(tq - 1));
      auto perm = torch::randperm(len, gen_, torch::kLong);
      for (int64_t j = 0; j < ql; ++j) {
        acc_ids[i][j] = acc_p[i][perm[j].item<int64_t>()];
        acc_mask[i][j] = 1;
      }
    }
    PairBatch b{{q_ids, q_mask}, passages, {}};
    if (c_.hard_negatives > 0) {
      // hard negatives: a fresh passage that copies the first half of the positive
      auto h = random_passages(n * c_.hard_negatives);
      for (int64_t i = 0; i < n * c_.hard_negatives; ++i) {
        const auto src = i / c_.hard_negatives;
        const auto half = p_len[src].item<int64_t>() / 2;
        h.input_ids[i].slice(0, 0, half).copy_(passages.input_ids[src].slice(0, 0, half));
      }
      b.hard_negatives = h;
    }
    return b;
  }

  [[nodiscard]] const SyntheticPairsConfig& config() const { return c_; }

  /// \brief The generator's position and the config, so a resumed run draws the same pairs.
  void save_state(StateDict& s, const std::string& prefix) const {
    s.put(prefix + "generator", gen_.get_state());
    s.set_all(prefix, settings());
  }
  void load_state(const StateReader& r, const std::string& prefix) {
    r.require_same_all(prefix, settings());
    const auto now = gen_.get_state();
    const auto& saved = r.tensor(prefix + "generator", now.sizes(), now.scalar_type());
    gen_.set_state(saved.clone());
  }

private:
  [[nodiscard]] nlohmann::json settings() const {
    return {{"seed", c_.seed},
            {"vocab_size", c_.vocab_size},
            {"hard_negatives", c_.hard_negatives},
            {"passage_length", c_.passage_length},
            {"query_length", c_.query_length}};
  }
  int64_t randint(int64_t hi) { return torch::randint(hi, {1}, gen_).item<int64_t>(); }
  TokenBatch random_passages(int64_t n) {
    const auto t = c_.passage_length;
    auto ids = torch::randint(1, c_.vocab_size, {n, t}, gen_, torch::kLong);
    auto lens = torch::randint(t / 2, t + 1, {n, 1}, gen_, torch::kLong);
    auto mask = (torch::arange(t, torch::kLong).unsqueeze(0) < lens).to(torch::kLong);
    return {ids * mask, mask};
  }

  SyntheticPairsConfig c_;
  at::Generator gen_;
};

/// \brief Step batches of `batch_size` synthetic pairs: a loader for fit() when there is no
///        text (tests, smoke runs, benchmarks).
class SyntheticLoader {
public:
  SyntheticLoader(SyntheticPairsConfig c, int64_t batch_size) : pairs_(c), batch_size_(batch_size) {
    detail::require(batch_size > 0, "SyntheticLoader: batch_size must be positive, got ", batch_size);
  }
  [[nodiscard]] PairBatch next() { return pairs_.next(batch_size_); }
  void save_state(StateDict& s, const std::string& prefix) const {
    s.set(prefix + "batch_size", batch_size_);
    pairs_.save_state(s, prefix);
  }
  void load_state(const StateReader& r, const std::string& prefix) {
    r.require_same(prefix + "batch_size", batch_size_);
    pairs_.load_state(r, prefix);
  }

private:
  SyntheticPairs pairs_;
  int64_t batch_size_;
};

}  // namespace contaccum
