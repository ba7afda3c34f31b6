#pragma once
/// \file
/// \brief Predicted peak memory of one training step of any of the strategies (FullBatch,
///        GradAccum and ContAccum over K micro-batches of N_local pairs, GradCache and
///        ContAccum over GradCache over K chunks; AdamW), on the CPU in float32 with LibTorch, from a model *shape* (BertConfig or GptNeoxConfig) and an adapter
///        (FullFineTune, BlockFreeze, LoRA, BiasOnly, or any CostedAdapter:
///        compute/adapter_cost.hpp); and the largest N_local that fits a memory budget.
///
/// The prediction is what MemoryMeter measures (StepStats::peak_memory_bytes), the bytes
/// of tensors held at the step's high-water mark:
///   * parameters: every tensor of every tower (embeddings, GptNeox's LM head, LoRA's A, B);
///   * gradients of the trainable parameters the forward pass reaches (not the LM head);
///   * AdamW's exp_avg and exp_avg_sq for each of those (from the second step on);
///   * the batch's token ids and masks;
///   * what autograd keeps for backward, walked op by op (compute/detail/activation_walk.hpp):
///     only blocks that record a graph keep anything, so BlockFreeze's frozen prefix (run
///     under NoGradGuard) keeps nothing; a frozen linear layer keeps no input, so LoRA and
///     bias-only keep less per block than full fine-tuning;
///   * the temporaries of the moment.
/// The step is replayed as a timeline. A micro-batch runs forward through the query tower,
/// the passage tower (N_local (1 + m) rows) and the loss, then backward in reverse (the
/// passage tower first, as autograd orders it), each op allocating its parameters'
/// gradients, or from the second micro-batch on adding a temporary into them, and releasing
/// what it kept. GradCache first encodes every chunk without a graph (keeping its embeddings:
/// under ClsPooling a view that keeps the chunk's last hidden states), scores the
/// concatenation of all N_total rows, keeps the gradient of each embedding, then replays each
/// chunk with its graph. ContAccum adds its rings (N_memory rows each, N_memory m for hard
/// negatives), the score cache's tables (N_memory x (blocks + groups + 1) floats), the
/// scores against the banked rows (which the bank's score record keeps until the enqueue) and
/// the step's undo record (a copy of every row an enqueue overwrites). Then come the gradient
/// norms and the AdamW update, tensor by tensor, whose temporaries are the size of the tensor
/// at hand (a double copy for the norm; sqrt and a division in AdamW, which also creates its
/// states there on the first step). With activation recompute (`shape.recompute`) a trained
/// block keeps only its input through the forward and is walked again, with its graph, when
/// the backward reaches it.
/// tests/unit/test_budgets.cpp holds the prediction to 15% of the measured peak for Bert and
/// GptNeox shapes under every method and every strategy; docs/budgets.md has the tables.
///
/// A bank stored in bf16/fp16 (`bank_element_bytes` 2, BankConfig::storage_dtype) holds half
/// the rings, and the loss reads them back as fp32 copies, which it keeps for its backward.
///
/// Not modelled: memory outside LibTorch's CPU allocator, CUDA's caching allocator, dtypes
/// other than float32 (bf16/fp16 autocast), similarities that copy the
/// banked rows (Cosine normalises them: one more copy of each ring during the loss), the
/// symmetric loss's second score cache, and token-budget chunking (MicroBatching::max_tokens).

#include <contaccum/compute/adapter_cost.hpp>
#include <contaccum/compute/detail/activation_walk.hpp>
#include <contaccum/compute/detail/parameter_inventory.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/bert.hpp>
#include <contaccum/encoders/gpt_neox.hpp>
#include <contaccum/pooling/cls.hpp>
#include <contaccum/pooling/last_token.hpp>
#include <contaccum/pooling/max.hpp>
#include <contaccum/pooling/mean.hpp>
#include <contaccum/pooling/normalized.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// \brief What a pooler keeps of the (rows, T, d) hidden states it reads.
enum class PoolingRetention {
  rows_only,       ///< MeanPooling: its (rows, d) result and the (rows, T) mask
  until_backward,  ///< LastTokenPooling (gather), MaxPooling (amax): autograd keeps a (rows, T, d) tensor
  whole_step,      ///< ClsPooling: the embeddings are views of the hidden states, referenced until backward ends
};

