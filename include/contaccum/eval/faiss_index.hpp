#pragma once
/// \file
/// \brief Approximate top-k search by dot product with FAISS, for corpora where exact_search
///        is too slow: an inner-product index built from an (N, H) embedding tensor whose
///        search returns the same SearchResult as exact_search.
///
/// Optional: only with FAISS (Debian's libfaiss-dev). CMake finds it and then defines
/// CONTACCUM_WITH_FAISS=1 on contaccum::contaccum (option CONTACCUM_WITH_FAISS: AUTO, ON,
/// OFF); the umbrella header includes this one only then. Measurements and guidance:
/// docs/search.md.
///
/// FAISS runs its loops on the process's OpenMP runtime, which is LibTorch's (one libgomp),
/// so torch::set_num_threads also sets FAISS's thread count.

#ifndef CONTACCUM_WITH_FAISS
#error "====> contaccum: eval/faiss_index.hpp needs FAISS. Install libfaiss-dev (scripts/setup.sh) and re-run CMake: it defines CONTACCUM_WITH_FAISS=1 on contaccum::contaccum when it finds FAISS (option CONTACCUM_WITH_FAISS=AUTO|ON|OFF)."
#endif

#include <contaccum/data/shuffle.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/detail/input_file.hpp>
#include <contaccum/eval/exact_search.hpp>

#include <torch/torch.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

