// FaissIndex against exact_search on clustered random unit vectors (docs/search.md): build
// time, search time and recall@k of the approximate kinds, measured against exact_search's
// top-k. Prints a Markdown table.
//   bench_faiss [--n 59000] [--dim 384] [--queries 500] [--clusters 1000] [--noise 1.5] [--k 10]
//               [--nlist 256] [--m 16] [--threads 2] [--seed 0] [--kinds flat,ivf,hnsw]
// (--nlist 0: FaissIndexConfig's default, 4 sqrt(N).) exact_search always runs: it is the
// reference for recall.
// The data: `clusters` centres drawn from N(0, I); each row is a centre plus N(0, noise^2 I),
// L2-normalised. A row's cosine to its centre is then about 1/sqrt(1 + noise^2) (0.55 at
// 1.5), to another row of its cluster about 1/(1 + noise^2) (0.31), to any other row about
// 0 +- 1/sqrt(H). Queries are drawn the same way and are not corpus rows.
#include <contaccum/eval/exact_search.hpp>
#include <contaccum/eval/faiss_index.hpp>

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <iostream>
#include <map>
#include <string>

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// n unit rows around centres (C, H); returns (n, H)
torch::Tensor clustered(const torch::Tensor& centers, std::int64_t n, double noise) {
  auto pick = torch::randint(0, centers.size(0), {n}, torch::kLong);                    // (n,)
  auto x = centers.index_select(0, pick) + noise * torch::randn({n, centers.size(1)});  // (n, H)
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

// mean over queries of |got row ∩ want row| / k; both (Q, k)
double recall(const torch::Tensor& got, const torch::Tensor& want) {
  std::int64_t hits = 0;
  for (std::int64_t q = 0; q < got.size(0); ++q) hits += torch::isin(got[q], want[q]).sum().item<std::int64_t>();
  return static_cast<double>(hits) / static_cast<double>(want.numel());
}

void row(const std::string& method, const std::string& settings, double build_s, double search_s,
         std::int64_t queries, double rec) {
  char build[32] = "-";  // build time only on an index's first row
  if (build_s >= 0) std::snprintf(build, sizeof build, "%.2f", build_s);
  std::printf("| %s | %s | %s | %.3f | %.3f | %.3f |\n", method.c_str(), settings.c_str(), build, search_s,
              1e3 * search_s / static_cast<double>(queries), rec);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, double> a{{"n", 59000},   {"dim", 384}, {"queries", 500}, {"clusters", 1000},
                                  {"noise", 1.5},  {"k", 10},    {"nlist", 256},    {"m", 16},
                                  {"threads", 2},  {"seed", 0}};
  std::string kinds = "flat,ivf,hnsw";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = std::string(argv[i]).substr(2);
    if (key == "kinds") {
      kinds = argv[i + 1];
      continue;
    }
    if (!a.contains(key)) {
      std::cerr << "unknown option " << argv[i] << "\n";
      return 2;
    }
    a[key] = std::stod(argv[i + 1]);
  }
  const auto n = static_cast<std::int64_t>(a["n"]), h = static_cast<std::int64_t>(a["dim"]),
             nq = static_cast<std::int64_t>(a["queries"]), k = static_cast<std::int64_t>(a["k"]);
  torch::set_num_threads(static_cast<int>(a["threads"]));  // also FAISS's: one OpenMP runtime
  torch::manual_seed(static_cast<std::uint64_t>(a["seed"]));
  const auto centers = torch::randn({static_cast<std::int64_t>(a["clusters"]), h});  // (C, H)
  const auto corpus = clustered(centers, n, a["noise"]);                              // (N, H)
  const auto queries = clustered(centers, nq, a["noise"]);                            // (Q, H)
  std::printf("corpus %lld x %lld, %lld queries, %lld clusters, noise %.2f, k %lld, %d threads\n\n",
              static_cast<long long>(n), static_cast<long long>(h), static_cast<long long>(nq),
              static_cast<long long>(a["clusters"]), a["noise"], static_cast<long long>(k),
              torch::get_num_threads());
  std::printf("| method | settings | build s | search s | ms/query | recall@%lld |\n|---|---|---|---|---|---|\n",
              static_cast<long long>(k));

  auto t0 = clock_type::now();
  const auto exact = contaccum::exact_search(queries, corpus, {.k = k}).indices;  // (Q, k)
  row("exact_search", "chunk 8192", -1, seconds_since(t0), nq, 1.0);

  // one index: built once, then searched at each value of its search-time setting (ivf:
  // nprobe, hnsw: efSearch); the build time goes on its first row
  auto measure = [&](const contaccum::FaissIndexConfig& cfg, std::initializer_list<std::int64_t> settings) {
    if (("," + kinds + ",").find("," + std::string(contaccum::to_string(cfg.kind)) + ",") == std::string::npos) return;
    auto start = clock_type::now();
    contaccum::FaissIndex index(corpus, cfg);
    double build = seconds_since(start);
    for (const auto setting : settings) {
      std::string label = "-";
      if (cfg.kind == contaccum::FaissKind::ivf) {
        index.set_nprobe(setting);
        label = "nlist " + std::to_string(index.nlist()) + ", nprobe " + std::to_string(setting);
      } else if (cfg.kind == contaccum::FaissKind::hnsw) {
        index.set_ef_search(setting);
        label = "M " + std::to_string(cfg.hnsw_m) + ", efSearch " + std::to_string(setting);
      }
      start = clock_type::now();
      const auto rows = index.search(queries, k).indices;  // (Q, k)
      row("FaissIndex " + std::string(contaccum::to_string(cfg.kind)), label, build, seconds_since(start), nq,
          recall(rows, exact));
      build = -1;
    }
  };
  measure({.kind = contaccum::FaissKind::flat}, {0});
  measure({.kind = contaccum::FaissKind::ivf, .nlist = static_cast<std::int64_t>(a["nlist"])}, {1, 4, 16, 64});
  measure({.kind = contaccum::FaissKind::hnsw, .hnsw_m = static_cast<std::int64_t>(a["m"]), .ef_construction = 40},
          {16, 64, 128});
  return 0;
}
