#pragma once
/// \file
/// \brief Exact, incremental log-sum-exp of bank-row x bank-column scores.
///
/// ContAccum's banked query rows need, for every micro-batch, each row's log-sum-exp
/// over all banked columns: an (R x C) score matrix, i.e. O(R C H) work, which at
/// N_memory = 8192 costs more than the encoder. The rings change by one micro-batch
/// block per enqueue, so this cache keeps
///   T[i, b] = log sum_{j in column block b} exp(scale * <e(row_i), e(col_j)>)
/// for every row slot i and block b, and G = the same over groups of ~sqrt(B) blocks.
/// An enqueue into block beta recomputes T's rows of beta and column beta (O(n C H)),
/// and G's affected entries; a row's total is a log-sum-exp over G's row. Every stored
/// value is an exact log-sum-exp of exactly computed scores, so the loss equals the
/// dense computation to rounding.
///
/// Needs block-aligned pushes: the capacity a multiple of the block (the rows of one
/// enqueue: N_local under ContAccum, N_total under ContAccum over GradCache) and every
/// enqueue exactly one block. Otherwise it turns itself off, says why (status()), and the
/// loss streams the bank scores instead; the strategy counts every such evaluation in
/// StepStats::score_cache_fallbacks.

#include <contaccum/bank/ring_buffer.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/loss/score_record.hpp>
#include <contaccum/state/state_dict.hpp>

#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <string>
#include <limits>
#include <vector>

namespace contaccum {

class BankScoreCache {
public:
  using embed_fn = std::function<torch::Tensor(const torch::Tensor&)>;

  /// \brief Forgets everything (the rings were cleared).
  void reset() {
    table_ = torch::Tensor();
    groups_ = torch::Tensor();
    pairs_ = torch::Tensor();
    n_ = block_;
    valid_ = true;
    why_.clear();
    stale_ = false;
  }
  /// \brief Fixes the block (rows per push) before the first push; 0 = the first push's rows.
  void set_block_rows(int64_t n) {
    block_ = n;
    if (n_ == 0) n_ = n;
  }
  [[nodiscard]] int64_t block_rows() const { return n_; }
  /// \brief Why the cache turned itself off; empty while it serves.
  [[nodiscard]] const std::string& status() const { return why_; }
  /// \brief The rings were rolled back: rebuild on next use.
  void mark_stale() { stale_ = true; }
  [[nodiscard]] bool valid() const { return valid_; }
  /// \brief Blocks whose values came from the loss's own scores (no extra product).
  [[nodiscard]] int64_t reused_blocks() const { return reused_; }
  /// \brief Bytes held by the tables.
  [[nodiscard]] int64_t bytes() const {
    int64_t b = 0;
    for (const auto* t : {&table_, &groups_, &pairs_})
      if (t->defined()) b += t->numel() * t->element_size();
    return b;
  }

  /// \brief Brings the cache up to date after one block was pushed into `rows` and into
  ///        every ring of `cols`.
  ///        `seen`, if given, holds the scores the loss computed against the rings before
  ///        the push; the new block's values are then reduced from it, with no new product.
  void update(const RingBuffer& rows, const std::vector<const RingBuffer*>& cols, const embed_fn& embed,
              double scale, const DirectionScores* seen = nullptr) {
    if (!valid_ || rows.size() == 0) return;
    const auto n = rows.last_push_rows();
    if (n_ != 0 && n != n_)
      return invalidate(detail::cat("an enqueue of ", n, " rows, but the block is ", n_, " rows"));
    if (n <= 0 || rows.capacity() % n != 0)
      return invalidate(detail::cat("the capacity (", rows.capacity(), ") is not a multiple of the block (", n,
                                    " rows per enqueue)"));
    if (rows.last_push_begin() % n != 0)
      return invalidate(detail::cat("an enqueue started at slot ", rows.last_push_begin(), ", off the ", n,
                                    "-row block grid"));
    n_ = n;
    for (const auto* c : cols)
      if (c->capacity() % (rows.capacity() / n) != 0 ||
          c->last_push_rows() != c->capacity() / (rows.capacity() / n) ||
          c->last_push_begin() != rows.last_push_begin() / n * (c->capacity() / (rows.capacity() / n)))
        return invalidate("the passage rings are not filled in lockstep with the query ring");
    if (!ensure(rows, cols, embed, scale)) return;
    if (just_built_) return;  // ensure() rebuilt every block, the new one included
    torch::NoGradGuard no_grad;
    const auto b = rows.last_push_begin() / n_, live = rows.size() / n_;
    if (seen && from_seen(b, live, rows, cols, *seen)) {
      ++reused_;
      return;
    }
    auto [er, ec] = embedded(rows, cols, embed);
    refresh_block(b, live, er, ec, scale);
  }

