#pragma once
/// \file
/// \brief BEIR's dataset folder, the layout every BEIR evaluator reads:
///
///     corpus.jsonl      {"_id", "title", "text"} a line (other keys ignored)
///     queries.jsonl     {"_id", "text"} a line
///     qrels/<split>.tsv query-id <TAB> corpus-id <TAB> score, after a header line
///
/// `read_beir(dir, split)` loads a split the way BEIR's GenericDataLoader does (the
/// corpus, the split's qrels, and the queries those qrels name), for evaluation, and
/// `read_beir_splits(dir, {"train", "dev"})` several splits with one parse of the corpus;
/// `beir_training_examples` turns it into training examples (a query with its documents
/// of score > 0 as positives). The corpus and queries can also be streamed.
///
/// Rules: ids are strings (integer ids are read as their decimal text); a document needs
/// a non-empty text or title (BEIR corpora hold a few title-only documents), a query a
/// non-empty text; an id may appear once per file; a qrels line must name a query of
/// queries.jsonl and a document of corpus.jsonl, and have an integer score. A line that
/// breaks a rule raises malformed_record naming the file, the line and the field, or is
/// skipped and counted under OnError::skip.

#include <contaccum/data/detail/json_fields.hpp>
#include <contaccum/data/detail/line_records.hpp>
#include <contaccum/data/read_options.hpp>
#include <contaccum/data/records.hpp>
#include <contaccum/eval/trec.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace contaccum {
namespace detail {

struct ParseBeirDocument {
  std::optional<Passage> operator()(std::string_view line, std::size_t) const {
    const auto j = parse_json_record(line);
    if (!j.is_object()) bad_record("", "a corpus record must be a JSON object, got ", j.type_name());
    const auto id = j.find("_id");
    if (id == j.end()) bad_record("_id", "missing");
    Passage p{json_id(*id, "_id"), json_text(j, "title", "title", false), json_text(j, "text", "text", false)};
    if (p.id.empty()) bad_record("_id", "empty id");
    if (p.text.find_first_not_of(" \t\r\n") == std::string::npos &&
        p.title.find_first_not_of(" \t\r\n") == std::string::npos)
      bad_record("text", "empty text (and no title)");
    return p;
  }
};

struct ParseBeirQuery {
  std::optional<Query> operator()(std::string_view line, std::size_t) const {
    const auto j = parse_json_record(line);
    if (!j.is_object()) bad_record("", "a query record must be a JSON object, got ", j.type_name());
    const auto id = j.find("_id");
    if (id == j.end()) bad_record("_id", "missing");
    Query q{json_id(*id, "_id"), json_text(j, "text", "text", true)};
    if (q.id.empty()) bad_record("_id", "empty id");
    return q;
  }
};

/// \brief One qrels line; the header "query-id corpus-id score" (first line only) is passed over.
struct ParseBeirQrelsLine {
  std::optional<TrecLine> operator()(std::string_view line, std::size_t line_no) const {
    const auto f = split_fields(line, '\t');
    if (line_no == 1 && !f.empty() && f[0] == "query-id") return std::nullopt;
    if (f.size() != 3) bad_record("", "expected 3 tab-separated fields (query-id, corpus-id, score), got ", f.size());
    if (f[0].empty()) bad_record("query-id", "empty id");
    if (f[1].empty()) bad_record("corpus-id", "empty id");
    return TrecLine{std::string(f[0]), std::string(f[1]), static_cast<double>(parse_integer<int>(f[2], "score"))};
  }
};

// Drains a stream of records with an id; a repeated id is a malformed record (the
// first is kept under OnError::skip).
template <class Records>
auto unique_by_id(Records records, ReadStats& stats) {
  std::vector<std::remove_cvref_t<decltype(*records.begin())>> out;
  std::unordered_set<std::string> seen;
  for (auto&& r : records) {
    if (!seen.insert(r.id).second) {
      records.reject({"_id", cat("id '", r.id, "' given twice")});
      continue;
    }
    out.push_back(std::move(r));
  }
  stats = records.stats();
  return out;
}

}  // namespace detail

/// \brief A BEIR split in memory.
struct BeirDataset {
  std::vector<Passage> corpus;  ///< corpus.jsonl order
  std::vector<Query> queries;   ///< the queries the split's qrels name, in queries.jsonl order
  Qrels qrels;                  ///< query-id -> corpus-id -> score, of the split
  ReadStats corpus_stats, queries_stats, qrels_stats;

  /// \brief Document id -> row of `corpus`.
  [[nodiscard]] std::unordered_map<std::string, std::size_t> corpus_index() const {
    std::unordered_map<std::string, std::size_t> index;
    index.reserve(corpus.size());
    for (std::size_t i = 0; i < corpus.size(); ++i) index.emplace(corpus[i].id, i);
    return index;
  }
};

/// \brief The documents of a BEIR corpus.jsonl, streamed (single-pass view). Repeated ids
///        are not checked here; read_beir checks them.
using BeirCorpus = detail::LineRecords<Passage, detail::ParseBeirDocument>;
/// \brief The queries of a BEIR queries.jsonl, streamed (single-pass view).
using BeirQueries = detail::LineRecords<Query, detail::ParseBeirQuery>;

/// \brief Streams corpus.jsonl, e.g. to encode a corpus too large to hold as text.
///
/// \code
/// for (const auto& chunk : contaccum::beir_corpus(dir / "corpus.jsonl") | ranges::views::chunk(4096)) { ... }
/// \endcode
[[nodiscard]] inline BeirCorpus beir_corpus(const std::filesystem::path& file, ReadOptions options = {}) {
  return {detail::LineSource(file, "BEIR corpus"), options, {}};
}

