#pragma once
/// \file
/// \brief From text pairs to the tokenized PairBatch a Trainer step takes: passage text
///        (title + text, as sentence-transformers and BEIR join them), truncation per
///        side, padding per batch; and a loader that walks a PairSampler epoch by epoch in
///        step batches of N_total pairs.
///
/// \code
/// contaccum::PairSampler sampler(examples, {.seed = 13, .hard_negatives_per_query = 0});
/// contaccum::PairLoader loader(sampler, tokenizer, {.batch_size = 64});
/// for (int s = 0; s < steps; ++s) trainer.step(loader.next());   // K micro-batches inside
/// \endcode

#include <contaccum/data/batch.hpp>
#include <contaccum/data/records.hpp>
#include <contaccum/data/sampling.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/state/state_dict.hpp>
#include <contaccum/tokenizers/batch.hpp>
#include <contaccum/tokenizers/concepts.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// \brief How text becomes tokens. A plain aggregate (Boost.PFR prints it).
struct TokenizeConfig {
  std::size_t query_max_length = 32;     ///< tokens per query, specials included
  std::size_t passage_max_length = 128;  ///< tokens per passage, specials included
  bool title_in_passage = true;          ///< passage text = title + " " + text when a title exists
  /// Instruction prefixes per side, as E5 ("query: ", "passage: ") and BGE use them: prepended to
  /// the text before tokenization, like sentence-transformers' `prompts`. Empty: none.
  std::string query_prompt;
  std::string passage_prompt;
};

/// \brief The text a query is encoded from: the query prompt, then the query.
[[nodiscard]] inline std::string query_text(std::string_view query, const TokenizeConfig& c = {}) {
  std::string out;
  out.reserve(c.query_prompt.size() + query.size());
  out.append(c.query_prompt).append(query);
  return out;
}

/// \brief The text a passage is encoded from: the passage prompt, then title + " " + text.
[[nodiscard]] inline std::string passage_text(const Passage& p, const TokenizeConfig& c = {}) {
  if (!c.title_in_passage || p.title.empty()) return c.passage_prompt + p.text;
  return c.passage_prompt + p.title + " " + p.text;
}

/// \brief Tokenizes pairs into one PairBatch: queries (N, Tq), positives (N, Tp), hard
///        negatives (N*m, Th) query-major, each padded to its own longest row.
template <tokenizers::Tokenizer T>
[[nodiscard]] PairBatch tokenize_pairs(const T& tok, std::span<const TextPair> pairs, const TokenizeConfig& c = {}) {
  detail::require(!pairs.empty(), "tokenize_pairs: no pairs");
  const std::size_t m = pairs.front().hard_negatives.size();
  std::vector<std::vector<int64_t>> q, p, n;
  q.reserve(pairs.size());
  p.reserve(pairs.size());
  n.reserve(pairs.size() * m);
  for (const auto& pair : pairs) {
    detail::require(pair.hard_negatives.size() == m, "tokenize_pairs: query '", pair.query_id, "' has ",
                    pair.hard_negatives.size(), " hard negatives, the first query has ", m);
    q.push_back(tok.encode(query_text(pair.query, c), {.add_special_tokens = true, .max_length = c.query_max_length}));
    p.push_back(tok.encode(passage_text(pair.positive, c), {.add_special_tokens = true, .max_length = c.passage_max_length}));
    for (const auto& neg : pair.hard_negatives)
      n.push_back(tok.encode(passage_text(neg, c), {.add_special_tokens = true, .max_length = c.passage_max_length}));
  }
  const auto pad = static_cast<int64_t>(tok.pad_id());
  PairBatch batch{tokenizers::pad_rows(q, pad), tokenizers::pad_rows(p, pad), m ? tokenizers::pad_rows(n, pad) : TokenBatch{}};
  batch.validate();
  return batch;
}

/// \brief Step batches of `batch_size` pairs drawn from a sampler, epoch after epoch
///        (an epoch's last, short batch is dropped so every step has N_total pairs).
template <tokenizers::Tokenizer T>
class PairLoader {
public:
  struct Config {
    int64_t batch_size = 64;  ///< N_total: pairs per optimizer step
    TokenizeConfig tokenize{};
  };

