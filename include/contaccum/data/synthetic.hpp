#pragma once
/// \file
/// \brief Generated retrieval pairs with a learnable signal, for smoke runs and tests.
///
/// Each passage is a random token sequence (ids >= 1; 0 is padding); its query is a
/// random subset of the passage's tokens, shuffled; hard negatives are other passages
/// that share a prefix of the positive. Lengths vary, so padding and masks are exercised.

#include <contaccum/data/batch.hpp>

#include <torch/torch.h>

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

private:
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

}  // namespace contaccum
