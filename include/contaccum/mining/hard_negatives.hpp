#pragma once
/// \file
/// \brief Hard-negative selection from embeddings: the rule sentence-transformers'
///        `mine_hard_negatives` and FlagEmbedding's `hn_mine` apply, on tensors.
///
/// For each query, with scores s = <q, d> of the reader's embeddings (a Normalized
/// reader makes them cosines):
///  1. the best `range_max + P` corpus rows are retrieved by exact search (P: the most
///     positives any query has), ties by the lower row;
///  2. every judged positive is removed, and so is any candidate a rule calls a likely
///     false negative, where s+ is the query's *lowest* positive score:
///       absolute_margin a:  kept only if s <= s+ - a
///       relative_margin r:  kept only if s <= s+ - |s+| * r   (NV-Retriever's TopK-PercPos)
///       max_score / min_score: kept only if min_score <= s <= max_score;
///  3. of what is left, the best `range_max` are the candidates, and the first
///     `range_min` of those are skipped (the rank window);
///  4. `num_negatives` are taken: the best ones (`top`) or a seeded sample (`random`),
///     each query with its own generator derive_seed(seed, query), so the result does not
///     depend on chunk sizes or on which other queries are mined with it.
/// A query whose window holds fewer than `num_negatives` gets what there is
/// (MiningStats::short_queries counts them).
///
/// \code
/// auto mined = contaccum::select_hard_negatives(query_emb, corpus_emb, positive_rows,
///                                              {.num_negatives = 1, .relative_margin = 0.05});
/// // mined.per_query[i]: corpus rows and scores, best first; mined.stats.summary()
/// \endcode

#include <contaccum/data/records.hpp>
#include <contaccum/data/shuffle.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/eval/exact_search.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

namespace contaccum {

/// \brief How negatives are taken from a query's candidate window.
enum class NegativeSampling {
  top,     ///< the best num_negatives (sentence-transformers' default)
  random,  ///< num_negatives drawn uniformly without replacement, seeded per query
};

/// \brief What counts as a hard negative. A plain aggregate; the names are
///        sentence-transformers' `mine_hard_negatives` arguments.
struct MiningConfig {
  std::int64_t num_negatives = 3;          ///< negatives per query
  std::int64_t range_min = 0;              ///< candidates skipped at the top of the window
  std::int64_t range_max = 0;              ///< window size; 0: range_min + num_negatives (x10 under a rule) + P
  std::optional<double> absolute_margin;   ///< drop s > s+ - a
  std::optional<double> relative_margin;   ///< drop s > s+ - |s+| r
  std::optional<double> max_score;         ///< drop s > max_score
  std::optional<double> min_score;         ///< drop s < min_score
  NegativeSampling sampling = NegativeSampling::top;
  std::uint64_t seed = 13;                 ///< for NegativeSampling::random
  std::int64_t chunk_size = 8192;          ///< corpus rows per matrix product of the search
};

/// \brief One mined negative: a corpus row and its score against the query.
struct MinedNegative {
  std::int64_t row = 0;
  double score = 0;
  friend bool operator==(const MinedNegative&, const MinedNegative&) = default;
  friend std::ostream& operator<<(std::ostream& os, const MinedNegative& m) {
    return os << "{row " << m.row << ", score " << m.score << "}";
  }
};

/// \brief What the rules did, summed over queries.
struct MiningStats {
  std::int64_t queries = 0;
  std::int64_t candidates = 0;               ///< retrieved rows looked at
  std::int64_t dropped_positives = 0;        ///< judged positives (never negatives)
  std::int64_t dropped_absolute_margin = 0;  ///< likely false negatives, by rule
  std::int64_t dropped_relative_margin = 0;
  std::int64_t dropped_max_score = 0;
  std::int64_t dropped_min_score = 0;
  std::int64_t negatives = 0;      ///< negatives kept in all
  std::int64_t short_queries = 0;  ///< queries with fewer than num_negatives
  std::int64_t range_max = 0;      ///< the window used (derived when the config said 0)

