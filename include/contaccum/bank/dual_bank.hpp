#pragma once
/// \file
/// \brief ContAccum's dual memory bank: rings of past query, positive and hard-negative
///        embeddings, enqueued together after every micro-batch.
///
/// Capacity is in vectors: N_memory for the query and positive banks, N_memory x m for
/// the hard-negative bank (the reference keeps the same number of micro-batches in every
/// bank). Switches reproduce the paper's ablations.

#include <contaccum/bank/ring_buffer.hpp>
#include <contaccum/bank/score_cache.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/loss/score_record.hpp>
#include <contaccum/state/state_dict.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <optional>
#include <string>

namespace contaccum {

/// \brief Runtime settings of a DualBank.
struct BankConfig {
  int64_t capacity = 0;               ///< N_memory: vectors in the query and positive banks
  bool query_bank = true;             ///< false = the paper's "w/o M_q" ablation
  bool hard_negative_bank = true;     ///< bank hard negatives too (reference: cache_hard_neg)
  bool persist_across_steps = true;   ///< false = "w/o past encoder": clear after every optimizer step
  bool cache_scores = true;           ///< keep banked-row log-sum-exps up to date incrementally
                                      ///< (exact; costs capacity^2 / block_rows scores of memory)
  int64_t block_rows = 0;             ///< rows per enqueue, the score cache's block; 0 = the
                                      ///< strategy's (N_local under ContAccum, N_total under
                                      ///< ContAccum over GradCache). Set, every enqueue must
                                      ///< match it and capacity must be a multiple of it.
  /// The type banked rows are stored in: torch::kBFloat16 or torch::kHalf halve the bank's
  /// memory (and its checkpoint) against fp32 rows. Rows come back, and are scored, in the
  /// type they were enqueued in (fp32), rounded once to the storage type. Undefined: as
  /// enqueued.
  torch::ScalarType storage_dtype = torch::ScalarType::Undefined;
};

class DualBank {
public:
  using config_type = BankConfig;

  explicit DualBank(BankConfig config = {})
      : config_(config),
        queries_(config.query_bank ? config.capacity : 0, "query bank", stored_as(config)),
        positives_(config.capacity, "positive bank", stored_as(config)),
        hard_negatives_(0, "hard-negative bank", stored_as(config)) {
    detail::require(config.block_rows >= 0, "BankConfig.block_rows must be >= 0, got ", config.block_rows);
    detail::require(config.block_rows == 0 || config.capacity % config.block_rows == 0, "BankConfig.capacity (",
                    config.capacity, ") must be a multiple of BankConfig.block_rows (", config.block_rows,
                    ") so the score cache's blocks tile the bank");
    if (config.block_rows > 0) set_block_rows(config.block_rows);
  }

  /// \brief Rows per enqueue (the score cache's block); 0 until fixed.
  [[nodiscard]] int64_t block_rows() const { return block_rows_; }
  /// \brief Fixes the rows per enqueue, unless BankConfig::block_rows or an earlier call did.
  void set_block_rows(int64_t n) {
    if (block_rows_ != 0 || n <= 0) return;
    block_rows_ = n;
    query_scores_.set_block_rows(n);
    positive_scores_.set_block_rows(n);
  }
  /// \brief Whether the score cache is switched on (BankConfig::cache_scores).
  [[nodiscard]] bool caches_scores() const { return config_.cache_scores; }
  /// \brief Why the score cache cannot serve; empty while it can (or is switched off).
  [[nodiscard]] std::string score_cache_status() const {
    if (!config_.cache_scores) return "";
    if (!embed_) return "the loss does not say how it scores pairs (not a SimilarityAwareLoss)";
    if (!query_scores_.status().empty()) return query_scores_.status();
    return positive_scores_.status();
  }

  [[nodiscard]] const BankConfig& config() const { return config_; }

