#pragma once
/// \file
/// \brief Predicted peak memory of one training step (one micro-batch of N_local pairs:
///        GradAccum with micro_batch_size = N_local, AdamW), on the CPU in float32 with
///        LibTorch, from a model *shape* (BertConfig or GptNeoxConfig) and an adapter
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
/// The step is replayed as a timeline: forward through the query tower, the passage tower
/// (N_local (1 + m) rows) and the loss; backward in reverse (the passage tower first, as
/// autograd orders it), each op allocating its parameters' gradients and releasing what it
/// kept; then the gradient norms and the AdamW update, tensor by tensor, whose temporaries
/// are the size of the tensor at hand (a double copy for the norm; sqrt and a division in
/// AdamW, which also creates its states there on the first step).
/// tests/unit/test_budgets.cpp holds the prediction to 15% of the measured peak for Bert and
/// GptNeox shapes under every method; docs/budgets.md has the table.
///
/// Not modelled: memory outside LibTorch's CPU allocator, CUDA's caching allocator, dtypes
/// other than float32, strategies other than GradAccum with one micro-batch (GradCache and
/// ContAccum add their caches and banks).

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
struct StepMemoryShape {
  int64_t micro_batch_size = 8;  ///< N_local: pairs per forward/backward
  int64_t query_length = 32;     ///< Tq: tokens per query row, padding included
  int64_t passage_length = 128;  ///< Tp: tokens per passage row (positives and hard negatives), padding included
  int64_t hard_negatives = 0;    ///< m per query: the passage tower runs N_local (1 + m) rows
  bool shared_tower = false;     ///< SharedTower: one encoder; SeparateTowers: two
  PoolingRetention pooling = PoolingRetention::rows_only;  ///< pooling_retention<Pooler>
  bool first_step = false;  ///< the first optimizer step: AdamW's states do not exist before its update

  /// \brief Throws invalid_input naming the field that is out of range.
  void validate() const {
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
                                           int64_t first_trainable_block) {
  constexpr bool neox = std::same_as<Config, GptNeoxConfig>;
  const bool frozen_prefix = first_trainable_block >= 0;
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
    const bool recording = !frozen_prefix || l >= first_trainable_block;
    bool out_rg = false;
    if constexpr (neox) seg = walk_gpt_neox_block(b, c, recording, rg, out_rg);
    else seg = walk_bert_block(b, recording, rg, out_rg);
    set_gradients(seg, [l](const ParameterEntry& p) { return p.block == l; });
    out.push_back(seg);
    rg = out_rg;
  }

  // Head: GptNeox's final LayerNorm, then the pooling; the pooled (rows, d) embeddings
  // stay referenced until backward ends.
  segment_trace head(true);
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
  return out;
}

struct timeline_result {
  int64_t forward = 0, backward = 0, optimizer = 0;
  int64_t saved_at_end_of_forward = 0;
};

// The gradient norms and the AdamW update, from `held` (parameters, inputs, gradients
// and, after the first step, AdamW's states). The Trainer's gradient norm copies one
// gradient at a time to double (8 bytes per number); AdamW, tensor by tensor in `order`,
// creates its two states on the first step and computes sqrt(exp_avg_sq) / c (two
// float temporaries).
inline int64_t optimizer_peak(int64_t held, const std::vector<int64_t>& order, bool first_step) {
  int64_t peak = held, states = 0;
  for (const auto n : order) {
    peak = std::max(peak, held + 2 * float_bytes * n);  // gradient norm
    if (first_step) states += 2 * float_bytes * n;
    peak = std::max(peak, held + states + 2 * float_bytes * n);  // AdamW
  }
  return peak;
}