namespace contaccum {

/// \brief The FAISS index types FaissIndex builds, all by inner product.
///
/// - `flat`: exact; every query scores every row (FAISS's IndexFlatIP). A check, or the
///   base of the other two; no faster than exact_search.
/// - `ivf`: IVF-Flat. k-means splits the corpus into `nlist` cells; a query scores the rows
///   of its `nprobe` nearest cells. Quick to build; recall set at search time by nprobe.
/// - `hnsw`: a navigable small-world graph (HNSW-Flat) walked greedily per query. The
///   fastest queries at high recall; slower to build and more memory (M links per row).
enum class FaissKind { flat, ivf, hnsw };

[[nodiscard]] inline std::string_view to_string(FaissKind kind) {
  switch (kind) {
    case FaissKind::flat: return "flat";
    case FaissKind::ivf: return "ivf";
    case FaissKind::hnsw: return "hnsw";
  }
  return "?";
}

inline std::ostream& operator<<(std::ostream& os, FaissKind kind) { return os << to_string(kind); }

/// \brief "flat", "ivf" or "hnsw" (e.g. from a command line) as a FaissKind.
[[nodiscard]] inline FaissKind parse_faiss_kind(std::string_view name) {
  for (const auto kind : {FaissKind::flat, FaissKind::ivf, FaissKind::hnsw})
    if (name == to_string(kind)) return kind;
  throw invalid_input(detail::cat("contaccum: FAISS index kind must be flat, ivf or hnsw, got '", name, "'"));
}

/// \brief How to build a FaissIndex. A plain aggregate: `describe(cfg)` prints it. Fields of
///        the other kinds are ignored.
struct FaissIndexConfig {
  FaissKind kind = FaissKind::flat;
  std::int64_t nlist = 0;             ///< ivf: k-means cells; 0 = 4 sqrt(N) (FAISS's rule of thumb), at most N
  std::int64_t nprobe = 16;           ///< ivf: cells scored per query; nlist or more scores them all (exact)
  std::int64_t train_size = 0;        ///< ivf: rows sampled for k-means; 0 = all (FAISS keeps <= 256 per cell)
  std::uint64_t seed = 0;             ///< ivf: seed of that sample and of k-means
  std::int64_t hnsw_m = 32;           ///< hnsw: links per row (M)
  std::int64_t ef_construction = 40;  ///< hnsw: candidate list while linking a row
  std::int64_t ef_search = 64;        ///< hnsw: candidate list per query (FAISS uses at least k)
};

namespace detail {

/// \brief An (n, H) tensor as FAISS reads it: float32, CPU, contiguous (copied only where
///        needed). `field` names it in errors; `dim` is the required H, or -1 for any.
[[nodiscard]] inline torch::Tensor faiss_rows(const torch::Tensor& t, std::string_view field, std::int64_t dim) {
  require(t.defined(), "FaissIndex: ", field, " is an undefined tensor");
  require(t.dim() == 2, "FaissIndex: ", field, " must be (n, H), got shape ", t.sizes());
  require(t.is_floating_point(), "FaissIndex: ", field, " must be floating point, got ", t.scalar_type());
  require(dim < 0 || t.size(1) == dim, "FaissIndex: ", field, " must be (n, ", dim, ") to match the index, got ",
          t.sizes());
  require(t.size(1) > 0, "FaissIndex: ", field, " must have H > 0 columns");
  auto x = t.detach().to(torch::kCPU, torch::kFloat).contiguous();  // (n, H) float32
  require(x.numel() == 0 || torch::isfinite(x).all().item<bool>(), "FaissIndex: ", field,
          " has a NaN or infinite entry (in float32)");
  return x;
}

/// \brief Runs a FAISS call; its FaissException becomes a contaccum::error naming `what`.
template <class Fn>
decltype(auto) faiss_call(std::string_view what, Fn&& fn) {
  try {
    return std::forward<Fn>(fn)();
  } catch (const std::exception& e) {
    throw error(cat("contaccum: FAISS failed to ", what, ": ", e.what()));
  }
}

/// \brief `m` distinct rows of [0, n), ascending, drawn with `seed` (Floyd's algorithm on
///        uniform_index: the same rows on every platform).
[[nodiscard]] inline std::vector<std::int64_t> sample_rows(std::int64_t n, std::int64_t m, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::unordered_set<std::int64_t> picked;
  std::vector<std::int64_t> rows;
  rows.reserve(static_cast<std::size_t>(m));
  for (std::int64_t j = n - m; j < n; ++j) {
    const auto t = static_cast<std::int64_t>(uniform_index(rng, static_cast<std::uint64_t>(j + 1)));
    const auto row = picked.insert(t).second ? t : j;
    if (row == j) picked.insert(j);
    rows.push_back(row);
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

}  // namespace detail

/// \brief A FAISS inner-product index over corpus rows 0..size()-1, searched like
///        exact_search.
///
/// \code
/// // corpus_emb (N, H), query_emb (Q, H): L2-normalised for cosine similarity
/// contaccum::FaissIndex index(corpus_emb, {.kind = contaccum::FaissKind::hnsw, .ef_search = 128});
/// auto top = index.search(query_emb, 100);   // top.scores (Q, 100), top.indices (Q, 100)
/// index.save("corpus.faiss");                 // later: auto again = contaccum::FaissIndex::load("corpus.faiss");
/// \endcode
///
/// Results are best first. Unlike exact_search, equal scores come in FAISS's order, not by
/// ascending row, and an approximate kind may miss true neighbours (see docs/search.md for
/// the measured recall). If an ivf search finds fewer than k rows in its nprobe cells, the
/// missing places have index -1 and score -inf.
class FaissIndex {
public:
  /// \brief Builds an index of `corpus` (N, H), any floating dtype and device (FAISS keeps a
  ///        float32 copy). ivf trains k-means on the corpus or a seeded sample of it first.
  explicit FaissIndex(const torch::Tensor& corpus, const FaissIndexConfig& config = {}) : kind_(config.kind) {
    auto x = detail::faiss_rows(corpus, "corpus", -1);  // (N, H) float32
    const auto n = x.size(0), h = x.size(1);
    detail::require(n > 0, "FaissIndex: corpus must have at least one row");
    switch (kind_) {
      case FaissKind::flat:
        index_ = std::make_unique<faiss::IndexFlatIP>(h);
        break;
      case FaissKind::ivf:
        index_ = make_ivf(x, config);
        break;
      case FaissKind::hnsw: {
        detail::require(config.hnsw_m >= 2 && config.hnsw_m <= 1024,
                        "FaissIndexConfig.hnsw_m must be in [2, 1024], got ", config.hnsw_m);
        detail::require(config.ef_construction > 0, "FaissIndexConfig.ef_construction must be positive, got ",
                        config.ef_construction);
        auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(static_cast<int>(h), static_cast<int>(config.hnsw_m),
                                                           faiss::METRIC_INNER_PRODUCT);
        hnsw->hnsw.efConstruction = static_cast<int>(config.ef_construction);
        index_ = std::move(hnsw);
        set_ef_search(config.ef_search);
        break;
      }
    }
    add(x);
  }

  /// \brief Appends `rows` (n, H) as corpus rows size() .. size() + n - 1, e.g. a corpus
  ///        encoded batch by batch. An ivf index files them under its trained cells.
  void add(const torch::Tensor& rows) {
    auto x = detail::faiss_rows(rows, "rows", dim());  // (n, H) float32
    if (x.size(0) == 0) return;
    detail::faiss_call("add rows", [&] { index_->add(x.size(0), x.data_ptr<float>()); });
  }

  /// \brief The top min(k, size()) rows of each query, best first: a drop-in for
  ///        exact_search(queries, corpus, {.k = k}).
  ///
  /// queries: (Q, H), any floating dtype and device. Returns scores (Q, k') in the queries'
  /// dtype and indices (Q, k') int64, both on the queries' device, k' = min(k, size()).
  [[nodiscard]] SearchResult search(const torch::Tensor& queries, std::int64_t k) const {
    detail::require(k > 0, "FaissIndex::search: k must be positive, got ", k);
    auto q = detail::faiss_rows(queries, "queries", dim());  // (Q, H) float32
    const auto nq = q.size(0), kk = std::min(k, size());
    auto scores = torch::empty({nq, kk}, torch::kFloat);  // (Q, k')
    auto rows = torch::empty({nq, kk}, torch::kLong);     // (Q, k')
    if (nq > 0 && kk > 0)
      detail::faiss_call("search", [&] {
        index_->search(nq, q.data_ptr<float>(), kk, scores.data_ptr<float>(), rows.data_ptr<std::int64_t>());
      });
    // FAISS marks places it could not fill with row -1 (and score -FLT_MAX)
    scores.masked_fill_(rows < 0, -std::numeric_limits<float>::infinity());
    return {scores.to(queries.device(), queries.scalar_type()), rows.to(queries.device())};
  }

  /// \brief Writes the index (vectors, cells or graph, and nprobe / ef_search) to `file`
  ///        with FAISS's write_index; a partly written file never replaces an old one.
  void save(const std::filesystem::path& file) const {
    const auto parent = file.parent_path();
    detail::require(parent.empty() || std::filesystem::is_directory(parent), "FAISS index file ", file.string(),
                    " cannot be written: folder ", parent.string(), " does not exist");
    auto tmp = file;
    tmp += ".tmp";
    try {
      faiss::write_index(index_.get(), tmp.c_str());
    } catch (const std::exception& e) {
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw error(detail::cat("contaccum: FAISS index file ", file.string(), " cannot be written: ", e.what()));
    }
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec);
    detail::require(!ec, "FAISS index file ", file.string(), " cannot be written: ", ec.message());
  }

  /// \brief Reads an index written by save() (or any FAISS IndexFlatIP, IndexIVFFlat or
  ///        IndexHNSWFlat with the inner-product metric).
  [[nodiscard]] static FaissIndex load(const std::filesystem::path& file) {
    const auto why = detail::unreadable_file_reason(file);
    detail::require(why.empty(), "FAISS index file ", file.string(), " cannot be opened: ", why);
    std::unique_ptr<faiss::Index> index;
    try {
      index.reset(faiss::read_index(file.c_str()));
    } catch (const std::exception& e) {
      throw invalid_input(detail::cat("contaccum: FAISS index file ", file.string(),
                                      " is not a readable FAISS index: ", e.what()));
    }
    detail::require(index->metric_type == faiss::METRIC_INNER_PRODUCT, "FAISS index file ", file.string(),
                    " uses FAISS metric ", static_cast<int>(index->metric_type),
                    ", not the inner product (", static_cast<int>(faiss::METRIC_INNER_PRODUCT), ")");
    FaissKind kind{};
    if (dynamic_cast<faiss::IndexFlat*>(index.get()) != nullptr) {
      kind = FaissKind::flat;
    } else if (dynamic_cast<faiss::IndexIVFFlat*>(index.get()) != nullptr) {
      kind = FaissKind::ivf;
    } else if (dynamic_cast<faiss::IndexHNSWFlat*>(index.get()) != nullptr) {
      kind = FaissKind::hnsw;
    } else {
      throw invalid_input(detail::cat("contaccum: FAISS index file ", file.string(),
                                      " holds an index FaissIndex does not wrap (flat, IVF-Flat and HNSW-Flat only)"));
    }
    return FaissIndex(kind, std::move(index));
  }

  /// \brief Cells an ivf search scores per query; at least 1, capped at nlist().
  void set_nprobe(std::int64_t nprobe) {
    detail::require(kind_ == FaissKind::ivf, "FaissIndex::set_nprobe: only an ivf index has nprobe, this is ",
                    to_string(kind_));
    detail::require(nprobe > 0, "FaissIndexConfig.nprobe must be positive, got ", nprobe);
    auto& ivf = dynamic_cast<faiss::IndexIVF&>(*index_);
    ivf.nprobe = static_cast<std::size_t>(std::min<std::int64_t>(nprobe, nlist()));
  }

  /// \brief Candidate list of an hnsw search (FAISS uses at least k).
  void set_ef_search(std::int64_t ef_search) {
    detail::require(kind_ == FaissKind::hnsw, "FaissIndex::set_ef_search: only an hnsw index has ef_search, this is ",
                    to_string(kind_));
    detail::require(ef_search > 0, "FaissIndexConfig.ef_search must be positive, got ", ef_search);
    dynamic_cast<faiss::IndexHNSW&>(*index_).hnsw.efSearch = static_cast<int>(ef_search);
  }

  [[nodiscard]] FaissKind kind() const noexcept { return kind_; }
  [[nodiscard]] std::int64_t size() const noexcept { return index_->ntotal; }  ///< corpus rows
  [[nodiscard]] std::int64_t dim() const noexcept { return index_->d; }        ///< H
  /// \brief k-means cells of an ivf index; 0 for the other kinds.
  [[nodiscard]] std::int64_t nlist() const {
    const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(index_.get());
    return ivf != nullptr ? static_cast<std::int64_t>(ivf->nlist) : 0;
  }
  [[nodiscard]] std::int64_t nprobe() const {
    const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(index_.get());
    return ivf != nullptr ? static_cast<std::int64_t>(ivf->nprobe) : 0;
  }
  [[nodiscard]] std::int64_t ef_search() const {
    const auto* hnsw = dynamic_cast<const faiss::IndexHNSW*>(index_.get());
    return hnsw != nullptr ? hnsw->hnsw.efSearch : 0;
  }
  /// \brief The FAISS index itself, for settings this class does not wrap.
  [[nodiscard]] const faiss::Index& faiss_index() const noexcept { return *index_; }

private:
  FaissIndex(FaissKind kind, std::unique_ptr<faiss::Index> index) : kind_(kind), index_(std::move(index)) {}

  /// \brief An IVF-Flat index of x (N, H) float32 with trained cells and no rows yet.
  [[nodiscard]] static std::unique_ptr<faiss::Index> make_ivf(const torch::Tensor& x, const FaissIndexConfig& config) {
    const auto n = x.size(0), h = x.size(1);
    detail::require(config.nlist >= 0, "FaissIndexConfig.nlist must be positive (or 0: 4 sqrt(N)), got ",
                    config.nlist);
    const auto nlist =
        config.nlist > 0 ? config.nlist
                         : std::clamp<std::int64_t>(std::llround(4.0 * std::sqrt(static_cast<double>(n))), 1, n);
    detail::require(nlist <= n, "FaissIndexConfig.nlist (", nlist, ") must not exceed the corpus rows (", n, ")");
    detail::require(config.nprobe > 0, "FaissIndexConfig.nprobe must be positive, got ", config.nprobe);
    detail::require(config.train_size == 0 || (config.train_size >= nlist && config.train_size <= n),
                    "FaissIndexConfig.train_size must be 0 (all rows) or in [nlist, N] = [", nlist, ", ", n,
                    "], got ", config.train_size);
    // the quantizer scores cells by inner product too, so a query probes the cells whose
    // centroids have the largest dot product with it
    auto quantizer = std::make_unique<faiss::IndexFlatIP>(h);
    auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), h, static_cast<std::size_t>(nlist),
                                                     faiss::METRIC_INNER_PRODUCT);
    ivf->own_fields = true;
    quantizer.release();
    ivf->cp.seed = static_cast<int>(config.seed & 0x7fffffffu);
    auto train = x;  // (T, H)
    if (config.train_size > 0 && config.train_size < n) {
      const auto rows = detail::sample_rows(n, config.train_size, config.seed);
      train = x.index_select(0, torch::tensor(rows, torch::kLong)).contiguous();
    }
    detail::faiss_call("train the IVF cells (k-means)", [&] { ivf->train(train.size(0), train.data_ptr<float>()); });
    ivf->nprobe = static_cast<std::size_t>(std::min(config.nprobe, nlist));
    return ivf;
  }

  FaissKind kind_;
  std::unique_ptr<faiss::Index> index_;
};

}  // namespace contaccum