  /// \brief Enqueues one micro-batch: q (n, H), p (n, H), h (n*m, H); detached copies.
  ///        `seen`: the scores the loss computed against this bank, reused by the cache.
  void enqueue(const torch::Tensor& q, const torch::Tensor& p, const torch::Tensor& h,
               const ScoreRecord* seen = nullptr) {
    detail::require(q.size(0) == p.size(0), "DualBank: ", q.size(0), " queries but ", p.size(0), " positives");
    const auto n = q.size(0);
    const auto hn = h.defined() ? h.size(0) : 0;
    detail::require(n > 0 && hn % n == 0, "DualBank: ", hn, " hard negatives for ", n, " queries");
    const auto m = hn / n;
    detail::require(config_.block_rows == 0 || n == config_.block_rows, "DualBank: an enqueue of ", n,
                    " rows, but BankConfig.block_rows is ", config_.block_rows);
    if (m_ < 0) {
      m_ = m;
      if (config_.hard_negative_bank && m > 0) hard_negatives_ = RingBuffer(config_.capacity * m, "hard-negative bank", stored_as(config_));
    }
    detail::require(m == m_, "DualBank: ", m, " hard negatives per query, but the bank was filled with ", m_,
                    " per query (the count must stay fixed during a run)");
    if (in_step_ && hard_negatives_.capacity() > 0 && !hn_began_) {
      hard_negatives_.begin();
      hn_began_ = true;
    }
    queries_.push(q);
    positives_.push(p);
    if (m > 0) hard_negatives_.push(h);
    // The loss scored the rows before rounding: a bank stored narrower scores its own rows.
    if (stored_as(config_)) seen = nullptr;
    if (scoring()) {
      if (queries_.capacity() > 0)
        query_scores_.update(queries_, passage_rings(), embed_, scale_, seen ? &seen->forward : nullptr);
      if (symmetric_ && queries_.capacity() > 0)
        positive_scores_.update(positives_, {&queries_}, embed_, scale_, seen ? &seen->reverse : nullptr);
    }
  }

  /// \brief Tells the bank how the loss scores pairs, so it can keep the banked rows'
  ///        log-sum-exps (BankConfig::cache_scores). `embed` is the similarity's row map.
  void set_similarity(BankScoreCache::embed_fn embed, double scale, bool symmetric) {
    if (!config_.cache_scores) return;
    const bool known = embed_ || similarity_restored_;  // a restored cache was built with scale_
    similarity_restored_ = false;
    if (!known || scale != scale_ || symmetric != symmetric_) {
      query_scores_.reset();
      positive_scores_.reset();
    }
    embed_ = std::move(embed);
    scale_ = scale;
    symmetric_ = symmetric;
  }
  /// \brief Per banked query: log-sum-exp of its scores over every banked passage
  ///        (positives and hard negatives), (queries().size(0)); undefined if not cached.
  [[nodiscard]] torch::Tensor query_row_lse() {
    return scoring() ? query_scores_.row_lse(queries_, passage_rings(), embed_, scale_) : torch::Tensor{};
  }
  /// \brief Per banked pair i: s(queries()[i], positives()[i]), (queries().size(0)); undefined if not cached.
  [[nodiscard]] torch::Tensor pair_scores() {
    return scoring() ? query_scores_.pair_scores(queries_, passage_rings(), embed_, scale_) : torch::Tensor{};
  }
  /// \brief Per banked positive: log-sum-exp over every banked query (symmetric loss).
  [[nodiscard]] torch::Tensor positive_row_lse() {
    return scoring() && symmetric_ ? positive_scores_.row_lse(positives_, {&queries_}, embed_, scale_)
                                   : torch::Tensor{};
  }
  /// \brief Enqueues whose cache update reused the loss's scores.
  [[nodiscard]] int64_t score_cache_reuses() const {
    return query_scores_.reused_blocks() + positive_scores_.reused_blocks();
  }
  /// \brief Bytes of the score cache's tables.
  [[nodiscard]] int64_t score_cache_bytes() const { return query_scores_.bytes() + positive_scores_.bytes(); }

  /// \brief Live rows, storage order; queries()[i] and positives()[i] come from one pair.
  [[nodiscard]] torch::Tensor queries() const { return queries_.entries(); }
  [[nodiscard]] torch::Tensor positives() const { return positives_.entries(); }
  [[nodiscard]] torch::Tensor hard_negatives() const { return hard_negatives_.entries(); }
  [[nodiscard]] const RingBuffer& query_ring() const { return queries_; }
  [[nodiscard]] const RingBuffer& positive_ring() const { return positives_; }
  [[nodiscard]] const RingBuffer& hard_negative_ring() const { return hard_negatives_; }

  /// \brief Bytes of preallocated storage.
  [[nodiscard]] int64_t bytes() const {
    int64_t total = 0;
    for (const auto* r : {&queries_, &positives_, &hard_negatives_})
      if (r->storage().defined()) total += r->storage().numel() * r->storage().element_size();
    return total;
  }

  void clear() {
    queries_.clear();
    positives_.clear();
    hard_negatives_.clear();
    query_scores_.reset();
    positive_scores_.reset();
  }

  /// \brief Optimizer-step transaction: pushes after begin_step() are undone by
  ///        rollback_step() (a step that failed) and kept by commit_step().
  void begin_step() {
    queries_.begin();
    positives_.begin();
    if (hard_negatives_.capacity() > 0) hard_negatives_.begin();
    hn_began_ = hard_negatives_.capacity() > 0;
    in_step_ = true;
  }
  void commit_step() {
    queries_.commit();
    positives_.commit();
    hard_negatives_.commit();
    in_step_ = false;
    if (!config_.persist_across_steps) clear();
  }
  void rollback_step() {
    queries_.rollback();
    positives_.rollback();
    hard_negatives_.rollback();
    query_scores_.mark_stale();
    positive_scores_.mark_stale();
    in_step_ = false;
  }