// Forward through `segments`, backward in reverse, then the update. `base` is held
// throughout; AdamW's states from the start, or from the update on the first step.
inline timeline_result replay_step(const std::vector<memory_segment>& segments, int64_t base, int64_t optimizer_states,
                                   bool first_step, const std::vector<int64_t>& optimizer_tensors) {
  timeline_result r;
  const int64_t start = base + (first_step ? 0 : optimizer_states);
  int64_t held = start;
  for (const auto& s : segments) {
    r.forward = std::max(r.forward, held + s.saved + s.forward_extra);
    held += s.saved + s.held_to_end;
  }
  r.saved_at_end_of_forward = held - start;
  for (auto s = segments.rbegin(); s != segments.rend(); ++s) {
    held += s->gradients;
    r.backward = std::max(r.backward, held + s->backward_extra);
    held -= s->saved;
  }
  for (const auto& s : segments) held -= s.held_to_end;
  r.optimizer = optimizer_peak(held, optimizer_tensors, first_step);
  return r;
}

template <class Config, CostedAdapter A>
MemoryEstimate predict_step_memory_impl(const Config& c, const A& adapter, const StepMemoryShape& shape) {
  shape.validate();
  const auto inv = adapted_inventory(c, adapter);
  const int64_t first_trainable = inv.first_trainable_layer.value_or(-1);  // BlockFreeze: L - k
  const int64_t towers = shape.shared_tower ? 1 : 2;
  const int64_t n = shape.micro_batch_size, passages = n * (1 + shape.hard_negatives);

  MemoryEstimate e;
  e.parameters = towers * all_parameters(inv) * float_bytes;
  e.gradients = towers * parameters_with_gradient(inv) * float_bytes;
  e.optimizer_states = 2 * e.gradients;
  // ids and masks (int64) of queries, positives and hard negatives; with hard negatives the
  // passage tower reads a concatenated copy of positives and negatives.
  const int64_t passage_tokens = passages * shape.passage_length;
  e.inputs = 16 * (n * shape.query_length + passage_tokens) + (shape.hard_negatives > 0 ? 16 * passage_tokens : 0);

  auto segments = tower_segments(c, inv, n, shape.query_length, shape, first_trainable);
  if (shape.shared_tower) {
    // One set of parameters: the passage tower's backward (it runs first) allocates the
    // gradients; the query tower's arrive one tensor at a time, added in place.
    for (auto& s : segments) {
      s.backward_extra += s.largest_gradient;
      s.gradients = 0;
    }
  }
  const auto passage = tower_segments(c, inv, passages, shape.passage_length, shape, first_trainable);
  segments.insert(segments.end(), passage.begin(), passage.end());
  // The loss: the score matrix (N_local, N_local (1 + m)) and its log-softmax.
  const int64_t scores = n * passages * float_bytes;
  segments.push_back({.saved = 2 * scores, .forward_extra = scores, .backward_extra = 2 * scores});

  const auto r = replay_step(segments, e.parameters + e.inputs, e.optimizer_states, shape.first_step,
                             optimizer_order(inv, towers));
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
///        shape (float32, CPU, GradAccum with one micro-batch): see the file comment.
///
/// \code
/// contaccum::StepMemoryShape shape{.micro_batch_size = 32, .query_length = 32, .passage_length = 128,
///                                  .shared_tower = true,
///                                  .pooling = contaccum::pooling_retention<contaccum::MeanPooling>};
/// auto e = contaccum::predict_step_memory(pythia_70m, contaccum::LoRA{.rank = 8}, shape);
/// std::cout << e.peak / (1 << 20) << " MiB, peak in " << e.peak_phase << "\n";
/// \endcode
template <class Config, CostedAdapter A>
  requires std::same_as<Config, BertConfig> || std::same_as<Config, GptNeoxConfig>
[[nodiscard]] MemoryEstimate predict_step_memory(const Config& model, const A& adapter, const StepMemoryShape& shape) {
  return detail::predict_step_memory_impl(model, adapter, shape);
}

/// \brief The largest N_local (micro_batch_size) whose predicted step peak fits in
///        `budget_bytes`, searched over 1..max_micro_batch (shape.micro_batch_size is
///        ignored). Throws invalid_input when not even N_local = 1 fits; the message gives
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