/// \brief The PoolingRetention of pooler P.
template <class P>
inline constexpr PoolingRetention pooling_retention = PoolingRetention::rows_only;
template <>
inline constexpr PoolingRetention pooling_retention<ClsPooling> = PoolingRetention::whole_step;
template <>
inline constexpr PoolingRetention pooling_retention<LastTokenPooling> = PoolingRetention::until_backward;
template <>
inline constexpr PoolingRetention pooling_retention<MaxPooling> = PoolingRetention::until_backward;
template <class P>
inline constexpr PoolingRetention pooling_retention<Normalized<P>> = pooling_retention<P>;

/// \brief The micro-batch of one training step and how the bi-encoder is laid out.
/// \brief How a strategy runs a step, for the memory model (strategy/strategies.hpp).
enum class MemoryStrategy {
  grad_accum,                  ///< GradAccum: K micro-batches, each its own loss and backward (FullBatch: K = 1)
  grad_cache,                  ///< GradCache: K chunks encoded without a graph, one N_total-row loss, K replays
  cont_accum,                  ///< ContAccum: GradAccum's micro-batches scored against the dual bank too
  cont_accum_over_grad_cache,  ///< ContAccumOverGradCache: GradCache's step scored against the dual bank too
};

/// \brief The MemoryStrategy of a strategy type: `memory_strategy<GradCache<>>`.
template <class S>
inline constexpr MemoryStrategy memory_strategy = [] {
  using Sched = typename S::schedule_type;
  using Pool = typename S::pool_type;
  constexpr bool cached = Sched::whole_step;
  constexpr bool banked = requires(const Pool& p) { p.bank(); };
  if constexpr (banked) return cached ? MemoryStrategy::cont_accum_over_grad_cache : MemoryStrategy::cont_accum;
  else return cached ? MemoryStrategy::grad_cache : MemoryStrategy::grad_accum;
}();

struct StepMemoryShape {
  int64_t micro_batch_size = 8;  ///< N_local: pairs per forward/backward
  int64_t query_length = 32;     ///< Tq: tokens per query row, padding included
  int64_t passage_length = 128;  ///< Tp: tokens per passage row (positives and hard negatives), padding included
  int64_t hard_negatives = 0;    ///< m per query: the passage tower runs N_local (1 + m) rows
  bool shared_tower = false;     ///< SharedTower: one encoder; SeparateTowers: two
  PoolingRetention pooling = PoolingRetention::rows_only;  ///< pooling_retention<Pooler>
  bool first_step = false;  ///< the first optimizer step: AdamW's states do not exist before its update
  MemoryStrategy strategy = MemoryStrategy::grad_accum;  ///< memory_strategy<S> of the Trainer's strategy
  int64_t micro_batches = 1;  ///< K per optimizer step: N_total = K N_local (FullBatch: K = 1, N_local = N_total)
  int64_t step_pairs = 0;     ///< N_total when fixed (then K = ceil(N_total / N_local), micro_batches is ignored);
                              ///< 0 = micro_batches x micro_batch_size. Set it to ask largest_micro_batch for
                              ///< GradCache's chunk at a given N_total.
  int64_t bank_capacity = 0;  ///< ContAccum: N_memory, vectors in the query and positive banks (BankConfig::capacity)
  bool bank_hard_negatives = true;  ///< ContAccum: BankConfig::hard_negative_bank
  bool bank_queries = true;         ///< ContAccum: BankConfig::query_bank
  bool score_cache = true;          ///< ContAccum: BankConfig::cache_scores
  int64_t bank_element_bytes = 4;   ///< ContAccum: bytes per banked value, 2 for BankConfig::storage_dtype bf16/fp16
  bool recompute = false;  ///< activation recompute: the encoders' set_gradient_checkpointing(true)

