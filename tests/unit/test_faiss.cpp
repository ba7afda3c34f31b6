// FaissIndex (eval/faiss_index.hpp, issue 4), built only with FAISS: the flat kind against
// exact_search, IVF with every cell probed against the exact top-k, the recall of IVF and
// HNSW on clustered data, save/load, and the errors.
#ifdef CONTACCUM_WITH_FAISS

#include <contaccum/config_io.hpp>
#include <contaccum/eval/exact_search.hpp>
#include <contaccum/eval/faiss_index.hpp>

#include <faiss/IndexFlat.h>
#include <faiss/index_io.h>
#include <torch/torch.h>

// after LibTorch, whose c10 logging defines a CHECK macro of its own: Catch's must win (as
// in the test executable's precompiled header, which includes them in this order)
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <unistd.h>

using namespace contaccum;
using Catch::Matchers::Contains;

namespace {

// A folder of this process's own under the temp directory (ctest runs cases in parallel).
std::filesystem::path faiss_scratch() {
  const auto dir = std::filesystem::temp_directory_path() / ("contaccum_faiss." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

// n unit rows around `centers` (C, H): a centre plus noise, L2-normalised, as sentence
// embeddings are. Returns (n, H).
torch::Tensor clustered(const torch::Tensor& centers, std::int64_t n, double noise) {
  auto pick = torch::randint(0, centers.size(0), {n}, torch::kLong);                    // (n,)
  auto x = centers.index_select(0, pick) + noise * torch::randn({n, centers.size(1)});  // (n, H)
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

// Mean over queries of |got row ∩ want row| / k; got and want (Q, k) corpus rows.
double recall(const torch::Tensor& got, const torch::Tensor& want) {
  REQUIRE(got.sizes() == want.sizes());
  std::int64_t hits = 0;
  for (std::int64_t q = 0; q < got.size(0); ++q) hits += torch::isin(got[q], want[q]).sum().item<std::int64_t>();
  return static_cast<double>(hits) / static_cast<double>(got.numel());
}

}  // namespace

TEST_CASE("FaissIndex flat equals exact_search: rows and scores, any query count, k beyond the corpus, chunks added",
          "[faiss]") {
  torch::manual_seed(21);
  const auto corpus = torch::randn({700, 24});  // (N, H)
  const FaissIndex index(corpus);
  CHECK(index.kind() == FaissKind::flat);
  CHECK(index.size() == 700);
  CHECK(index.dim() == 24);
  // FAISS scores fewer than 20 queries one by one and more with one BLAS product: both paths
  for (const std::int64_t nq : {3, 50}) {
    INFO("queries " << nq);
    const auto queries = torch::randn({nq, 24});  // (Q, H)
    const auto want = exact_search(queries, corpus, {.k = 10});
    const auto got = index.search(queries, 10);
    REQUIRE(got.indices.sizes() == torch::IntArrayRef({nq, 10}));
    CHECK(got.indices.scalar_type() == torch::kLong);
    CHECK(torch::equal(got.indices, want.indices));
    CHECK(torch::allclose(got.scores, want.scores, 1e-5, 1e-5));
  }
  // double queries: double scores, like exact_search; k > N gives N columns
  const auto small = torch::randn({30, 24});
  const FaissIndex small_index(small);
  const auto qd = torch::randn({6, 24}, torch::kDouble);
  const auto got = small_index.search(qd, 50);
  const auto want = exact_search(qd, small, {.k = 50});
  CHECK(got.scores.scalar_type() == torch::kDouble);
  REQUIRE(got.indices.sizes() == torch::IntArrayRef({6, 30}));
  CHECK(torch::equal(got.indices, want.indices));
  CHECK(torch::allclose(got.scores, want.scores, 1e-5, 1e-5));

  // rows added in chunks are numbered on from the first
  FaissIndex grown(corpus.slice(0, 0, 250));
  grown.add(corpus.slice(0, 250, 250));  // an empty chunk adds nothing
  grown.add(corpus.slice(0, 250, 700));
  CHECK(grown.size() == 700);
  const auto queries = torch::randn({25, 24});
  CHECK(torch::equal(grown.search(queries, 7).indices, index.search(queries, 7).indices));
}

TEST_CASE("FaissIndex ivf probing every cell finds the exact top-k of each query", "[faiss]") {
  torch::manual_seed(22);
  const auto centers = torch::randn({20, 16});
  const auto corpus = clustered(centers, 2000, 0.5);  // (N, H)
  const auto queries = clustered(centers, 40, 0.5);   // (Q, H)
  const FaissIndex index(corpus, {.kind = FaissKind::ivf, .nlist = 32, .nprobe = 32});
  CHECK(index.kind() == FaissKind::ivf);
  CHECK(index.nlist() == 32);
  CHECK(index.nprobe() == 32);
  const auto got = index.search(queries, 10);
  const auto want = exact_search(queries, corpus, {.k = 10});
  // the same rows per query (the order of near-equal scores may differ)
  CHECK(torch::equal(std::get<0>(got.indices.sort(1)), std::get<0>(want.indices.sort(1))));
  CHECK(torch::allclose(got.scores, want.scores, 1e-5, 1e-5));

  // nprobe above nlist is capped: still every cell
  FaissIndex capped(corpus, {.kind = FaissKind::ivf, .nlist = 32, .nprobe = 1000, .train_size = 1300, .seed = 3});
  CHECK(capped.nprobe() == 32);
  CHECK(recall(capped.search(queries, 10).indices, want.indices) == 1.0);
  capped.set_nprobe(1);
  CHECK(capped.nprobe() == 1);

  // one probe of 8 cells of 40 rows cannot fill k = 20: the rest is row -1, score -inf
  const auto few = corpus.slice(0, 0, 40);
  const FaissIndex sparse(few, {.kind = FaissKind::ivf, .nlist = 8, .nprobe = 1});
  const auto part = sparse.search(queries, 20);
  const auto missing = part.indices < 0;  // (Q, 20)
  REQUIRE(part.indices.sizes() == torch::IntArrayRef({40, 20}));
  CHECK(missing.any().item<bool>());
  CHECK(torch::equal(missing, part.scores.isneginf()));
  CHECK((part.indices.masked_select(missing.logical_not()) < 40).all().item<bool>());

  // the k-means sample is seeded: the same config gives the same cells, so the same
  // one-probe results; the sample is distinct rows, ascending
  FaissIndex again(corpus, {.kind = FaissKind::ivf, .nlist = 32, .nprobe = 1, .train_size = 1300, .seed = 3});
  CHECK(torch::equal(again.search(queries, 10).indices, capped.search(queries, 10).indices));
  const auto sample = contaccum::detail::sample_rows(2000, 1300, 3);
  REQUIRE(sample.size() == 1300);
  CHECK(std::adjacent_find(sample.begin(), sample.end(), std::greater_equal<>()) == sample.end());
  CHECK((sample.front() >= 0 && sample.back() < 2000));
  CHECK(sample == contaccum::detail::sample_rows(2000, 1300, 3));
  CHECK(sample != contaccum::detail::sample_rows(2000, 1300, 4));
}

TEST_CASE("FaissIndex ivf with few probes and hnsw reach recall@10 >= 0.9 on clustered data", "[faiss]") {
  torch::manual_seed(23);
  const auto centers = torch::randn({64, 32});
  const auto corpus = clustered(centers, 6000, 1.0);  // (N, H)
  const auto queries = clustered(centers, 200, 1.0);  // (Q, H)
  const auto exact = exact_search(queries, corpus, {.k = 10}).indices;

  FaissIndex ivf(corpus, {.kind = FaissKind::ivf, .nlist = 64, .nprobe = 8, .train_size = 3000, .seed = 5});
  const double ivf_recall = recall(ivf.search(queries, 10).indices, exact);
  ivf.set_nprobe(1);
  const double one_probe_recall = recall(ivf.search(queries, 10).indices, exact);
  const FaissIndex hnsw(corpus, {.kind = FaissKind::hnsw, .hnsw_m = 16, .ef_search = 64});
  const double hnsw_recall = recall(hnsw.search(queries, 10).indices, exact);
  INFO("recall@10: ivf nprobe 8 " << ivf_recall << ", nprobe 1 " << one_probe_recall << ", hnsw " << hnsw_recall);
  CHECK(ivf_recall >= 0.9);
  CHECK(hnsw_recall >= 0.9);
  // approximate after all (and the data not so easy that any setting passes): one probe
  // of 64 cells misses neighbours that sit in other cells
  CHECK(one_probe_recall < 0.95);
  CHECK(one_probe_recall < ivf_recall);
}

TEST_CASE("FaissIndex save/load round trip: same kind, settings and results", "[faiss]") {
  torch::manual_seed(24);
  const auto centers = torch::randn({10, 16});
  const auto corpus = clustered(centers, 800, 0.5);   // (N, H)
  const auto queries = clustered(centers, 30, 0.5);   // (Q, H)
  const auto dir = faiss_scratch();
  for (const FaissIndexConfig& cfg : {FaissIndexConfig{.kind = FaissKind::flat},
                                      FaissIndexConfig{.kind = FaissKind::ivf, .nlist = 16, .nprobe = 3},
                                      FaissIndexConfig{.kind = FaissKind::hnsw, .hnsw_m = 8, .ef_search = 20}}) {
    INFO("kind " << to_string(cfg.kind));
    const FaissIndex index(corpus, cfg);
    const auto file = dir / (std::string(to_string(cfg.kind)) + ".faiss");
    index.save(file);
    CHECK_FALSE(std::filesystem::exists(file.string() + ".tmp"));
    const auto back = FaissIndex::load(file);
    CHECK(back.kind() == cfg.kind);
    CHECK(back.size() == 800);
    CHECK(back.dim() == 16);
    CHECK(back.nprobe() == index.nprobe());
    CHECK(back.ef_search() == index.ef_search());
    const auto a = index.search(queries, 10), b = back.search(queries, 10);
    CHECK(torch::equal(a.indices, b.indices));
    CHECK(torch::equal(a.scores, b.scores));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("FaissIndex: bad shapes, dtypes, settings and files name the field or the file", "[faiss]") {
  torch::manual_seed(25);
  const auto corpus = torch::randn({50, 8});
  const FaissIndex index(corpus);
  CHECK_THROWS_WITH(FaissIndex(torch::randn({50})), Contains("corpus must be (n, H)"));
  CHECK_THROWS_WITH(FaissIndex(torch::randint(0, 5, {50, 8})), Contains("corpus must be floating point"));
  CHECK_THROWS_WITH(FaissIndex(torch::randn({0, 8})), Contains("corpus must have at least one row"));
  CHECK_THROWS_WITH(FaissIndex(torch::Tensor()), Contains("corpus is an undefined tensor"));
  auto with_nan = corpus.clone();
  with_nan[7][2] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(FaissIndex(with_nan), Contains("corpus has a NaN or infinite entry"));

  CHECK_THROWS_WITH(index.search(torch::randn({4, 9}), 5), Contains("queries must be (n, 8)"));
  CHECK_THROWS_WITH(index.search(torch::ones({4, 8}, torch::kInt), 5), Contains("queries must be floating point"));
  CHECK_THROWS_WITH(index.search(torch::randn({4, 8}), 0), Contains("k must be positive"));
  FaissIndex growing(corpus);
  CHECK_THROWS_WITH(growing.add(torch::randn({3, 7})), Contains("rows must be (n, 8)"));

  CHECK_THROWS_WITH(FaissIndex(corpus, {.kind = FaissKind::ivf, .nlist = 51}),
                    Contains("FaissIndexConfig.nlist (51) must not exceed the corpus rows (50)"));
  CHECK_THROWS_WITH(FaissIndex(corpus, {.kind = FaissKind::ivf, .nlist = 10, .train_size = 5}),
                    Contains("FaissIndexConfig.train_size"));
  CHECK_THROWS_WITH(FaissIndex(corpus, {.kind = FaissKind::ivf, .nlist = 4, .nprobe = 0}),
                    Contains("FaissIndexConfig.nprobe must be positive"));
  CHECK_THROWS_WITH(FaissIndex(corpus, {.kind = FaissKind::hnsw, .hnsw_m = 1}), Contains("FaissIndexConfig.hnsw_m"));
  CHECK_THROWS_WITH(growing.set_nprobe(4), Contains("only an ivf index has nprobe, this is flat"));
  CHECK_THROWS_WITH(growing.set_ef_search(4), Contains("only an hnsw index has ef_search, this is flat"));
  for (const auto kind : {FaissKind::flat, FaissKind::ivf, FaissKind::hnsw})
    CHECK(parse_faiss_kind(to_string(kind)) == kind);
  CHECK(describe(FaissIndexConfig{.kind = FaissKind::hnsw, .hnsw_m = 8}) == "{hnsw, 0, 16, 0, 0, 8, 40, 64}");
  CHECK_THROWS_WITH(parse_faiss_kind("ivfpq"), Contains("must be flat, ivf or hnsw, got 'ivfpq'"));

  const auto dir = faiss_scratch();
  CHECK_THROWS_WITH(FaissIndex::load(dir / "missing.faiss"), Contains("missing.faiss cannot be opened: no such file"));
  CHECK_THROWS_WITH(FaissIndex::load(dir), Contains(dir.string() + " cannot be opened: it is a folder, not a file"));
  const auto junk = dir / "junk.faiss";
  std::ofstream(junk) << "not an index";
  CHECK_THROWS_WITH(FaissIndex::load(junk), Contains("junk.faiss is not a readable FAISS index"));
  const auto l2 = dir / "l2.faiss";  // FAISS's own file, but by L2 distance
  const faiss::IndexFlatL2 by_distance(8);
  faiss::write_index(&by_distance, l2.c_str());
  CHECK_THROWS_WITH(FaissIndex::load(l2), Contains("l2.faiss uses FAISS metric 1, not the inner product"));
  CHECK_THROWS_WITH(index.save(dir / "no_such_folder" / "x.faiss"), Contains("folder") && Contains("does not exist"));
  std::filesystem::remove_all(dir);
}

#endif  // CONTACCUM_WITH_FAISS
