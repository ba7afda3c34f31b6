#pragma once
/// \file
/// \brief Exact (brute-force) top-k search of a corpus by dot product: the corpus is
///        scored chunk by chunk with one matrix product each, and a running top-k is
///        merged after every chunk, so memory stays O(Q x (k + chunk)), never Q x N.
///
/// Ties are broken by the lower corpus row, so the result is deterministic and equal to
/// a stable descending sort of the full score matrix (tests/unit/test_data_eval.cpp checks
/// this against torch::topk/torch::sort over the full matrix, with chunk sizes that do not
/// divide the corpus). Cosine similarity: L2-normalise both sides first (Normalized<P>).

#include <contaccum/detail/error.hpp>
#include <contaccum/eval/trec.hpp>

#include <torch/torch.h>

#include <range/v3/range/concepts.hpp>
#include <range/v3/view/iota.hpp>
#include <range/v3/view/transform.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace contaccum {

/// \brief Exact search settings. A plain aggregate: `describe(cfg)` prints it.
struct ExactSearchConfig {
  std::int64_t k = 100;            ///< results per query (fewer if the corpus is smaller)
  std::int64_t chunk_size = 8192;  ///< corpus rows per matrix product; need not divide the corpus
};

/// \brief Progress of a search: corpus rows scored so far, of `total` (-1 when the chunks
///        come from a stream of unknown length).
struct SearchProgress {
  std::int64_t done = 0;
  std::int64_t total = -1;
};

using SearchProgressCallback = std::function<void(const SearchProgress&)>;

/// \brief The top k of every query, best first.
struct SearchResult {
  torch::Tensor scores;   // (Q, k) dtype of the queries, descending per row
  torch::Tensor indices;  // (Q, k) int64, corpus rows; ties in score by ascending row
};

namespace detail {

/// \brief A running top-k over score blocks that arrive in corpus order.
///
/// Invariant: each row of (scores_, indices_) is sorted by (score descending, index
/// ascending), and every kept index is lower than any index still to come.
class TopKMerger {
public:
  TopKMerger(const torch::Tensor& like, std::int64_t queries, std::int64_t k)
      : k_(k),
        scores_(torch::empty({queries, 0}, like.options())),
        indices_(torch::empty({queries, 0}, like.options().dtype(torch::kLong))) {}

  /// \brief Merges the scores of corpus rows [first, first + c).
  void add(const torch::Tensor& block, std::int64_t first) {  // block: (Q, c)
    const auto q = block.size(0), c = block.size(1);
    if (c == 0) return;
    auto rows = torch::arange(first, first + c, indices_.options()).expand({q, c});
    auto cand_s = torch::cat({scores_, block}, 1);                  // (Q, m)
    auto cand_i = torch::cat({indices_, rows}, 1);                  // (Q, m)
    const auto kk = std::min<std::int64_t>(k_, cand_s.size(1));
    // the kk-th largest value of each row, then exactly kk entries per row: all above it,
    // and of those equal to it the first ones in column order (= lowest corpus rows, by
    // the invariant: equal kept scores are in ascending index, all below the new block's)
    auto thr = std::get<0>(torch::topk(cand_s, kk, 1, true, false)).amin(1, true);  // (Q, 1)
    auto above = cand_s > thr;
    auto at = cand_s == thr;
    auto need = kk - above.sum(1, true);                                           // (Q, 1)
    auto keep = above.logical_or(at.logical_and(at.cumsum(1) <= need));            // (Q, m), kk true per row
    auto s = cand_s.masked_select(keep).view({q, kk});
    auto i = cand_i.masked_select(keep).view({q, kk});
    // stable: equal scores keep column order, i.e. ascending index
    auto order = std::get<1>(torch::sort(s, /*stable=*/true, /*dim=*/1, /*descending=*/true));
    scores_ = s.gather(1, order);
    indices_ = i.gather(1, order);
  }

  [[nodiscard]] SearchResult result() const { return {scores_, indices_}; }

private:
  std::int64_t k_;
  torch::Tensor scores_, indices_;
};

}  // namespace detail

/// \brief Exact top-k of each query over corpus chunks that arrive one at a time (an
///        input range of (n_i, H) tensors, e.g. embeddings encoded batch by batch).
///
/// Chunks are moved to the queries' device and dtype; row j of chunk i is corpus row
/// n_0 + ... + n_{i-1} + j. Scores must be finite.
/// \code
/// auto chunks = passages | ranges::views::chunk(4096) | ranges::views::transform(encode);  // (n, H) each
/// auto top = contaccum::exact_search_chunks(query_emb, chunks, 100);
/// \endcode
template <class Chunks>
  requires ranges::input_range<Chunks>