  [[nodiscard]] bool banked() const {
    return strategy == MemoryStrategy::cont_accum || strategy == MemoryStrategy::cont_accum_over_grad_cache;
  }
  [[nodiscard]] bool cached_replay() const {
    return strategy == MemoryStrategy::grad_cache || strategy == MemoryStrategy::cont_accum_over_grad_cache;
  }

  /// \brief Throws invalid_input naming the field that is out of range.
  void validate() const {
    detail::require(micro_batches > 0, "StepMemoryShape.micro_batches must be positive, got ", micro_batches);
    detail::require(step_pairs >= 0, "StepMemoryShape.step_pairs must be >= 0, got ", step_pairs);
    detail::require(bank_capacity >= 0, "StepMemoryShape.bank_capacity must be >= 0, got ", bank_capacity);
    detail::require(bank_element_bytes == 2 || bank_element_bytes == 4 || bank_element_bytes == 8,
                    "StepMemoryShape.bank_element_bytes must be 2 (bf16/fp16), 4 (fp32) or 8 (fp64), got ",
                    bank_element_bytes);
    detail::require(!banked() || bank_capacity > 0,
                    "StepMemoryShape.bank_capacity must be positive for ContAccum (the bank's N_memory)");
    detail::require(micro_batch_size > 0, "StepMemoryShape.micro_batch_size must be positive, got ", micro_batch_size);
    detail::require(query_length > 0, "StepMemoryShape.query_length must be positive, got ", query_length);
    detail::require(passage_length > 0, "StepMemoryShape.passage_length must be positive, got ", passage_length);
    detail::require(hard_negatives >= 0, "StepMemoryShape.hard_negatives must be >= 0, got ", hard_negatives);
  }
};

/// \brief A predicted step, in bytes.
struct MemoryEstimate {
  int64_t parameters = 0;        ///< every parameter of the model
  int64_t gradients = 0;         ///< gradients of the trained parameters (all of them, after backward)
  int64_t optimizer_states = 0;  ///< AdamW's two moments
  int64_t inputs = 0;            ///< token ids and attention masks
  int64_t activations = 0;       ///< kept for backward at the end of forward, both towers and the loss
  int64_t forward_peak = 0;      ///< high-water mark during the forward passes and the loss
  int64_t backward_peak = 0;     ///< during backward
  int64_t optimizer_peak = 0;    ///< during the gradient norms and the AdamW update
  int64_t peak = 0;              ///< the step's high-water mark: the largest of the three
  std::string_view peak_phase;   ///< "forward", "backward" or "optimizer"
};

