#pragma once
/// \file
/// \brief Private to memory_model.hpp: one forward and backward pass of a Bert or GptNeox
///        block, walked op by op as encoders/bert.hpp and encoders/gpt_neox.hpp run it on
///        the CPU in float32 under LibTorch's autograd, recording the memory held at each op.
///
/// What autograd keeps (checked against LibTorch 2.x with saved-tensor hooks and
/// MemoryMeter): a tensor is kept when a backward formula needs it, and only for the
/// inputs that need a gradient. A linear layer keeps its input only when its weight trains
/// (LoRA's A keeps it too); LayerNorm keeps its input and per-row mean and 1/std when
/// anything of it needs a gradient; GELU its input; dropout its scaled mask (float, the
/// input's size); softmax its output; masked_fill its boolean mask; batched matmul both
/// operands (a copy when an operand is a non-contiguous view that cannot be reshaped);
/// the CPU flash kernel of scaled_dot_product_attention q, k, v, its output, a
/// logsumexp per row and head, and the boolean mask converted to float. Views share their
/// base's storage, so a storage kept by several ops is counted once (the ids name storages).
///
/// Forward, a moment's memory is what is kept so far plus what the code still references
/// (locals, temporaries of the full-expression). Backward reaches the ops in reverse, each
/// releasing what it kept once it ran; a moment's memory is what the ops below it keep plus
/// the gradients alive then (the op's incoming and outgoing ones, residual gradients waiting
/// for their second half).

#include <contaccum/compute/detail/parameter_inventory.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

namespace contaccum::detail {

/// \brief float32.
inline constexpr int64_t float_bytes = 4;

/// \brief Memory of one stretch of the forward pass (the embeddings, a block, the head,
///        the loss), in bytes. `saved` is held from its forward until its backward (and
///        `held_to_end` until the whole backward is over); `forward_extra` and
///        `backward_extra` are its highest moments forward and backward minus `saved`;
///        `gradients` are the parameter gradients its backward allocates.
struct memory_segment {
  int64_t saved = 0;
  int64_t held_to_end = 0;
  int64_t forward_extra = 0;
  int64_t backward_extra = 0;
  int64_t gradients = 0;
  int64_t largest_gradient = 0;  ///< the largest single parameter gradient among `gradients`
};

/// \brief The memory moments of one segment, tensor by tensor.
class segment_trace {
public:
  explicit segment_trace(bool recording) : recording_(recording) {}

  /// \brief A tensor now exists (an op's output); records the forward moment.
  void alive(const std::string& id, int64_t bytes) {
    alive_[id] = bytes;
    forward_moment();
  }
  /// \brief The code no longer references `id` (autograd may still keep it).
  void dead(const std::string& id) { alive_.erase(id); }
  /// \brief Autograd keeps `id` for backward (nothing is kept when no graph is recorded).
  void keep(const std::string& id, int64_t bytes) {
    if (recording_) kept_.emplace(id, bytes);
  }
  [[nodiscard]] bool kept(const std::string& id) const { return kept_.contains(id); }
  [[nodiscard]] bool recording() const { return recording_; }

  /// \brief Records the memory now, plus `temporaries` the current op holds internally.
  void forward_moment(int64_t temporaries = 0) {
    int64_t now = temporaries;
    for (const auto& [id, b] : kept_) now += b;
    for (const auto& [id, b] : alive_)
      if (!kept_.contains(id)) now += b;
    forward_peak_ = std::max(forward_peak_, now);
  }
  /// \brief Backward at the op just walked: what is kept up to it, plus `gradients` alive.
  void backward_moment(int64_t gradients) {
    if (!recording_) return;
    backward_peak_ = std::max(backward_peak_, kept_bytes() + gradients);
  }