/// \brief Streams queries.jsonl.
[[nodiscard]] inline BeirQueries beir_queries(const std::filesystem::path& file, ReadOptions options = {}) {
  return {detail::LineSource(file, "BEIR queries"), options, {}};
}

namespace detail {

inline std::filesystem::path beir_qrels_file(const std::filesystem::path& dir, const std::string& split) {
  auto file = dir / "qrels" / (split + ".tsv");
  if (!std::filesystem::exists(file))
    bad_file("BEIR qrels", file, "no such file (is '", split, "' a split of ", dir.string(), "?)");
  return file;
}

// A split of the folder from its corpus and *all* of its queries (both already read):
// the split's qrels, checked against them, and the queries those qrels name.
inline BeirDataset beir_split(const std::filesystem::path& qrels_file, std::vector<Passage> corpus,
                              const ReadStats& corpus_stats, const std::vector<Query>& all_queries,
                              const ReadStats& queries_stats, ReadOptions options) {
  BeirDataset d;
  d.corpus = std::move(corpus);
  d.corpus_stats = corpus_stats;
  d.queries_stats = queries_stats;

  std::unordered_set<std::string> docs, query_ids;
  docs.reserve(d.corpus.size());
  for (const auto& p : d.corpus) docs.insert(p.id);
  for (const auto& q : all_queries) query_ids.insert(q.id);

  // qrels lines are checked against the corpus and the queries as they are read
  LineRecords<TrecLine, ParseBeirQrelsLine> lines(LineSource(qrels_file, "BEIR qrels"), options, {});
  for (auto& l : lines) {
    if (!query_ids.contains(l.qid)) {
      lines.reject({"query-id", cat("query '", l.qid, "' is not in queries.jsonl")});
    } else if (!docs.contains(l.docid)) {
      lines.reject({"corpus-id", cat("document '", l.docid, "' is not in corpus.jsonl")});
    } else if (!d.qrels[l.qid].emplace(l.docid, static_cast<int>(l.value)).second) {
      lines.reject({"corpus-id", cat("document '", l.docid, "' given twice for query '", l.qid, "'")});
    }
  }
  d.qrels_stats = lines.stats();

  // BEIR keeps only the queries its qrels name.
  for (const auto& q : all_queries)
    if (d.qrels.contains(q.id)) d.queries.push_back(q);
  return d;
}

}  // namespace detail

/// \brief Reads a split of a BEIR folder: corpus, the split's qrels, the queries they name.
///
/// \code
/// auto test = contaccum::read_beir("data/debian-beir", "test");
/// // test.corpus, test.queries, test.qrels; test.qrels_stats.summary()
/// \endcode
[[nodiscard]] inline BeirDataset read_beir(const std::filesystem::path& dir, const std::string& split,
                                           ReadOptions options = {});

/// \brief Reads several splits of one BEIR folder, parsing corpus.jsonl and queries.jsonl
///        once: element i equals `read_beir(dir, splits[i], options)` (each holds its own
///        copy of the corpus). Every split's qrels file must exist before anything is parsed.
///
/// \code
/// const auto splits = contaccum::read_beir_splits("data/debian-beir", {"train", "dev", "test"});
/// const auto& dev = splits[1];  // dev.queries, dev.qrels
/// \endcode
[[nodiscard]] inline std::vector<BeirDataset> read_beir_splits(const std::filesystem::path& dir,
                                                               const std::vector<std::string>& splits,
                                                               ReadOptions options = {}) {
  std::vector<std::filesystem::path> qrels;
  for (const auto& split : splits) qrels.push_back(detail::beir_qrels_file(dir, split));
  std::vector<BeirDataset> out;
  if (splits.empty()) return out;
  ReadStats corpus_stats, queries_stats;
  auto corpus = detail::unique_by_id(beir_corpus(dir / "corpus.jsonl", options), corpus_stats);
  const auto queries = detail::unique_by_id(beir_queries(dir / "queries.jsonl", options), queries_stats);
  out.reserve(splits.size());
  for (std::size_t i = 0; i < splits.size(); ++i) {
    const bool last = i + 1 == splits.size();  // the last split takes the corpus, the others copy it
    out.push_back(detail::beir_split(qrels[i], last ? std::move(corpus) : corpus, corpus_stats, queries,
                                     queries_stats, options));
  }
  return out;
}

inline BeirDataset read_beir(const std::filesystem::path& dir, const std::string& split, ReadOptions options) {
  return std::move(read_beir_splits(dir, {split}, options).front());
}

/// \brief Training examples of a BEIR split: each query with its documents of score > 0
///        as positives (higher score first, then corpus order) and its judged documents of
///        score <= 0 as hard negatives. Queries with no positive are left out.
[[nodiscard]] inline std::vector<TextExample> beir_training_examples(const BeirDataset& d) {
  const auto index = d.corpus_index();
  std::vector<TextExample> out;
  out.reserve(d.queries.size());
  for (const auto& q : d.queries) {
    const auto it = d.qrels.find(q.id);
    if (it == d.qrels.end()) continue;
    std::vector<std::pair<int, std::size_t>> pos, neg;  // (score, corpus row)
    for (const auto& [doc, score] : it->second) (score > 0 ? pos : neg).emplace_back(score, index.at(doc));
    if (pos.empty()) continue;
    std::sort(pos.begin(), pos.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::sort(neg.begin(), neg.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    TextExample ex{q.id, q.text, {}, {}, {}, {}};
    for (const auto& [score, row] : pos) ex.positives.push_back(d.corpus[row]);
    for (const auto& [score, row] : neg) ex.hard_negatives.push_back(d.corpus[row]);
    out.push_back(std::move(ex));
  }
  return out;
}

}  // namespace contaccum
