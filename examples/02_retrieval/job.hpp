#pragma once
// What the three modes of the retrieval example share: the command line, the progress
// bar, the evaluation set and the evaluation itself.

#include <contaccum/contaccum.hpp>

#include "../common/args.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <cstdlib>
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

using Progress = ca::ProgressBar;  // a one-line progress bar on stderr

/// Evaluation: queries of a split against a corpus of their positives plus seeded
/// distractors from the whole corpus.
struct EvalSet {
  std::vector<std::string> query_ids, queries, doc_ids, passages;
  ca::Qrels qrels;
};

/// A split the job needs must hold judged queries: one without them would evaluate to
/// zeros (or train on nothing) and fail only at the end. `use` says what the job does
/// with it ("evaluates on").
inline void require_queries(const ca::BeirDataset& split, const fs::path& data, const std::string& name,
                            const char* use) {
  ca::detail::require(!split.queries.empty(), (data / "qrels" / (name + ".tsv")).string(), ": the '", name,
                      "' split has no judged queries (no qrels line names a query of ", (data / "queries.jsonl").string(),
                      "), and the job ", use, " it");
}

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
    e.queries.push_back(ca::query_text(q.text, tokenize));
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

/// True when `file` is a whole PNG: the signature first, the IEND chunk last.
inline bool png_is_whole(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::string head(8, '\0'), tail(12, '\0');
  if (!in.read(head.data(), 8) || head != "\x89PNG\r\n\x1a\n") return false;
  in.seekg(-12, std::ios::end);
  return in.read(tail.data(), 12) && tail.substr(4, 4) == "IEND";
}

/// Runs gnuplot on `script` inside `dir` when gnuplot is installed and checks the `pngs` it
/// draws: one that is missing or cut short (gnuplot failed, the disk is full) is removed,
/// so no plot that looks whole is left half written; the plot data and the script stay.
inline void run_gnuplot(const fs::path& dir, const std::string& script, const std::vector<std::string>& pngs) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::printf("  gnuplot not found: plot data and %s left in %s\n", script.c_str(), dir.string().c_str());
    return;
  }
  const auto cmd = "cd '" + dir.string() + "' && gnuplot " + script;
  if (std::system(cmd.c_str()) != 0) std::printf("  gnuplot failed on %s/%s\n", dir.string().c_str(), script.c_str());
  for (const auto& png : pngs)
    if (!png_is_whole(dir / png)) {
      std::error_code ec;
      fs::remove(dir / png, ec);
      std::printf("  %s was not drawn whole (removed; `gnuplot %s` in %s draws it again)\n", png.c_str(),
                  script.c_str(), dir.string().c_str());
    }
}

/// What a file is, for a cache key: its path, size and modification time (`who` names the
/// command in the error when it does not exist).
inline std::string file_stamp(const fs::path& f, const char* who) {
  ca::detail::require(fs::exists(f), who, ": ", f.string(), " does not exist");
  std::ostringstream s;
  s << fs::canonical(f).string() << ":" << fs::file_size(f) << ":" << fs::last_write_time(f).time_since_epoch().count();
  return s.str();
}

// WORLD_SIZE as torchrun (or `--nproc N`) sets it; 1 when unset.
inline int64_t world_size_from_environment() {
  const char* v = std::getenv("WORLD_SIZE");
  if (v == nullptr || *v == '\0') return 1;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  ca::detail::require(end != v && *end == '\0' && n >= 1, "WORLD_SIZE=\"", v, "\" is not a positive integer");
  return n;
}

}  // namespace retrieval
