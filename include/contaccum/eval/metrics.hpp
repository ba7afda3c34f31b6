#pragma once
/// \file
/// \brief Retrieval metrics with trec_eval's definitions, equal to pytrec_eval's values
///        (tests/unit/test_data_eval.cpp checks each query against pytrec_eval 0.5.11):
///
/// | name         | trec_eval measure            | per query                                   |
/// |--------------|------------------------------|---------------------------------------------|
/// | `MRR@10`     | recip_rank on the top 10     | 1 / rank of the first relevant doc, else 0  |
/// | `nDCG@10`    | ndcg_cut_10                  | DCG@10 / ideal DCG@10, gain = grade         |
/// | `Recall@100` | recall_100                   | relevant docs in the top 100 / all relevant |
/// | `Top-k`      | success_k                    | 1 if a relevant doc is in the top k (DPR's top-k accuracy) |
///
/// * Ranking: each query's documents are ordered by score, ties by document id
///   descending (trec_order), which is how trec_eval and pytrec_eval break ties.
/// * Relevant: grade >= relevance_level (1). nDCG's gain is the grade itself for
///   grades > 0, discounted by log2(rank + 1); the ideal ranking sorts all judged grades > 0.
/// * Queries: as pytrec_eval, a query is evaluated when it is in both the run and the
///   qrels; the mean is over those queries. A qrels query with no relevant document
///   scores 0. With `complete` (trec_eval -c), qrels queries missing from the run are
///   added with every measure 0.
/// * trec_eval's recip_rank has no cutoff (pytrec_eval silently ignores "recip_rank.10"):
///   MRR@10 is recip_rank of the run cut to its top 10, as ir_measures computes RR@10.

#include <contaccum/detail/error.hpp>
#include <contaccum/eval/trec.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// \brief Rank cutoffs, e.g. Top-k accuracy at {1, 5, 20, 100}; prints as "[1 5 20 100]".
struct Cutoffs : std::vector<std::int64_t> {
  using std::vector<std::int64_t>::vector;
};

inline std::ostream& operator<<(std::ostream& os, const Cutoffs& c) {
  os << '[';
  for (std::size_t i = 0; i < c.size(); ++i) os << (i ? " " : "") << c[i];
  return os << ']';
}

/// \brief Which metrics, at which cutoffs. A plain aggregate: `describe(cfg)` prints it.
struct MetricsConfig {
  std::int64_t mrr_cutoff = 10;
  std::int64_t ndcg_cutoff = 10;
  std::int64_t recall_cutoff = 100;
  Cutoffs accuracy_cutoffs{1, 5, 20, 100};  ///< DPR's Top-k accuracy
  int relevance_level = 1;                  ///< trec_eval -l: grade >= this is relevant
  bool complete = false;                    ///< trec_eval -c: qrels queries absent from the run count as 0
};

/// \brief Per-query and mean values of every measure.
struct Evaluation {
  std::vector<std::string> measures;                     ///< column names, e.g. "MRR@10", "Top-20"
  std::map<std::string, std::vector<double>> per_query;  ///< query id -> values in `measures` order
  std::vector<double> mean;                              ///< over the queries of `per_query`

  /// \brief The column of a measure; invalid_input naming the known ones if absent.
  [[nodiscard]] std::size_t column(std::string_view measure) const {
    for (std::size_t i = 0; i < measures.size(); ++i)
      if (measures[i] == measure) return i;
    std::string known;
    for (const auto& m : measures) known += (known.empty() ? "" : ", ") + m;
    detail::require(false, "no measure '", measure, "' in this evaluation (it has ", known, ")");
    return 0;
  }
  /// \brief The mean of a measure, e.g. `eval["nDCG@10"]`.
  [[nodiscard]] double operator[](std::string_view measure) const { return mean.at(column(measure)); }
  /// \brief One query's value of a measure.
  [[nodiscard]] double at(const std::string& query_id, std::string_view measure) const {
    const auto it = per_query.find(query_id);
    detail::require(it != per_query.end(), "query '", query_id, "' was not evaluated");
    return it->second.at(column(measure));
  }
  [[nodiscard]] std::size_t queries() const { return per_query.size(); }
};