  PairLoader(PairSampler sampler, T tokenizer, Config config)
      : sampler_(std::move(sampler)), tok_(std::move(tokenizer)), config_(config) {
    detail::require(config_.batch_size > 0, "PairLoader.batch_size must be positive, got ", config_.batch_size);
    detail::require(sampler_.size() >= static_cast<std::size_t>(config_.batch_size), "PairLoader: ", sampler_.size(),
                    " examples cannot fill one batch of ", config_.batch_size);
    order_ = sampler_.order(epoch_);
  }

  /// \brief The next step batch; moves to the next epoch when this one runs out.
  [[nodiscard]] PairBatch next() {
    const auto n = static_cast<std::size_t>(config_.batch_size);
    if (cursor_ + n > order_.size()) {
      order_ = sampler_.order(++epoch_);
      cursor_ = 0;
    }
    std::vector<TextPair> pairs;
    pairs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) pairs.push_back(sampler_.sample(order_[cursor_ + i], epoch_));
    cursor_ += n;
    return tokenize_pairs(tok_, pairs, config_.tokenize);
  }

  /// \brief Where the loader stands (epoch, position) and what it reads (seed, examples,
  ///        batch size), so a resumed run draws the very batches an unbroken one would.
  void save_state(StateDict& s, const std::string& prefix) const {
    s.set(prefix + "epoch", epoch_);
    s.set(prefix + "cursor", cursor_);
    s.set(prefix + "seed", sampler_.config().seed);
    s.set(prefix + "examples", sampler_.size());
    s.set(prefix + "batch_size", config_.batch_size);
    s.set(prefix + "hard_negatives_per_query", sampler_.config().hard_negatives_per_query);
    s.set_all(prefix, settings());
  }
  /// \brief Continues from a saved position; the data and sampling settings must match.
  void load_state(const StateReader& r, const std::string& prefix) {
    r.require_same(prefix + "seed", sampler_.config().seed);
    r.require_same(prefix + "examples", sampler_.size());
    r.require_same(prefix + "batch_size", config_.batch_size);
    r.require_same(prefix + "hard_negatives_per_query", sampler_.config().hard_negatives_per_query);
    r.require_same_all(prefix, settings());
    const auto epoch = r.value<std::uint64_t>(prefix + "epoch");
    const auto cursor = r.value<std::size_t>(prefix + "cursor");
    if (cursor > sampler_.size()) r.fail(prefix + "cursor", "is ", cursor, " but there are ", sampler_.size(), " examples");
    order_ = sampler_.order(epoch);
    epoch_ = epoch;
    cursor_ = cursor;
  }

  [[nodiscard]] std::uint64_t epoch() const { return epoch_; }
  /// \brief Pairs of the current epoch already handed out.
  [[nodiscard]] std::size_t position() const { return cursor_; }
  /// \brief Steps in one epoch (full batches only).
  [[nodiscard]] std::size_t steps_per_epoch() const { return sampler_.size() / static_cast<std::size_t>(config_.batch_size); }
  [[nodiscard]] const T& tokenizer() const { return tok_; }

private:
  // The sampling and tokenization settings a resumed run must share.
  [[nodiscard]] nlohmann::json settings() const {
    const auto& sc = sampler_.config();
    const auto& t = config_.tokenize;
    return {{"shuffle", sc.shuffle},
            {"shuffle_positives", sc.shuffle_positives},
            {"fallback_to_negatives", sc.fallback_to_negatives},
            {"query_max_length", t.query_max_length},
            {"passage_max_length", t.passage_max_length},
            {"title_in_passage", t.title_in_passage}};
  }

  PairSampler sampler_;
  T tok_;
  Config config_;
  std::uint64_t epoch_ = 0;
  std::vector<std::size_t> order_;
  std::size_t cursor_ = 0;
};

}  // namespace contaccum