namespace detail {

// One tower running `rows` sequences of `length` tokens: the embeddings, the blocks, then
// the head (GptNeox's final LayerNorm, the pooling). `first_trainable_block` >= 0: the
// embeddings and blocks below it run without a graph (BlockFreeze).
template <class Config>
std::vector<memory_segment> tower_segments(const Config& c, const ParameterInventory& inv, int64_t rows,
                                           int64_t length, const StepMemoryShape& shape,
                                           int64_t first_trainable_block, bool graph = true) {
  constexpr bool neox = std::same_as<Config, GptNeoxConfig>;
  // graph = false: GradCache's first pass (NoGradGuard) records nothing anywhere
  const bool frozen_prefix = first_trainable_block >= 0 || !graph;
  const int64_t x = rows * length * inv.hidden * float_bytes, stats = 2 * rows * length * float_bytes;
  // The gradients a segment's backward allocates: total and largest tensor.
  auto set_gradients = [&](memory_segment& seg, auto select) {
    for (const auto& p : inv.params) {
      if (!p.trainable || on_lm_head(p) || !select(p)) continue;
      seg.gradients += p.numel * float_bytes;
      seg.largest_gradient = std::max(seg.largest_gradient, p.numel * float_bytes);
    }
  };
  std::vector<memory_segment> out;

  // Embeddings: the lookups (and, for Bert, their LayerNorm and dropout).
  segment_trace emb(!frozen_prefix);
  bool rg = false;
  const auto emb_out = std::string("embeddings.out");
  if constexpr (neox) {
    rg = inv.trains("gpt_neox.embed_in.weight");
    emb.alive("embed_in", x);
    if (c.hidden_dropout > 0) {
      if (rg) emb.keep("emb_dropout.mask", x);
      emb.alive(emb_out, x);
      emb.dead("embed_in");
    }
    if (rg) emb.backward_moment(x);
  } else {
    const bool tables = inv.trains("embeddings.word_embeddings.weight");
    const bool norm = inv.trains("embeddings.LayerNorm.weight") || inv.trains("embeddings.LayerNorm.bias");
    emb.alive("token_type_ids", rows * length * 8);  // zeros_like(ids), int64
    if (tables) emb.keep("token_type_ids", rows * length * 8);
    // word + position + token type: four (B, T, d) tensors at the second sum
    emb.alive("word", x);
    emb.alive("word_plus_position", x);
    emb.alive("token_type", x);
    emb.alive("sum", x);
    for (const char* id : {"word", "word_plus_position", "token_type", "token_type_ids"}) emb.dead(id);
    rg = tables || norm;
    if (rg) {
      emb.keep("sum", x);
      emb.keep("LayerNorm.stats", stats);
    }
    emb.alive("LayerNorm.out", x);
    if (rg) emb.backward_moment(2 * x);
    if (c.hidden_dropout_prob > 0) {
      if (rg) emb.keep("dropout.mask", x);
      emb.alive(emb_out, x);
      emb.dead("LayerNorm.out");
    }
    emb.dead("sum");
  }
  auto seg = emb.segment();
  set_gradients(seg, [](const ParameterEntry& p) { return p.block < 0 && !p.path.starts_with("gpt_neox.final"); });
  out.push_back(seg);
  rg = rg && !frozen_prefix;

  // Blocks.
  block_context b{.inv = &inv, .rows = rows, .length = length};
  if constexpr (neox) {
    b.attention_dropout = c.attention_dropout;
    b.hidden_dropout = c.hidden_dropout;
  } else {
    b.attention_dropout = c.attention_probs_dropout_prob;
    b.hidden_dropout = c.hidden_dropout_prob;
  }
  for (int64_t l = 0; l < inv.layers; ++l) {
    b.prefix = (neox ? "gpt_neox.layers." : "encoder.layer.") + std::to_string(l) + ".";
    const bool recording = graph && (!frozen_prefix || l >= first_trainable_block);
    bool out_rg = false;
    if constexpr (neox) seg = walk_gpt_neox_block(b, c, recording, rg, out_rg);
    else seg = walk_bert_block(b, recording, rg, out_rg);
    if (shape.recompute && recording) {
      // Activation recompute (encoders/recompute.hpp): the forward runs the block without
      // a graph and keeps only its input; its backward runs it again with the graph (the
      // incoming gradient waiting) and backpropagates through that.
      bool unused = false;
      memory_segment light;
      if constexpr (neox) light = walk_gpt_neox_block(b, c, false, rg, unused);
      else light = walk_bert_block(b, false, rg, unused);
      const auto in = b.hidden_bytes();
      const auto full = seg;
      seg.saved = in;
      seg.forward_extra = light.forward_extra - in;
      seg.backward_extra = full.saved + std::max(full.forward_extra + in, full.backward_extra) - in;
    }
    set_gradients(seg, [l](const ParameterEntry& p) { return p.block == l; });
    out.push_back(seg);
    rg = out_rg;
  }

  // Head: GptNeox's final LayerNorm, then the pooling; the pooled (rows, d) embeddings
  // stay referenced until backward ends.
  segment_trace head(graph);
  head.alive("last_block.out", x);
  std::string hidden = "last_block.out";
  if constexpr (neox) {
    const bool norm = inv.trains("gpt_neox.final_layer_norm.weight") || inv.trains("gpt_neox.final_layer_norm.bias");
    if (rg || norm) {
      head.keep("last_block.out", x);
      head.keep("final_layer_norm.stats", stats);
    }
    head.alive("hidden", x);
    head.dead("last_block.out");
    hidden = "hidden";
    if (rg || norm) head.backward_moment(2 * x);  // its incoming and outgoing gradients
    rg = rg || norm;
  }
  if (shape.pooling == PoolingRetention::until_backward) head.keep(hidden, x);
  if (shape.pooling == PoolingRetention::rows_only) head.keep("mask", rows * length * float_bytes);
  head.alive("pooled", rows * inv.hidden * float_bytes);
  head.backward_moment(x + rows * inv.hidden * float_bytes);  // the hidden states' gradient (zeros + pooled rows)
  head.dead(hidden);
  seg = head.segment();
  seg.held_to_end = shape.pooling == PoolingRetention::whole_step ? x : rows * inv.hidden * float_bytes;
  set_gradients(seg, [](const ParameterEntry& p) { return p.path.starts_with("gpt_neox.final_layer_norm"); });
  out.push_back(seg);
  if (!graph)
    for (auto& s : out) s.gradients = s.largest_gradient = 0;
  return out;
}

struct timeline_result {
  int64_t forward = 0, backward = 0, optimizer = 0;
  int64_t saved_at_end_of_forward = -1;  // of the first unit with a graph
};

inline int64_t optimizer_peak(int64_t held, const std::vector<int64_t>& order, bool first_step) {
  int64_t peak = held, states = 0;
  for (const auto n : order) {
    peak = std::max(peak, held + 2 * float_bytes * n);  // gradient norm
    if (first_step) states += 2 * float_bytes * n;
    peak = std::max(peak, held + states + 2 * float_bytes * n);  // AdamW
  }
  return peak;
}

// Gradients that exist already (a shared tower's second side, a later micro-batch or
// replayed chunk) arrive one tensor at a time and are added in place.
inline void accumulate_into_existing(std::vector<memory_segment>& segments) {
  for (auto& s : segments) {
    s.backward_extra += s.largest_gradient;
    s.gradients = 0;
  }
}

// One forward and backward over `segments` starting from `held` bytes; returns what is
// held afterwards (the new parameter gradients).
inline int64_t replay_unit(const std::vector<memory_segment>& segments, int64_t held, timeline_result& r) {
  const int64_t start = held;
  for (const auto& s : segments) {
    r.forward = std::max(r.forward, held + s.saved + s.forward_extra);
    held += s.saved + s.held_to_end;
  }
  if (r.saved_at_end_of_forward < 0) r.saved_at_end_of_forward = held - start;
  for (auto s = segments.rbegin(); s != segments.rend(); ++s) {
    held += s->gradients;
    r.backward = std::max(r.backward, held + s->backward_extra);
    held -= s->saved;
  }
  for (const auto& s : segments) held -= s.held_to_end;
  return held;
}

// A forward without a graph (GradCache's first pass): returns the bytes it leaves (its embeddings).
inline int64_t forward_only(const std::vector<memory_segment>& segments, int64_t held, timeline_result& r) {
  int64_t left = 0;
  for (const auto& s : segments) {
    r.forward = std::max(r.forward, held + left + s.forward_extra);
    left += s.held_to_end;
  }
  return left;
}

// ContAccum's dual bank at one loss unit: rows per ring, and what the bank adds to memory.
struct bank_layout {
  int64_t queries = 0, positives = 0, hard_negatives = 0;  // capacity in rows
  int64_t widened_row = 0;  // bytes of a banked row as the loss reads it, when stored narrower (else 0: a view)
  int64_t storage = 0;      // bytes of the three rings
  int64_t score_cache = 0;  // bytes of the query score cache's tables
  int64_t undo = 0;         // bytes one enqueue adds to the step's undo record

