#pragma once
/// \file
/// \brief Text-level records the dataset readers produce (nothing is tokenized here):
///        a passage, a query, a training example with its positives and negatives, and
///        the (query, positive, hard negatives) pair a sampler draws from an example.

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace contaccum {

/// \brief A passage: DPR's ctx, a BEIR corpus document, or a JSONL/TSV passage string.
struct Passage {
  std::string id;     ///< passage_id / psg_id / _id; empty when the format has none
  std::string title;  ///< may be empty
  std::string text;   ///< never empty (readers reject empty text)

  friend bool operator==(const Passage&, const Passage&) = default;
};

/// \brief A query of an evaluation set (BEIR queries.jsonl).
struct Query {
  std::string id;
  std::string text;  ///< never empty

  friend bool operator==(const Query&, const Query&) = default;
};

/// \brief One training question with everything its source file gives.
///
/// `hard_negatives` are DPR's hard_negative_ctxs (BM25 negatives), JSONL's "neg", TSV's
/// third column or BEIR's judged non-relevant documents; `negatives` are DPR's
/// negative_ctxs (random passages), used by the sampler as a fallback.
struct TextExample {
  std::string query_id;  ///< the record's id if the format has one, else its line (JSONL, TSV) or index (DPR)
  std::string query;     ///< never empty
  std::vector<Passage> positives;       ///< at least one
  std::vector<Passage> hard_negatives;  ///< may be empty
  std::vector<Passage> negatives;       ///< may be empty
  std::vector<std::string> answers;     ///< DPR answers; empty for other formats

  friend bool operator==(const TextExample&, const TextExample&) = default;
};

/// \brief What one training row needs: a query, one positive, m hard negatives.
///        A list of these becomes a PairBatch once tokenized.
struct TextPair {
  std::string query_id;
  std::string query;
  Passage positive;
  std::vector<Passage> hard_negatives;  ///< exactly m (PairSamplingConfig::hard_negatives_per_query)

  friend bool operator==(const TextPair&, const TextPair&) = default;
};

// Printing, for logs and test failure messages.
inline std::ostream& operator<<(std::ostream& os, const Passage& p) {
  return os << "{id \"" << p.id << "\", title \"" << p.title << "\", text \"" << p.text << "\"}";
}
inline std::ostream& operator<<(std::ostream& os, const Query& q) {
  return os << "{id \"" << q.id << "\", text \"" << q.text << "\"}";
}
namespace detail {
inline std::ostream& print_passages(std::ostream& os, const std::vector<Passage>& ps) {
  os << '[';
  for (std::size_t i = 0; i < ps.size(); ++i) os << (i ? ", " : "") << ps[i];
  return os << ']';
}
}  // namespace detail
inline std::ostream& operator<<(std::ostream& os, const TextExample& e) {
  os << "{query_id \"" << e.query_id << "\", query \"" << e.query << "\", positives ";
  detail::print_passages(os, e.positives) << ", hard_negatives ";
  detail::print_passages(os, e.hard_negatives) << ", negatives ";
  detail::print_passages(os, e.negatives) << ", " << e.answers.size() << " answers}";
  return os;
}
inline std::ostream& operator<<(std::ostream& os, const TextPair& p) {
  os << "{query_id \"" << p.query_id << "\", query \"" << p.query << "\", positive " << p.positive
     << ", hard_negatives ";
  return detail::print_passages(os, p.hard_negatives) << '}';
}

}  // namespace contaccum