namespace detail {

// One query's values, in the order of metric_names(config).
[[nodiscard]] inline std::vector<double> query_metrics(const std::map<std::string, int>& judged,
                                                       const std::map<std::string, double>& docs,
                                                       const MetricsConfig& c) {
  const auto ranked = trec_order(docs);
  std::vector<int> grade(ranked.size(), 0);  // grade of the doc at each rank (0 = unjudged)
  for (std::size_t i = 0; i < ranked.size(); ++i) {
    const auto it = judged.find(*ranked[i].first);
    if (it != judged.end()) grade[i] = it->second;
  }
  const auto relevant = [&c](int g) { return g >= c.relevance_level; };
  const auto upto = [&](std::int64_t k) { return std::min<std::size_t>(grade.size(), static_cast<std::size_t>(k)); };

  std::vector<double> out;
  // MRR@k: recip_rank on the top k
  double rr = 0;
  for (std::size_t i = 0; i < upto(c.mrr_cutoff); ++i)
    if (relevant(grade[i])) {
      rr = 1.0 / static_cast<double>(i + 1);
      break;
    }
  out.push_back(rr);
  // nDCG@k (ndcg_cut_k): gain = grade > 0, discount log2(rank + 1) with 1-based rank
  double dcg = 0;
  for (std::size_t i = 0; i < upto(c.ndcg_cutoff); ++i)
    if (grade[i] > 0) dcg += grade[i] / std::log2(static_cast<double>(i + 2));
  std::vector<int> ideal;
  for (const auto& [doc, g] : judged)
    if (g > 0) ideal.push_back(g);
  std::sort(ideal.begin(), ideal.end(), std::greater<>());
  double idcg = 0;
  for (std::size_t i = 0; i < std::min<std::size_t>(ideal.size(), static_cast<std::size_t>(c.ndcg_cutoff)); ++i)
    idcg += ideal[i] / std::log2(static_cast<double>(i + 2));
  out.push_back(idcg > 0 ? dcg / idcg : 0.0);
  // Recall@k (recall_k)
  std::size_t num_rel = 0, rel_ret = 0;
  for (const auto& [doc, g] : judged) num_rel += relevant(g);
  for (std::size_t i = 0; i < upto(c.recall_cutoff); ++i) rel_ret += relevant(grade[i]);
  out.push_back(num_rel ? static_cast<double>(rel_ret) / static_cast<double>(num_rel) : 0.0);
  // Top-k accuracy (success_k)
  for (const auto k : c.accuracy_cutoffs) {
    const auto end = grade.begin() + static_cast<std::ptrdiff_t>(upto(k));
    out.push_back(std::any_of(grade.begin(), end, relevant) ? 1.0 : 0.0);
  }
  return out;
}

}  // namespace detail

/// \brief The column names an evaluation with `config` has, in order.
[[nodiscard]] inline std::vector<std::string> metric_names(const MetricsConfig& config = {}) {
  std::vector<std::string> names{detail::cat("MRR@", config.mrr_cutoff), detail::cat("nDCG@", config.ndcg_cutoff),
                                 detail::cat("Recall@", config.recall_cutoff)};
  for (const auto k : config.accuracy_cutoffs) names.push_back(detail::cat("Top-", k));
  return names;
}

/// \brief Scores a run against qrels (see the file comment for the definitions).
///
/// \code
/// auto e = contaccum::evaluate(contaccum::read_qrels("test.qrels"), contaccum::read_run("model.run"));
/// std::cout << "nDCG@10 " << e["nDCG@10"] << " over " << e.queries() << " queries\n";
/// \endcode
[[nodiscard]] inline Evaluation evaluate(const Qrels& qrels, const Run& run, const MetricsConfig& config = {}) {
  detail::require(config.mrr_cutoff > 0 && config.ndcg_cutoff > 0 && config.recall_cutoff > 0,
                  "MetricsConfig cutoffs must be positive");
  for (const auto k : config.accuracy_cutoffs)
    detail::require(k > 0, "MetricsConfig.accuracy_cutoffs must be positive, got ", k);
  Evaluation e{metric_names(config), {}, {}};
  const std::map<std::string, double> none;
  for (const auto& [qid, docs] : run)
    if (const auto it = qrels.find(qid); it != qrels.end()) e.per_query.emplace(qid, detail::query_metrics(it->second, docs, config));
  if (config.complete)
    for (const auto& [qid, judged] : qrels)
      if (!e.per_query.contains(qid)) e.per_query.emplace(qid, detail::query_metrics(judged, none, config));
  e.mean.assign(e.measures.size(), 0.0);
  for (const auto& [qid, values] : e.per_query)
    for (std::size_t i = 0; i < values.size(); ++i) e.mean[i] += values[i];
  if (!e.per_query.empty())
    for (auto& m : e.mean) m /= static_cast<double>(e.per_query.size());
  return e;
}

}  // namespace contaccum