  // Rows filled before loss unit `unit` (each enqueues `per_unit` pairs).
  [[nodiscard]] std::array<int64_t, 3> filled(int64_t unit, int64_t per_unit, int64_t m, bool first_step) const {
    auto fill = [&](int64_t capacity, int64_t per) { return first_step ? std::min(capacity, unit * per) : capacity; };
    return {fill(queries, per_unit), fill(positives, per_unit), fill(hard_negatives, per_unit * m)};
  }
};

inline bank_layout bank_of(const StepMemoryShape& shape, int64_t row_bytes, int64_t per_unit) {
  bank_layout b;
  if (!shape.banked()) return b;
  const auto m = shape.hard_negatives, cap = shape.bank_capacity;
  b.queries = shape.bank_queries ? cap : 0;
  b.positives = cap;
  b.hard_negatives = shape.bank_hard_negatives && m > 0 ? cap * m : 0;
  // rows stored in bank_element_bytes per value; narrower rows are read back as copies of the embeddings' type
  const int64_t stored_row = row_bytes / float_bytes * shape.bank_element_bytes;
  b.widened_row = stored_row < row_bytes ? row_bytes : 0;
  b.storage = (b.queries + b.positives + b.hard_negatives) * stored_row;
  // every push inside a step clones the rows it overwrites (kept until the step commits)
  b.undo = ((b.queries > 0 ? 1 : 0) + 1 + (b.hard_negatives > 0 ? m : 0)) * per_unit * stored_row;
  if (shape.score_cache && b.queries > 0) {
    // per banked query: a log-sum-exp per block of passages, per group of blocks, and its pair score
    const auto blocks = std::max<int64_t>(1, cap / per_unit);
    const auto group = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(blocks)))));
    b.score_cache = cap * (blocks + (blocks + group - 1) / group + 1) * float_bytes;
  }
  return b;
}

