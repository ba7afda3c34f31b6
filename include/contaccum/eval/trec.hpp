#pragma once
/// \file
/// \brief Relevance judgements (qrels) and rankings (runs) in memory and in TREC's text
///        formats, the files trec_eval and pytrec_eval read:
///
///     qrels: qid 0 docid rel              (rel an integer grade; <= 0 is not relevant)
///     run:   qid Q0 docid rank score tag  (rank is ignored, as trec_eval ignores it)
///
/// Fields are separated by spaces or tabs. A malformed line, or a (qid, docid) given
/// twice, raises malformed_record naming the file and line, or is skipped and counted
/// under OnError::skip.

#include <contaccum/data/detail/line_records.hpp>
#include <contaccum/data/read_options.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/state/detail/files.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace contaccum {

/// \brief Judgements: query id -> document id -> relevance grade (pytrec_eval's dict of dicts).
using Qrels = std::map<std::string, std::map<std::string, int>>;

/// \brief A ranking: query id -> document id -> score (higher is better).
using Run = std::map<std::string, std::map<std::string, double>>;

/// \brief One query's documents in trec_eval's order: score descending, and among equal
///        scores document id descending (byte-wise, as strcmp). pytrec_eval orders the same
///        way; tests/unit/test_data_eval.cpp checks it on ties.
[[nodiscard]] inline std::vector<std::pair<const std::string*, double>> trec_order(
    const std::map<std::string, double>& docs) {
  std::vector<std::pair<const std::string*, double>> out;
  out.reserve(docs.size());
  for (const auto& [doc, score] : docs) out.emplace_back(&doc, score);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    if (a.second != b.second) return a.second > b.second;
    return *a.first > *b.first;
  });
  return out;
}

namespace detail {

/// \brief One line of a qrels or run file.
struct TrecLine {
  std::string qid, docid;
  double value = 0;  // rel (qrels) or score (run)
};

struct ParseQrelsLine {
  std::optional<TrecLine> operator()(std::string_view line, std::size_t) const {
    const auto f = split_whitespace(line);
    if (f.size() != 4) bad_record("", "expected 4 fields 'qid iter docid rel', got ", f.size());
    return TrecLine{std::string(f[0]), std::string(f[2]), static_cast<double>(parse_integer<int>(f[3], "rel"))};
  }
};

struct ParseRunLine {
  std::optional<TrecLine> operator()(std::string_view line, std::size_t) const {
    const auto f = split_whitespace(line);
    if (f.size() != 6) bad_record("", "expected 6 fields 'qid Q0 docid rank score tag', got ", f.size());
    (void)parse_integer<long long>(f[3], "rank");
    const auto score = parse_double(f[4], "score");
    if (!std::isfinite(score)) bad_record("score", "not a finite number: '", f[4], "'");
    return TrecLine{std::string(f[0]), std::string(f[2]), score};
  }
};

// Folds the lines of a qrels or run file into the nested map; a repeated (qid, docid)
// is a malformed record (the first occurrence is kept under OnError::skip).
template <class Value, class Parse>
std::map<std::string, std::map<std::string, Value>> read_trec(const std::filesystem::path& file, const char* format,
                                                              ReadOptions options, ReadStats* stats) {
  LineRecords<TrecLine, Parse> lines(LineSource(file, format), options, {});
  std::map<std::string, std::map<std::string, Value>> out;
  for (auto& l : lines) {
    auto& docs = out[l.qid];
    if (docs.contains(l.docid)) {
      lines.reject({"docid", cat("document '", l.docid, "' given twice for query '", l.qid, "'")});
      continue;
    }
    docs.emplace(std::move(l.docid), static_cast<Value>(l.value));
  }
  if (stats) *stats = lines.stats();
  return out;
}

// Shortest text that reads back as the same double (trec_eval reads it with atof).
[[nodiscard]] inline std::string shortest(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

// The text `write` puts on a stream, written to `file` atomically (temporary file, fsync,
// rename): every write is checked and a failure names the file and the errno, leaving no
// partial file.
template <class Write>
void write_text_file(const std::filesystem::path& file, Write write) {
  std::ostringstream out;
  write(out);
  write_file_atomically(file, out.str());
}

}  // namespace detail

/// \brief Reads a TREC qrels file `qid iter docid rel`.
///
/// \code
/// contaccum::Qrels qrels = contaccum::read_qrels("test.qrels");
/// \endcode
[[nodiscard]] inline Qrels read_qrels(const std::filesystem::path& file, ReadOptions options = {},
                                      ReadStats* stats = nullptr) {
  return detail::read_trec<int, detail::ParseQrelsLine>(file, "qrels", options, stats);
}

/// \brief Reads a TREC run file `qid Q0 docid rank score tag` (the rank column is checked
///        to be an integer and otherwise ignored, as trec_eval ignores it).
[[nodiscard]] inline Run read_run(const std::filesystem::path& file, ReadOptions options = {},
                                  ReadStats* stats = nullptr) {
  return detail::read_trec<double, detail::ParseRunLine>(file, "run", options, stats);
}

/// \brief Writes qrels as `qid 0 docid rel`, queries and documents in id order.
inline void write_qrels(const std::filesystem::path& file, const Qrels& qrels) {
  detail::write_text_file(file, [&](std::ostream& out) {
    for (const auto& [qid, docs] : qrels)
      for (const auto& [doc, rel] : docs) out << qid << " 0 " << doc << ' ' << rel << '\n';
  });
}

/// \brief Writes a run as `qid Q0 docid rank score tag`, each query's documents in
///        trec_order (so the rank column agrees with how trec_eval will read the scores);
///        scores in the shortest form that reads back exactly.
inline void write_run(const std::filesystem::path& file, const Run& run, std::string_view tag = "contaccum") {
  detail::write_text_file(file, [&](std::ostream& out) {
    for (const auto& [qid, docs] : run) {
      std::size_t rank = 1;
      for (const auto& [doc, score] : trec_order(docs))
        out << qid << " Q0 " << *doc << ' ' << rank++ << ' ' << detail::shortest(score) << ' ' << tag << '\n';
    }
  });
}

}  // namespace contaccum