  [[nodiscard]] int64_t kept_bytes() const {
    int64_t t = 0;
    for (const auto& [id, b] : kept_) t += b;
    return t;
  }
  /// \brief The segment: kept bytes, and its highest moments relative to them.
  [[nodiscard]] memory_segment segment() const {
    const auto saved = kept_bytes();
    return {.saved = saved, .forward_extra = forward_peak_ - saved, .backward_extra = backward_peak_ - saved};
  }

private:
  bool recording_;
  std::map<std::string, int64_t> kept_, alive_;
  int64_t forward_peak_ = 0, backward_peak_ = 0;
};

/// \brief How one block runs: its parameters' trainability and its regularisation.
struct block_context {
  const ParameterInventory* inv = nullptr;
  std::string prefix;            ///< "encoder.layer.3." / "gpt_neox.layers.3."
  double attention_dropout = 0;  ///< > 0: the written-out attention (dropout on the probabilities)
  double hidden_dropout = 0;     ///< dropout on the sub-layer outputs
  int64_t rows = 0, length = 0;  ///< B sequences of T tokens

  [[nodiscard]] bool trains(const std::string& name) const { return inv->trains(prefix + name); }
  [[nodiscard]] int64_t tokens() const { return rows * length; }
  [[nodiscard]] int64_t width_bytes(int64_t width) const { return tokens() * width * float_bytes; }  // (B, T, width)
  [[nodiscard]] int64_t hidden_bytes() const { return width_bytes(inv->hidden); }
  [[nodiscard]] int64_t intermediate_bytes() const { return width_bytes(inv->intermediate); }
  [[nodiscard]] int64_t scores_bytes() const { return rows * inv->heads * length * length * float_bytes; }  // (B, h, T, T)
  [[nodiscard]] int64_t row_stat_bytes() const { return tokens() * float_bytes; }  // (B, T, 1)
};

/// \brief Linear layer `name` reads `input` (requires_grad `input_rg`) and makes `output`.
///        `pending`: gradients waiting elsewhere while its backward runs. Returns whether the
///        output needs a gradient.
inline bool walk_linear(const block_context& b, segment_trace& t, const std::string& name, const std::string& input,
                        bool input_rg, const std::string& output, int64_t pending) {
  const auto& l = b.inv->linear(b.prefix + name);
  const bool w = b.trains(name + ".weight"), bias = l.bias && b.trains(name + ".bias");
  const int64_t in = b.width_bytes(l.in), out = b.width_bytes(l.out);
  const bool lora = l.lora_rank > 0;
  if (w) t.keep(input, in);  // addmm keeps mat1 for the weight's gradient
  if (lora) {
    if (l.lora_dropout > 0) {
      t.keep(b.prefix + name + ".lora_dropout_mask", in);
      t.keep(b.prefix + name + ".lora_dropout_out", in);  // lora_A's input
    } else {
      t.keep(input, in);  // lora_A's input
    }
    t.keep(b.prefix + name + ".lora_A_out", b.width_bytes(l.lora_rank));  // lora_B's input
  }
  t.alive(output, out);
  // LoRA: y + lora_B(lora_A(x)) * scaling holds y, B A x and its scaled copy beside the sum.
  if (lora) t.forward_moment(3 * out);
  const bool out_rg = input_rg || w || bias || lora;
  // Backward: the incoming gradient, the input's gradient (twice with LoRA: base and
  // branch, summed in place).
  if (out_rg) t.backward_moment(pending + out + (input_rg ? (lora ? 2 : 1) * in : 0));
  return out_rg;
}

/// \brief LayerNorm `name`: input -> output, both (B, T, d). Returns whether the output needs a gradient.
inline bool walk_layer_norm(const block_context& b, segment_trace& t, const std::string& name,
                            const std::string& input, bool input_rg, const std::string& output, int64_t pending) {
  const bool params = b.trains(name + ".weight") || b.trains(name + ".bias");
  const bool rg = input_rg || params;
  if (rg) {
    t.keep(input, b.hidden_bytes());
    t.keep(b.prefix + name + ".stats", 2 * b.row_stat_bytes());
  }
  t.alive(output, b.hidden_bytes());
  if (rg) t.backward_moment(pending + 2 * b.hidden_bytes());
  return rg;
}

/// \brief Hidden dropout on a (B, T, d) tensor: keeps the scaled mask. Returns the id of its output.
inline std::string walk_hidden_dropout(const block_context& b, segment_trace& t, const std::string& input, bool rg,
                                       int64_t pending) {
  if (b.hidden_dropout <= 0) return input;  // identity
  if (rg) t.keep(input + ".dropout_mask", b.hidden_bytes());
  t.alive(input + ".dropped", b.hidden_bytes());
  if (rg) t.backward_moment(pending + 2 * b.hidden_bytes());
  return input + ".dropped";
}

/// \brief The written-out attention used in training with attention dropout:
///        matmul(q, k^T) -> scale -> masked_fill -> softmax -> dropout -> matmul(., v) ->
///        (B, T, d) context (a copy). `copies`: q and k are non-contiguous views that
///        matmul copies (v always is one); `mask_bytes`: the boolean mask masked_fill keeps.
///        The masked scores stay referenced (a local) until the context is made.
///        Backward: at each op of the softmax chain its incoming and outgoing score-sized
///        gradients, with v's gradient waiting. Returns whether the context needs a gradient.
inline bool walk_dropout_attention(const block_context& b, segment_trace& t, std::string q, std::string k, bool copies,
                                   bool rg, int64_t pending, int64_t mask_bytes) {
  const auto p = b.prefix;
  const int64_t x = b.hidden_bytes(), s = b.scores_bytes();
  if (copies) {
    t.alive(p + "q_copy", x);
    t.alive(p + "k_copy", x);
    q = p + "q_copy";
    k = p + "k_copy";
  }
  if (rg) {
    t.keep(q, x);  // bmm keeps both operands
    t.keep(k, x);
    t.backward_moment(pending + x + s + 2 * x);  // v's gradient; scores' in; q's and k's out
  }
  t.alive(p + "scores", s);
  if (copies) {
    t.dead(p + "q_copy");
    t.dead(p + "k_copy");
  }
  t.alive(p + "scaled", s);
  t.dead(p + "scores");
  if (rg) t.keep(p + "attention_mask", mask_bytes);
  t.alive(p + "masked", s);
  t.dead(p + "scaled");
  if (rg) {
    t.keep(p + "probs", s);  // softmax keeps its output
    t.backward_moment(pending + x + 2 * s);
  }
  t.alive(p + "probs", s);
  if (rg) {
    t.keep(p + "probs_dropout_mask", s);
    t.backward_moment(pending + x + 2 * s);
  }
  t.alive(p + "dropped", s);
  if (rg) {
    t.keep(p + "dropped", s);  // bmm keeps both operands; v is copied
    t.keep(p + "v_copy", x);
    t.backward_moment(pending + x + s + x);  // the context's gradient in; the probabilities' and v's out
  }
  t.alive(p + "v_copy", x);
  t.alive(p + "ctx_heads", x);  // (B, nh, T, hd)
  t.dead(p + "dropped");
  t.dead(p + "v_copy");
  t.alive(p + "ctx", x);  // transpose + reshape: a copy
  for (const char* id : {"ctx_heads", "probs", "masked"}) t.dead(p + id);
  if (rg) t.backward_moment(pending + 2 * x);
  return rg;
}

/// \brief CPU flash attention: keeps q, k, v, output, logsumexp and the float mask.
///        Returns whether the output needs a gradient.
inline bool walk_flash_attention(const block_context& b, segment_trace& t, const std::string& q, int64_t q_bytes,
                                 const std::string& k, int64_t k_bytes, const std::string& v, int64_t v_bytes, bool rg,
                                 int64_t pending, int64_t mask_elems) {
  const auto p = b.prefix;
  const int64_t x = b.hidden_bytes();
  if (rg) {
    t.keep(q, q_bytes);
    t.keep(k, k_bytes);
    t.keep(v, v_bytes);
    t.keep(p + "sdpa.logsumexp", b.rows * b.inv->heads * b.length * float_bytes);
    t.keep(p + "sdpa.mask", mask_elems * float_bytes);
    t.keep(p + "sdpa.out", x);
  }
  t.alive(p + "sdpa.mask", mask_elems * float_bytes);
  t.alive(p + "sdpa.out", x);
  t.dead(p + "sdpa.mask");
  // Backward: the output's gradient in, q's, k's and v's out.
  if (rg) t.backward_moment(pending + 4 * x);
  return rg;
}

/// \brief One BertLayer (post-LN): x -> y. `input_rg`: whether x needs a gradient;
///        `output_rg` is set. The output "y" is left alive for the next segment.
inline memory_segment walk_bert_block(const block_context& b, bool recording, bool input_rg, bool& output_rg) {
  const int64_t x = b.hidden_bytes(), inter = b.intermediate_bytes();
  const auto p = b.prefix;
  segment_trace t(recording);
  const auto in = p + "x";
  t.alive(in, x);  // held by the caller through the block
  // Self-attention. Backward reaches value, key, query in that order, with q's and k's
  // gradients (and the residual's) waiting.
  const bool q_rg = walk_linear(b, t, "attention.self.query", in, input_rg, p + "q", x);
  const bool k_rg = walk_linear(b, t, "attention.self.key", in, input_rg, p + "k", 2 * x);
  const bool v_rg = walk_linear(b, t, "attention.self.value", in, input_rg, p + "v", 3 * x);
  const bool qkv_rg = q_rg || k_rg || v_rg;
  std::string ctx;
  if (b.attention_dropout > 0) {
    // q, k: (B, nh, T, hd) views of (B, T, d) outputs, copied by matmul.
    walk_dropout_attention(b, t, p + "q", p + "k", true, qkv_rg, x, b.tokens());
    ctx = p + "ctx";
  } else {
    walk_flash_attention(b, t, p + "q", x, p + "k", x, p + "v", x, qkv_rg, x, b.tokens());
    ctx = p + "sdpa.out";  // (B, T, nh, hd) underneath: the (B, T, d) reshape is a view
  }
  for (const char* n : {"q", "k", "v"}) t.dead(p + n);
  // attention.output: LayerNorm(dropout(dense(ctx)) + x).
  const bool o_rg = walk_linear(b, t, "attention.output.dense", ctx, qkv_rg, p + "attn_dense", 0);
  const auto dropped = walk_hidden_dropout(b, t, p + "attn_dense", o_rg, x);
  t.alive(p + "ln1_in", x);
  const bool a_rg = walk_layer_norm(b, t, "attention.output.LayerNorm", p + "ln1_in", o_rg || input_rg, p + "a", 0);
  for (const auto& id : {p + "attn_dense", dropped, p + "ln1_in", ctx}) t.dead(id);
  // MLP: output(GELU(intermediate(a)), a); the GELU output lives until output() returns.
  const bool i_rg = walk_linear(b, t, "intermediate.dense", p + "a", a_rg, p + "gelu_in", x);
  if (i_rg) t.keep(p + "gelu_in", inter);
  t.alive(p + "gelu_out", inter);
  t.dead(p + "gelu_in");
  if (i_rg) t.backward_moment(x + 2 * inter);
  const bool o2_rg = walk_linear(b, t, "output.dense", p + "gelu_out", i_rg, p + "out_dense", 0);
  const auto dropped2 = walk_hidden_dropout(b, t, p + "out_dense", o2_rg, x);
  t.alive(p + "ln2_in", x);
  output_rg = walk_layer_norm(b, t, "output.LayerNorm", p + "ln2_in", o2_rg || a_rg, p + "y", 0);
  for (const auto& id : {p + "out_dense", dropped2, p + "ln2_in", p + "gelu_out", p + "a", in}) t.dead(id);
  return t.segment();
}

/// \brief One GptNeoxLayer (pre-LN, parallel or sequential residual, partial rotary): x -> y.
inline memory_segment walk_gpt_neox_block(const block_context& b, const GptNeoxConfig& c, bool recording,
                                          bool input_rg, bool& output_rg) {
  const int64_t x = b.hidden_bytes(), inter = b.intermediate_bytes();
  const bool rotary = gpt_neox_rotary_dims(c) > 0;
  const int64_t mask_elems = b.rows * b.length * b.length;  // (B, 1, T, T): causal and padding
  const auto p = b.prefix;
  segment_trace t(recording);
  const auto in = p + "x";
  t.alive(in, x);
  // Attention on input_layernorm(x). Backward: the residual gradient waits throughout.
  const bool ln1_rg = walk_layer_norm(b, t, "input_layernorm", in, input_rg, p + "ln1", x);
  const bool qkv_rg = walk_linear(b, t, "attention.query_key_value", p + "ln1", ln1_rg, p + "qkv", x);
  // Backward of the fused output's view: q's, k's and v's gradients are stacked into one
  // (B, nh, T, 3 hd) tensor and reshaped (a copy) to (B, T, 3d).
  if (qkv_rg) t.backward_moment(x + 6 * x);
  // RoPE makes q and k new contiguous (B, nh, T, hd) tensors; without rotary dims they
  // stay views of the fused output, as v always is.
  std::string q = p + "qkv", k = p + "qkv";
  if (rotary) {
    t.alive(p + "q_rot", x);
    t.alive(p + "k_rot", x);
    q = p + "q_rot";
    k = p + "k_rot";
    if (qkv_rg) t.backward_moment(x + 5 * x);  // RoPE's backward: narrow's zero-filled gradients
  }
  std::string ctx;
  if (b.attention_dropout > 0) {
    walk_dropout_attention(b, t, q, k, !rotary, qkv_rg, x, mask_elems);
    ctx = p + "ctx";
  } else {
    walk_flash_attention(b, t, q, rotary ? x : 3 * x, k, rotary ? x : 3 * x, p + "qkv", 3 * x, qkv_rg, x, mask_elems);
    // The flash kernel lays its output out as q is laid out: RoPE's contiguous q makes
    // the (B, T, d) context a copy; a view of the fused output makes it a view.
    if (rotary) t.alive(p + "ctx", x);
    ctx = rotary ? p + "ctx" : p + "sdpa.out";
  }
  // The block's output gradient reaching dense and dense_4h_to_h is the residual's too (one tensor).
  const bool dense_rg = walk_linear(b, t, "attention.dense", ctx, qkv_rg, p + "attn_dense", 0);
  for (const auto& id : {p + "qkv", p + "q_rot", p + "k_rot", p + "sdpa.out", ctx, p + "ln1"}) t.dead(id);
  const auto attn = walk_hidden_dropout(b, t, p + "attn_dense", dense_rg, x);
  // MLP on post_attention_layernorm(x) (parallel) or (attn + x) (sequential).
  std::string mlp_in = in;
  bool mlp_in_rg = input_rg;
  if (!c.use_parallel_residual) {
    mlp_in = p + "attn_plus_x";
    mlp_in_rg = dense_rg || input_rg;
    t.alive(mlp_in, x);
  }
  const bool ln2_rg = walk_layer_norm(b, t, "post_attention_layernorm", mlp_in, mlp_in_rg, p + "ln2", x);
  const bool h_rg = walk_linear(b, t, "mlp.dense_h_to_4h", p + "ln2", ln2_rg, p + "act_in", x);
  if (h_rg) t.keep(p + "act_in", inter);  // GELU keeps its input (ReLU its output: same size)
  t.alive(p + "act_out", inter);
  t.dead(p + "act_in");
  if (h_rg) t.backward_moment(x + 2 * inter);
  const bool o_rg = walk_linear(b, t, "mlp.dense_4h_to_h", p + "act_out", h_rg, p + "mlp_out", 0);
  t.dead(p + "act_out");
  const auto mlp = walk_hidden_dropout(b, t, p + "mlp_out", o_rg, x);
  // y = mlp + attn + x (two sums; the first is a temporary).
  t.alive(p + "sum", x);
  t.alive(p + "y", x);
  output_rg = o_rg || dense_rg || input_rg;
  for (const auto& id : {p + "sum", p + "mlp_out", mlp, p + "ln2", attn, p + "attn_dense", mlp_in, in}) t.dead(id);
  return t.segment();
}

}  // namespace contaccum::detail