  /// \brief Per live row of `rows`: log-sum-exp of its scores over every live column of
  ///        `cols`, (rows.size()); undefined when the cache cannot serve (then stream).
  [[nodiscard]] torch::Tensor row_lse(const RingBuffer& rows, const std::vector<const RingBuffer*>& cols,
                                      const embed_fn& embed, double scale) {
    if (!valid_ || rows.size() == 0 || !ensure(rows, cols, embed, scale)) return {};
    torch::NoGradGuard no_grad;
    return torch::logsumexp(groups_.slice(0, 0, rows.size()), 1);
  }

  /// \brief Per live row: its score with the same slot of the first column ring (the
  ///        pair's positive), (rows.size()); undefined when the cache cannot serve.
  [[nodiscard]] torch::Tensor pair_scores(const RingBuffer& rows, const std::vector<const RingBuffer*>& cols,
                                          const embed_fn& embed, double scale) {
    if (!valid_ || rows.size() == 0 || !ensure(rows, cols, embed, scale)) return {};
    return pairs_.slice(0, 0, rows.size());
  }

private:
  static double inf() { return std::numeric_limits<double>::infinity(); }
  void invalidate(std::string why) {
    valid_ = false;
    why_ = std::move(why);
    table_ = torch::Tensor();
    groups_ = torch::Tensor();
    pairs_ = torch::Tensor();
  }