  /// \brief Saves the rings (storage, head, size), the hard-negative count, the block and
  ///        the score cache's tables, so a resumed run scores exactly as an unbroken one.
  void save_state(StateDict& s, const std::string& prefix) const {
    detail::require(!in_step_, "DualBank: cannot save its state inside an optimizer step");
    s.set_all(prefix + "config.", settings());
    s.set(prefix + "hard_negatives_per_query", m_);
    s.set(prefix + "block_rows", block_rows_);
    s.set(prefix + "hard_negative_capacity", hard_negatives_.capacity());
    s.set(prefix + "similarity.known", static_cast<bool>(embed_) || similarity_restored_);
    s.set(prefix + "similarity.scale", scale_);
    s.set(prefix + "similarity.symmetric", symmetric_);
    queries_.save_state(s, prefix + "queries.");
    positives_.save_state(s, prefix + "positives.");
    hard_negatives_.save_state(s, prefix + "hard_negatives.");
    query_scores_.save_state(s, prefix + "query_scores.");
    positive_scores_.save_state(s, prefix + "positive_scores.");
  }
  /// \brief Restores a saved bank of the same configuration (a differing BankConfig field is
  ///        named). All or nothing: the bank is unchanged when anything does not fit.
  void load_state(const StateReader& r, const std::string& prefix) {
    r.require_same_all(prefix + "config.", settings());
    DualBank next(config_);  // filled, then swapped in
    next.m_ = r.value<int64_t>(prefix + "hard_negatives_per_query");
    const auto hn_capacity = r.value<int64_t>(prefix + "hard_negative_capacity");
    if (hn_capacity != (next.m_ > 0 && config_.hard_negative_bank ? config_.capacity * next.m_ : 0))
      r.fail(prefix + "hard_negative_capacity", "is ", hn_capacity, ", which does not fit capacity ",
             config_.capacity, " and ", next.m_, " hard negatives per query");
    if (hn_capacity > 0) next.hard_negatives_ = RingBuffer(hn_capacity, "hard-negative bank");
    next.block_rows_ = r.value<int64_t>(prefix + "block_rows");
    next.similarity_restored_ = r.value<bool>(prefix + "similarity.known");
    next.scale_ = r.value<double>(prefix + "similarity.scale");
    next.symmetric_ = r.value<bool>(prefix + "similarity.symmetric");
    next.queries_.load_state(r, prefix + "queries.");
    next.positives_.load_state(r, prefix + "positives.");
    next.hard_negatives_.load_state(r, prefix + "hard_negatives.");
    next.query_scores_.load_state(r, prefix + "query_scores.", next.queries_.capacity());
    next.positive_scores_.load_state(r, prefix + "positive_scores.", next.positives_.capacity());
    *this = std::move(next);
  }

private:
  static std::optional<torch::ScalarType> stored_as(const BankConfig& c) {
    if (c.storage_dtype == torch::ScalarType::Undefined) return std::nullopt;
    return c.storage_dtype;
  }
  // The BankConfig a resumed run must share, field by field.
  [[nodiscard]] nlohmann::json settings() const {
    return {{"capacity", config_.capacity},
            {"query_bank", config_.query_bank},
            {"hard_negative_bank", config_.hard_negative_bank},
            {"persist_across_steps", config_.persist_across_steps},
            {"cache_scores", config_.cache_scores},
            {"block_rows", config_.block_rows}};
  }
  [[nodiscard]] bool scoring() const { return config_.cache_scores && static_cast<bool>(embed_); }
  [[nodiscard]] std::vector<const RingBuffer*> passage_rings() const {
    std::vector<const RingBuffer*> r{&positives_};
    if (hard_negatives_.capacity() > 0) r.push_back(&hard_negatives_);
    return r;
  }

  BankConfig config_;
  RingBuffer queries_, positives_, hard_negatives_;
  int64_t m_ = -1;  // hard negatives per query, fixed by the first enqueue
  int64_t block_rows_ = 0;
  bool in_step_ = false, hn_began_ = false;
  BankScoreCache query_scores_, positive_scores_;
  BankScoreCache::embed_fn embed_;
  double scale_ = 1.0;
  bool symmetric_ = false;
  bool similarity_restored_ = false;  // load_state restored scale_/symmetric_; embed_ comes next
};

}  // namespace contaccum