[[nodiscard]] SearchResult exact_search_chunks(const torch::Tensor& queries, Chunks&& chunks, std::int64_t k,
                                               const SearchProgressCallback& progress = {}, std::int64_t total = -1) {
  // queries: (Q, H)
  detail::require(queries.defined() && queries.dim() == 2, "exact_search: queries must be (Q, H)");
  detail::require(queries.is_floating_point(), "exact_search: queries must be floating point");
  detail::require(k > 0, "exact_search: k must be positive, got ", k);
  torch::NoGradGuard no_grad;
  detail::TopKMerger merger(queries, queries.size(0), k);
  std::int64_t done = 0;
  for (auto&& chunk : chunks) {
    const torch::Tensor& c = chunk;  // (n, H)
    detail::require(c.dim() == 2 && c.size(1) == queries.size(1), "exact_search: corpus chunk at row ", done,
                    " must be (n, ", queries.size(1), "), got ", c.sizes());
    auto block = queries.matmul(c.to(queries.device(), queries.scalar_type()).t());  // (Q, n)
    detail::require(block.numel() == 0 || torch::isfinite(block).all().item<bool>(),
                    "exact_search: non-finite score against corpus rows [", done, ", ", done + c.size(0), ")");
    merger.add(block, done);
    done += c.size(0);
    if (progress) progress({done, total});
  }
  return merger.result();
}

/// \brief Exact top-k of each query over a corpus held as one (N, H) tensor, scored
///        `chunk_size` rows at a time.
///
/// \code
/// auto top = contaccum::exact_search(query_emb, corpus_emb, {.k = 100, .chunk_size = 4096},
///                                    [](const contaccum::SearchProgress& p) { show(p.done, p.total); });
/// // top.scores (Q, 100), top.indices (Q, 100)
/// \endcode
[[nodiscard]] inline SearchResult exact_search(const torch::Tensor& queries, const torch::Tensor& corpus,
                                               const ExactSearchConfig& config = {},
                                               const SearchProgressCallback& progress = {}) {
  // queries: (Q, H), corpus: (N, H)
  detail::require(corpus.defined() && corpus.dim() == 2, "exact_search: corpus must be (N, H)");
  detail::require(config.chunk_size > 0, "ExactSearchConfig.chunk_size must be positive, got ", config.chunk_size);
  const auto n = corpus.size(0), step = config.chunk_size;
  auto chunks = ranges::views::iota(std::int64_t{0}, (n + step - 1) / step) |
                ranges::views::transform([&corpus, n, step](std::int64_t i) {
                  return corpus.slice(0, i * step, std::min(n, (i + 1) * step));
                });
  return exact_search_chunks(queries, chunks, config.k, progress, n);
}

/// \brief A search result as a Run (query id -> document id -> score) for evaluate() or
///        write_run(). `doc_ids[r]` names corpus row r.
[[nodiscard]] inline Run to_run(const SearchResult& result, const std::vector<std::string>& query_ids,
                                const std::vector<std::string>& doc_ids) {
  auto scores = result.scores.to(torch::kCPU, torch::kDouble).contiguous();
  auto rows = result.indices.to(torch::kCPU).contiguous();
  detail::require(scores.size(0) == static_cast<std::int64_t>(query_ids.size()), "to_run: ", scores.size(0),
                  " result rows but ", query_ids.size(), " query ids");
  const auto s = scores.accessor<double, 2>();
  const auto r = rows.accessor<std::int64_t, 2>();
  Run run;
  for (std::int64_t q = 0; q < scores.size(0); ++q) {
    auto& docs = run[query_ids[static_cast<std::size_t>(q)]];
    for (std::int64_t j = 0; j < scores.size(1); ++j) {
      const auto row = r[q][j];
      detail::require(row >= 0 && row < static_cast<std::int64_t>(doc_ids.size()), "to_run: corpus row ", row,
                      " has no document id (", doc_ids.size(), " given)");
      docs.emplace(doc_ids[static_cast<std::size_t>(row)], s[q][j]);
    }
  }
  return run;
}

}  // namespace contaccum