// The loss over `rows` pairs (their N (1 + m) passages) and the filled bank rows: the
// query-passage scores, and the banked queries against the current passages. `recorded`:
// a score-caching bank is handed the scores (detached), which keeps them until the
// enqueue after the backward. `widened_row`: bytes of a banked row read back from a
// narrower storage dtype (those copies are the loss's inputs, saved for its backward).
inline memory_segment loss_segment(int64_t rows, int64_t m, const std::array<int64_t, 3>& bank, bool recorded,
                                   int64_t widened_row = 0) {
  const int64_t passages = rows * (1 + m);
  const int64_t scores = (rows * (passages + bank[1] + bank[2]) + bank[0] * passages) * float_bytes;
  const int64_t widened = (bank[0] + bank[1] + bank[2]) * widened_row;
  return {.saved = (recorded ? 1 : 2) * scores + widened, .held_to_end = recorded ? scores : 0,
          .forward_extra = scores, .backward_extra = 2 * scores};
}

template <class Config, CostedAdapter A>
MemoryEstimate predict_step_memory_impl(const Config& c, const A& adapter, const StepMemoryShape& shape) {
  shape.validate();
  const auto inv = adapted_inventory(c, adapter);
  const int64_t first_trainable = inv.first_trainable_layer.value_or(-1);  // BlockFreeze: L - k
  const int64_t towers = shape.shared_tower ? 1 : 2;
  const int64_t n = shape.step_pairs > 0 ? std::min(shape.micro_batch_size, shape.step_pairs) : shape.micro_batch_size;
  const int64_t total = shape.step_pairs > 0 ? shape.step_pairs : n * shape.micro_batches;
  const int64_t k = (total + n - 1) / n, m = shape.hard_negatives;  // a last, smaller chunk counts as a full one
  const int64_t row_bytes = inv.hidden * float_bytes;  // one embedding
  const bool cached = shape.cached_replay();

  MemoryEstimate e;
  e.parameters = towers * all_parameters(inv) * float_bytes;
  e.gradients = towers * parameters_with_gradient(inv) * float_bytes;
  e.optimizer_states = 2 * e.gradients;
  // ids and masks (int64) of the step's queries, positives and hard negatives; with hard
  // negatives each forward of the passage tower reads a concatenated copy of its rows.
  e.inputs = 16 * total * (shape.query_length + (1 + m) * shape.passage_length) +
             (m > 0 ? 16 * n * (1 + m) * shape.passage_length : 0);

  // Both towers over one forward's n pairs: the query tower, then the passage tower.
  auto towers_of = [&](int64_t rows, bool graph) {
    auto segments = tower_segments(c, inv, rows, shape.query_length, shape, first_trainable, graph);
    // One set of parameters: the passage tower's backward (it runs first) allocates the
    // gradients; the query tower's arrive one tensor at a time, added in place.
    if (shape.shared_tower) accumulate_into_existing(segments);
    const auto passage = tower_segments(c, inv, rows * (1 + m), shape.passage_length, shape, first_trainable, graph);
    segments.insert(segments.end(), passage.begin(), passage.end());
    return segments;
  };

  const int64_t per_unit = cached ? total : n;  // pairs per loss unit (per enqueue)
  const auto bank = bank_of(shape, row_bytes, per_unit);
  const bool recorded = shape.banked() && shape.score_cache;
  timeline_result r;
  const int64_t start = e.parameters + e.inputs + (shape.first_step ? 0 : e.optimizer_states + bank.storage) +
                        (shape.first_step ? 0 : bank.score_cache);
  int64_t held = start;
  if (!cached) {
    // GradAccum / ContAccum: K micro-batches, each encoded with its graph, scored, backward.
    for (int64_t j = 0; j < k; ++j) {
      if (shape.first_step && j == 1) held += bank.storage + bank.score_cache;  // allocated by the first enqueue
      auto segments = towers_of(n, true);
      segments.push_back(
          loss_segment(n, m, bank.filled(j, per_unit, m, shape.first_step), recorded, bank.widened_row));
      if (j > 0) accumulate_into_existing(segments);
      held = replay_unit(segments, held, r) + bank.undo;
    }
  } else {
    // GradCache: every chunk encoded without a graph, its embeddings kept as leaves (a
    // view of the last hidden states under CLS pooling); the loss over all N_total pairs on
    // their concatenation, leaving a gradient per leaf; then each chunk replayed with its
    // graph and backpropagated from those gradients.
    int64_t leaves = 0;
    for (int64_t j = 0; j < k; ++j) leaves += forward_only(towers_of(n, false), held + leaves, r);
    held += leaves;
    const int64_t embeddings = total * (2 + m) * row_bytes;  // the concatenated q, p, h
    held += embeddings;
    auto loss = loss_segment(total, m, bank.filled(0, per_unit, m, shape.first_step), recorded, bank.widened_row);
    loss.backward_extra += 2 * embeddings;  // the gradients of the concatenation, then of the leaves
    // the leaves' gradients and the bank's score record stay through the replay
    held = replay_unit(std::vector<memory_segment>{loss}, held, r) + embeddings + loss.held_to_end;
    for (int64_t j = 0; j < k; ++j) {
      auto segments = towers_of(n, true);
      if (j > 0) accumulate_into_existing(segments);
      held = replay_unit(segments, held, r);
    }
    if (shape.first_step) held += bank.storage + bank.score_cache;  // the first enqueue, after the replay
    held += bank.undo - leaves - 2 * embeddings - loss.held_to_end;
  }
  r.optimizer = optimizer_peak(held, optimizer_order(inv, towers), shape.first_step);
  e.activations = r.saved_at_end_of_forward;
  e.forward_peak = r.forward;
  e.backward_peak = r.backward;
  e.optimizer_peak = r.optimizer;
  e.peak = std::max({r.forward, r.backward, r.optimizer});
  e.peak_phase = e.peak == r.backward ? "backward" : e.peak == r.forward ? "forward" : "optimizer";
  return e;
}

}  // namespace detail