  [[nodiscard]] std::string summary() const {
    auto s = detail::cat(negatives, " negatives for ", queries, " queries (window ", range_max, "); of ", candidates,
                         " candidates, dropped: ", dropped_positives, " judged positives");
    if (dropped_absolute_margin) s += detail::cat(", ", dropped_absolute_margin, " by the absolute margin");
    if (dropped_relative_margin) s += detail::cat(", ", dropped_relative_margin, " by the relative margin");
    if (dropped_max_score) s += detail::cat(", ", dropped_max_score, " above max_score");
    if (dropped_min_score) s += detail::cat(", ", dropped_min_score, " below min_score");
    if (short_queries) s += detail::cat("; ", short_queries, " queries got fewer negatives than asked");
    return s;
  }
};

/// \brief Negatives per query (best first) and what the rules did.
struct MinedNegatives {
  std::vector<std::vector<MinedNegative>> per_query;
  MiningStats stats;
};

namespace detail {

inline std::int64_t mining_window(const MiningConfig& c, std::int64_t max_positives) {
  if (c.range_max > 0) return c.range_max;
  const bool rule = c.absolute_margin || c.relative_margin || c.max_score || c.min_score;
  return c.range_min + c.num_negatives * (rule ? 10 : 1) + max_positives;
}

inline void check_mining_config(const MiningConfig& c, std::int64_t window) {
  require(c.num_negatives >= 1, "MiningConfig.num_negatives must be at least 1, got ", c.num_negatives);
  require(c.range_min >= 0, "MiningConfig.range_min must be >= 0, got ", c.range_min);
  require(c.range_max >= 0, "MiningConfig.range_max must be >= 0 (0 derives it), got ", c.range_max);
  require(c.range_min < window, "MiningConfig: range_min ", c.range_min, " must be below range_max ", window);
  require(c.num_negatives <= window - c.range_min, "MiningConfig: ", c.num_negatives, " negatives cannot come from a window of ",
          window - c.range_min, " (range_max ", window, " - range_min ", c.range_min, ")");
  for (const auto& [v, name] : {std::pair{c.absolute_margin, "absolute_margin"}, std::pair{c.relative_margin, "relative_margin"},
                                std::pair{c.max_score, "max_score"}, std::pair{c.min_score, "min_score"}})
    require(!v || std::isfinite(*v), "MiningConfig.", name, " must be finite, got ", v.value_or(0.0));
}

}  // namespace detail

/// \brief Hard negatives of each query among the corpus rows.
/// \param queries (Q, H), corpus (N, H): embeddings, scored by dot product
/// \param positives per query, its judged positive corpus rows (at least one each)
[[nodiscard]] inline MinedNegatives select_hard_negatives(const torch::Tensor& queries, const torch::Tensor& corpus,
                                                          const std::vector<std::vector<std::int64_t>>& positives,
                                                          const MiningConfig& config,
                                                          const SearchProgressCallback& progress = {}) {
  detail::require(queries.defined() && queries.dim() == 2 && corpus.defined() && corpus.dim() == 2 &&
                      queries.size(1) == corpus.size(1),
                  "select_hard_negatives: queries ", queries.defined() ? queries.sizes() : c10::IntArrayRef{},
                  " and corpus ", corpus.defined() ? corpus.sizes() : c10::IntArrayRef{}, " must be (Q, H) and (N, H)");
  const auto nq = queries.size(0), n = corpus.size(0);
  detail::require(static_cast<std::int64_t>(positives.size()) == nq, "select_hard_negatives: ", nq, " queries but ",
                  positives.size(), " positive lists");
  std::int64_t max_positives = 0;
  for (std::size_t i = 0; i < positives.size(); ++i) {
    detail::require(!positives[i].empty(), "select_hard_negatives: query ", i, " has no positive");
    for (auto r : positives[i])
      detail::require(r >= 0 && r < n, "select_hard_negatives: query ", i, "'s positive row ", r, " is outside the corpus of ", n);
    max_positives = std::max<std::int64_t>(max_positives, static_cast<std::int64_t>(positives[i].size()));
  }
  const auto window = detail::mining_window(config, max_positives);
  detail::check_mining_config(config, window);

  MinedNegatives out;
  out.per_query.resize(static_cast<std::size_t>(nq));
  out.stats.queries = nq;
  out.stats.range_max = window;
  if (nq == 0) return out;
  const auto top = exact_search(queries, corpus, {.k = std::min(window + max_positives, n), .chunk_size = config.chunk_size},
                                progress);
  const auto scores = top.scores.to(torch::kCPU, torch::kDouble).contiguous();  // (Q, k)
  const auto rows = top.indices.to(torch::kCPU).contiguous();                   // (Q, k)
  const auto s = scores.accessor<double, 2>();
  const auto r = rows.accessor<std::int64_t, 2>();
  // s+ per query: its lowest positive score, in the dtype the search scored in
  std::vector<std::int64_t> flat_query, flat_row;
  for (std::int64_t qi = 0; qi < nq; ++qi)
    for (auto row : positives[static_cast<std::size_t>(qi)]) {
      flat_query.push_back(qi);
      flat_row.push_back(row);
    }
  const auto pair_scores =
      (queries.index_select(0, torch::tensor(flat_query, torch::kLong).to(queries.device())) *
       corpus.index_select(0, torch::tensor(flat_row, torch::kLong).to(corpus.device())).to(queries.device()))
          .sum(1)
          .to(torch::kCPU, torch::kDouble)
          .contiguous();  // (sum of positives)
  const auto ps = pair_scores.accessor<double, 1>();
  std::size_t next_pair = 0;

  for (std::int64_t qi = 0; qi < nq; ++qi) {
    const auto& pos = positives[static_cast<std::size_t>(qi)];
    const std::unordered_set<std::int64_t> is_positive(pos.begin(), pos.end());
    double s_pos = ps[static_cast<std::int64_t>(next_pair)];
    for (std::size_t k = 1; k < pos.size(); ++k) s_pos = std::min(s_pos, ps[static_cast<std::int64_t>(next_pair + k)]);
    next_pair += pos.size();
    std::vector<MinedNegative> window_rows;
    for (std::int64_t j = 0; j < scores.size(1) && static_cast<std::int64_t>(window_rows.size()) < window; ++j) {
      const double v = s[qi][j];
      ++out.stats.candidates;
      if (is_positive.contains(r[qi][j])) ++out.stats.dropped_positives;
      else if (config.absolute_margin && v + *config.absolute_margin > s_pos) ++out.stats.dropped_absolute_margin;
      else if (config.relative_margin && v > s_pos - std::abs(s_pos) * *config.relative_margin)
        ++out.stats.dropped_relative_margin;
      else if (config.max_score && v > *config.max_score) ++out.stats.dropped_max_score;
      else if (config.min_score && v < *config.min_score) ++out.stats.dropped_min_score;
      else window_rows.push_back({.row = r[qi][j], .score = v});
    }
    auto& mined = out.per_query[static_cast<std::size_t>(qi)];
    const auto first = std::min<std::size_t>(window_rows.size(), static_cast<std::size_t>(config.range_min));
    std::vector<MinedNegative> pool(window_rows.begin() + static_cast<std::ptrdiff_t>(first), window_rows.end());
    const auto want = static_cast<std::size_t>(config.num_negatives);
    if (config.sampling == NegativeSampling::random && pool.size() > want) {
      std::vector<std::size_t> pick(pool.size());
      for (std::size_t i = 0; i < pick.size(); ++i) pick[i] = i;
      std::mt19937_64 rng(derive_seed(config.seed, static_cast<std::uint64_t>(qi)));
      for (std::size_t i = 0; i < want; ++i) std::swap(pick[i], pick[i + uniform_index(rng, pick.size() - i)]);
      pick.resize(want);
      std::sort(pick.begin(), pick.end());  // best first, as `top` gives them
      for (auto i : pick) mined.push_back(pool[i]);
    } else {
      mined.assign(pool.begin(), pool.begin() + static_cast<std::ptrdiff_t>(std::min(want, pool.size())));
    }
    out.stats.negatives += static_cast<std::int64_t>(mined.size());
    if (mined.size() < want) ++out.stats.short_queries;
  }
  return out;
}

}  // namespace contaccum