  // Allocates the tables and rebuilds them when stale; false if the rings are not in
  // lockstep blocks (then the cache turns itself off).
  bool ensure(const RingBuffer& rows, const std::vector<const RingBuffer*>& cols, const embed_fn& embed,
              double scale) {
    just_built_ = false;
    if (n_ == 0) return false;
    const auto blocks = rows.capacity() / n_;
    if (rows.size() % n_ != 0) return invalidate("the bank holds a partial block"), false;
    for (const auto* c : cols)
      if (c->size() != rows.size() / n_ * (c->capacity() / blocks))
        return invalidate("the passage rings are not filled in lockstep with the query ring"), false;
    torch::NoGradGuard no_grad;
    const auto st = rows.options();  // the rows' device and scoring dtype (not a narrower storage dtype)
    if (!table_.defined() || table_.device() != st.device() || table_.dtype() != st.dtype()) {
      group_size_ = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(blocks)))));
      table_ = torch::empty({rows.capacity(), blocks}, st);
      groups_ = torch::empty({rows.capacity(), (blocks + group_size_ - 1) / group_size_}, st);
      pairs_ = torch::zeros({rows.capacity()}, st);  // zeros: a checkpoint holds no uninitialized bytes
      stale_ = true;
    }
    if (stale_) {
      table_.fill_(-inf());
      groups_.fill_(-inf());
      auto [er, ec] = embedded(rows, cols, embed);
      const auto live = rows.size() / n_;
      for (int64_t b = 0; b < live; ++b) refresh_block(b, live, er, ec, scale);
      stale_ = false;
      just_built_ = true;
    }
    return true;
  }

  static std::pair<torch::Tensor, std::vector<torch::Tensor>> embedded(const RingBuffer& rows,
                                                                       const std::vector<const RingBuffer*>& cols,
                                                                       const embed_fn& embed) {
    std::vector<torch::Tensor> ec;
    for (const auto* c : cols) ec.push_back(c->size() ? embed(c->entries()) : torch::Tensor{});
    return {embed(rows.entries()), ec};
  }

  // Recomputes row block b (against all live column blocks) and column block b (for all
  // live rows), then the group sums they touch. er (live*n, H); ec[k] (live*n_k, H).
  void refresh_block(int64_t b, int64_t live, const torch::Tensor& er, const std::vector<torch::Tensor>& ec,
                     double scale) {
    const auto n = n_;
    const auto rows_b = er.slice(0, b * n, (b + 1) * n);  // (n, H)
    torch::Tensor new_rows, new_col;                       // (n, live), (live*n)
    std::vector<torch::Tensor> col_block;
    for (const auto& c : ec) {
      if (!c.defined()) continue;
      const auto nc = c.size(0) / live;
      // (c @ rows_b^T)^T: the tall-skinny BLAS orientation, several times faster here.
      auto r = torch::logsumexp((torch::matmul(c, rows_b.t()).t() * scale).view({n, live, nc}), 2);  // (n, live)
      new_rows = new_rows.defined() ? torch::logaddexp(new_rows, r) : r;
      col_block.push_back(c.slice(0, b * nc, (b + 1) * nc));
    }
    if (!new_rows.defined()) return;
    // every live row against the block's columns of all column rings at once: (live*n)
    new_col = torch::logsumexp(torch::matmul(er, torch::cat(col_block).t()) * scale, 1);
    // scores of the block's pairs: row i with slot i of the first column ring, (n)
    auto pair = (rows_b * ec.front().slice(0, b * n, (b + 1) * n)).sum(1) * scale;
    store_block(b, live, new_rows, new_col, pair);
  }

  // The new block's values from the scores the loss saw (before the push). Returns false
  // (the caller computes them) if the record does not have the expected layout.
  bool from_seen(int64_t b, int64_t live, const RingBuffer& rows, const std::vector<const RingBuffer*>& cols,
                 const DirectionScores& seen) {
    const auto n = n_, blocks = rows.capacity() / n_;
    const auto& cur = seen.current;  // (n, n + pos_bank + neg_cur + neg_bank)
    const auto n0 = cols[0]->capacity() / blocks;
    const auto n1 = cols.size() > 1 ? cols[1]->capacity() / blocks : 0;
    if (!cur.defined() || cur.size(0) != n || n0 != n || seen.n_pos_bank % n0 != 0) return false;
    const auto before = seen.n_pos_bank / n0;  // live blocks before the push
    const bool full = before == live;
    if (!(full ? b < live : (before + 1 == live && b == before))) return false;
    if (n1 > 0 ? (seen.n_neg_cur != n1 || seen.n_neg_bank != before * n1) : seen.n_neg_bank != 0) return false;
    if (cur.size(1) != n + seen.n_pos_bank + seen.n_neg_cur + seen.n_neg_bank) return false;
    if (before > 0 && (!seen.bank_rows.defined() || seen.bank_rows.size(0) != before * n)) return false;

    const auto neg0 = n + seen.n_pos_bank;  // where the current negatives start
    auto cur_cols = n1 > 0 ? torch::cat({cur.slice(1, 0, n), cur.slice(1, neg0, neg0 + n1)}, 1) : cur.slice(1, 0, n);
    auto r_cur = torch::logsumexp(cur_cols, 1);  // (n): new rows x new columns
    auto new_rows = r_cur.unsqueeze(1);          // (n, live)
    auto new_col = r_cur;                        // (live*n)
    if (before > 0) {
      auto r_bank = torch::logsumexp(cur.slice(1, n, neg0).view({n, before, n0}), 2);  // (n, before)
      if (n1 > 0)
        r_bank = torch::logaddexp(
            r_bank, torch::logsumexp(cur.slice(1, neg0 + n1, neg0 + n1 + before * n1).view({n, before, n1}), 2));
      const auto& br = seen.bank_rows;  // (before*n, n + neg_cur): old rows x new columns
      auto c_old = torch::logsumexp(n1 > 0 ? torch::cat({br.slice(1, 0, n), br.slice(1, n, n + n1)}, 1)
                                           : br.slice(1, 0, n),
                                    1);  // (before*n)
      if (full) {
        new_rows = r_bank.clone();
        new_rows.select(1, b).copy_(r_cur);
        new_col = c_old.clone();
        new_col.slice(0, b * n, (b + 1) * n).copy_(r_cur);
      } else {
        new_rows = torch::cat({r_bank, r_cur.unsqueeze(1)}, 1);
        new_col = torch::cat({c_old, r_cur});
      }
    }
    store_block(b, live, new_rows, new_col, cur.slice(1, 0, n).diagonal());
    return true;
  }

  // Writes block b's values: new_rows (n, live) its rows against every live column block,
  // new_col (live*n) every live row against its columns, pair (n) its pairs' scores.
  void store_block(int64_t b, int64_t live, const torch::Tensor& new_rows, const torch::Tensor& new_col,
                   const torch::Tensor& pair) {
    const auto n = n_;
    pairs_.slice(0, b * n, (b + 1) * n).copy_(pair);
    table_.slice(0, b * n, (b + 1) * n).slice(1, 0, live).copy_(new_rows);
    table_.slice(0, b * n, (b + 1) * n).slice(1, live).fill_(-inf());
    table_.slice(0, 0, live * n).select(1, b).copy_(new_col);
    // groups: every group of the new rows; the group of column b for every live row.
    const auto blocks = table_.size(1), g = group_size_, ng = groups_.size(1);
    auto row_part = table_.slice(0, b * n, (b + 1) * n);  // (n, blocks)
    if (blocks % g == 0) {
      groups_.slice(0, b * n, (b + 1) * n).copy_(torch::logsumexp(row_part.view({n, ng, g}), 2));
    } else {
      for (int64_t j = 0; j < ng; ++j)
        groups_.slice(0, b * n, (b + 1) * n)
            .select(1, j)
            .copy_(torch::logsumexp(row_part.slice(1, j * g, std::min(blocks, (j + 1) * g)), 1));
    }
    const auto j = b / g;
    groups_.slice(0, 0, live * n)
        .select(1, j)
        .copy_(torch::logsumexp(table_.slice(0, 0, live * n).slice(1, j * g, std::min(blocks, (j + 1) * g)), 1));
  }