/// \brief Predicted memory of one training step of `adapter` on a bi-encoder of `model`'s
///        shape (float32, CPU, the strategy of shape.strategy): see the file comment.
///
/// \code
/// contaccum::StepMemoryShape shape{.micro_batch_size = 32, .query_length = 32, .passage_length = 128,
///                                  .shared_tower = true,
///                                  .pooling = contaccum::pooling_retention<contaccum::MeanPooling>};
/// auto e = contaccum::predict_step_memory(pythia_70m, contaccum::LoRA{.rank = 8}, shape);
/// std::cout << e.peak / (1 << 20) << " MiB, peak in " << e.peak_phase << "\n";
/// // ContAccum with K = 16 micro-batches and N_memory 8192:
/// shape.strategy = contaccum::memory_strategy<contaccum::ContAccum<>>;
/// shape.micro_batches = 16;
/// shape.bank_capacity = 8192;
/// \endcode
template <class Config, CostedAdapter A>
  requires std::same_as<Config, BertConfig> || std::same_as<Config, GptNeoxConfig>
[[nodiscard]] MemoryEstimate predict_step_memory(const Config& model, const A& adapter, const StepMemoryShape& shape) {
  return detail::predict_step_memory_impl(model, adapter, shape);
}

/// \brief The largest N_local (micro_batch_size) whose predicted step peak fits in
///        `budget_bytes`, searched over 1..max_micro_batch (shape.micro_batch_size is
///        ignored). With shape.step_pairs set the step stays N_total pairs (GradCache's chunk
///        size for a given N_total); otherwise the step is shape.micro_batches x N_local. Throws invalid_input when not even N_local = 1 fits; the message gives
///        the minimum memory, that of N_local = 1.
///
/// \code
/// auto n_local = contaccum::largest_micro_batch(int64_t{8} << 30, pythia_160m, contaccum::FullFineTune{}, shape);
/// \endcode
template <class Config, CostedAdapter A>
  requires std::same_as<Config, BertConfig> || std::same_as<Config, GptNeoxConfig>
