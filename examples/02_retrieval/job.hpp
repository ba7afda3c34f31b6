#pragma once
// What the three modes of the retrieval example share: the command line, the progress
// bar, the evaluation set and the evaluation itself.

#include <contaccum/contaccum.hpp>

#include "../common/args.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <unordered_set>
#include <vector>

namespace retrieval {

namespace ca = contaccum;
namespace fs = std::filesystem;
using json = nlohmann::json;

using Reader = ca::Normalized<ca::MeanPooling>;  // all-MiniLM-L6-v2's pooling
using Loss = ca::InfoNCE<ca::Cosine>;

using example::Args;  // the command line (examples/common/args.hpp)

/// A one-line progress bar on stderr: done/total, elapsed, ETA and a caller's note.
class Progress {
public:
  Progress(std::string what, int64_t total) : what_(std::move(what)), total_(total) {}
  void update(int64_t done, const std::string& extra = "") {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total_ - done) : 0;
    const int width = 24;
    const int filled = static_cast<int>(width * done / std::max<int64_t>(total_, 1));
    std::fprintf(stderr, "\r%-12s [%s%s] %lld/%lld %s elapsed %4.0fs eta %4.0fs ", what_.c_str(),
                 std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(width - filled), '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), extra.c_str(), elapsed, eta);
    if (done >= total_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }
  /// A callback for embed_texts / exact_search.
  std::function<void(std::size_t, std::size_t)> callback() {
    return [this](std::size_t done, std::size_t) { update(static_cast<int64_t>(done)); };
  }

private:
  std::string what_;
  int64_t total_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

/// Evaluation: queries of a split against a corpus of their positives plus seeded
/// distractors from the whole corpus.
struct EvalSet {
  std::vector<std::string> query_ids, queries, doc_ids, passages;
  ca::Qrels qrels;
};

inline EvalSet make_eval_set(const ca::BeirDataset& split, int64_t n_queries, int64_t n_passages, uint64_t seed,
                             const ca::TokenizeConfig& tokenize) {
  EvalSet e;
  std::unordered_set<std::string> in_corpus;
  const auto index = split.corpus_index();
  auto add_doc = [&](const ca::Passage& p) {
    if (in_corpus.insert(p.id).second) {
      e.doc_ids.push_back(p.id);
      e.passages.push_back(ca::passage_text(p, tokenize));
    }
  };
  const auto order = ca::seeded_permutation(split.queries.size(), seed);
  for (std::size_t k = 0; k < order.size() && static_cast<int64_t>(e.queries.size()) < n_queries; ++k) {
    const auto& q = split.queries[order[k]];
    e.query_ids.push_back(q.id);
    e.queries.push_back(q.text);
    e.qrels[q.id] = split.qrels.at(q.id);
    for (const auto& [doc, score] : split.qrels.at(q.id)) add_doc(split.corpus[index.at(doc)]);
  }
  const auto shuffled = ca::seeded_permutation(split.corpus.size(), seed + 1);
  for (std::size_t k = 0; k < shuffled.size() && static_cast<int64_t>(e.doc_ids.size()) < n_passages; ++k)
    add_doc(split.corpus[shuffled[k]]);
  return e;
}

/// Retrieval metrics of a query tower and a passage tower (the same module for a shared
/// tower) on an evaluation set, by exact search.
template <class Encoder, class Tok>
ca::Evaluation evaluate_towers(Encoder& query_encoder, Encoder& passage_encoder, const Tok& tok, const EvalSet& e,
                               const ca::TokenizeConfig& tokenize, const std::string& label) {
  Progress bar(label, static_cast<int64_t>(e.passages.size()));
  const auto docs = ca::embed_texts(passage_encoder, Reader{}, tok, e.passages,
                                    {.batch_size = 64, .max_length = tokenize.passage_max_length,
                                     .progress = bar.callback()});
  const auto queries = ca::embed_texts(query_encoder, Reader{}, tok, e.queries,
                                       {.batch_size = 64, .max_length = tokenize.query_max_length});
  const auto top = ca::exact_search(queries, docs, {.k = 100});
  return ca::evaluate(e.qrels, ca::to_run(top, e.query_ids, e.doc_ids));
}

inline json metrics_json(const ca::Evaluation& ev) {
  json j;
  for (std::size_t i = 0; i < ev.measures.size(); ++i) j[ev.measures[i]] = ev.mean[i];
  return j;
}

/// Runs gnuplot on `script` inside `dir` when gnuplot is installed; says what happened.
inline void run_gnuplot(const fs::path& dir, const std::string& script) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::printf("  gnuplot not found: plot data and %s left in %s\n", script.c_str(), dir.string().c_str());
    return;
  }
  const auto cmd = "cd '" + dir.string() + "' && gnuplot " + script;
  if (std::system(cmd.c_str()) != 0) std::printf("  gnuplot failed on %s/%s\n", dir.string().c_str(), script.c_str());
}

}  // namespace retrieval