public:
  /// \brief Saves the tables as they are (an incremental cache rebuilt from scratch would
  ///        differ in the last bits, and resume is bit for bit).
  void save_state(StateDict& s, const std::string& prefix) const {
    s.put(prefix + "pairs", pairs_);
    s.put(prefix + "table", table_);
    s.put(prefix + "groups", groups_);
    s.set(prefix + "group_size", group_size_);
    s.set(prefix + "reused", reused_);
    s.set(prefix + "block_rows", n_);
    s.set(prefix + "fixed_block_rows", block_);
    s.set(prefix + "status", why_);
    s.set(prefix + "valid", valid_);
    s.set(prefix + "stale", stale_);
    s.set(prefix + "just_built", just_built_);
  }
  /// \brief Restores saved tables; `rows` is the ring of the cache's rows (shapes checked).
  void load_state(const StateReader& r, const std::string& prefix, int64_t ring_rows) {
    auto optional = [&](const char* k) { return r.has_tensor(prefix + k) ? r.tensor(prefix + k) : torch::Tensor{}; };
    auto pairs = optional("pairs"), table = optional("table"), groups = optional("groups");
    for (const auto& [k, t] : {std::pair{"pairs", pairs}, {"table", table}, {"groups", groups}})
      if (t.defined() && (t.dim() == 0 || t.size(0) > ring_rows))
        r.fail(prefix + k, "has ", t.dim() ? t.size(0) : 0, " rows but the bank holds at most ", ring_rows);
    const auto group_size = r.value<int64_t>(prefix + "group_size");
    const auto reused = r.value<int64_t>(prefix + "reused");
    const auto n = r.value<int64_t>(prefix + "block_rows");
    const auto block = r.value<int64_t>(prefix + "fixed_block_rows");
    auto why = r.value<std::string>(prefix + "status");
    const auto valid = r.value<bool>(prefix + "valid"), stale = r.value<bool>(prefix + "stale"),
               just_built = r.value<bool>(prefix + "just_built");
    if (group_size < 1) r.fail(prefix + "group_size", "is ", group_size, " (must be >= 1)");
    pairs_ = r.placed(pairs);
    table_ = r.placed(table);
    groups_ = r.placed(groups);
    group_size_ = group_size;
    reused_ = reused;
    n_ = n;
    block_ = block;
    why_ = std::move(why);
    valid_ = valid;
    stale_ = stale;
    just_built_ = just_built;
  }

private:
  torch::Tensor pairs_;   // (R): score of row slot i with slot i of the first column ring
  torch::Tensor table_;   // (R, B)
  torch::Tensor groups_;  // (R, ceil(B / g))
  int64_t group_size_ = 1;
  int64_t reused_ = 0;
  int64_t n_ = 0;      // rows per block, fixed by set_block_rows or the first push
  int64_t block_ = 0;  // the block set_block_rows fixed (survives reset)
  std::string why_;    // why the cache turned itself off
  bool valid_ = true;
  bool stale_ = false;
  bool just_built_ = false;
};

}  // namespace contaccum