[[nodiscard]] int64_t largest_micro_batch(int64_t budget_bytes, const Config& model, const A& adapter,
                                          StepMemoryShape shape, int64_t max_micro_batch = int64_t{1} << 20) {
  detail::require(budget_bytes > 0, "largest_micro_batch: budget_bytes must be positive, got ", budget_bytes);
  detail::require(max_micro_batch > 0, "largest_micro_batch: max_micro_batch must be positive, got ", max_micro_batch);
  if (shape.step_pairs > 0) max_micro_batch = std::min(max_micro_batch, shape.step_pairs);  // N_local <= N_total
  auto peak = [&](int64_t n) {
    shape.micro_batch_size = n;
    return predict_step_memory(model, adapter, shape).peak;
  };
  const auto minimum = peak(1);
  detail::require(minimum <= budget_bytes, "largest_micro_batch: a memory budget of ", budget_bytes, " bytes (",
                  static_cast<double>(budget_bytes) / (1 << 20), " MiB) is too small for one training step of ",
                  A::name, ": the minimum, for N_local = 1, is ", minimum, " bytes (",
                  static_cast<double>(minimum) / (1 << 20), " MiB)");
  // The peak grows with N_local: double until it no longer fits, then bisect.
  int64_t lo = 1, hi = 2;
  while (hi <= max_micro_batch && peak(hi) <= budget_bytes) {
    lo = hi;
    hi *= 2;
  }
  hi = std::min(hi, max_micro_batch + 1);  // peak(hi) > budget, or hi is past the search range
  while (hi - lo > 1) {
    const auto mid = lo + (hi - lo) / 2;
    (peak(mid) <= budget_bytes ? lo : hi) = mid;
  }
  return lo;
}

}  // namespace contaccum
