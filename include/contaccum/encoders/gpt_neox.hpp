#pragma once
/// \file
/// \brief A GPT-NeoX (Pythia family) decoder used as an encoder: pre-LN Transformer with
///        partial rotary position embeddings, causal attention and (by default) parallel
///        residual blocks. `named_parameters()` are GPTNeoXForCausalLM's checkpoint names
///        (gpt_neox.embed_in.weight, gpt_neox.layers.0.attention.query_key_value.weight,
///        ..., gpt_neox.final_layer_norm.*, embed_out.weight), so loading and saving are
///        name-for-name copies. The language-model head `embed_out` is kept, so the same
///        module gives next-token logits and a causal-LM loss.
///
/// Position ids are transformers' default: 0..T-1 for every row, whatever the padding.
/// With left padding the first real token of a row therefore sits at the position after
/// its pads, exactly as GPTNeoXModel computes it when no position_ids are passed.

#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/detail/config_limits.hpp>
#include <contaccum/encoders/linear.hpp>
#include <contaccum/encoders/recompute.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace contaccum {

/// \brief Shape and regularisation of a GPT-NeoX model; field names follow config.json
///        (the rotary fields use the old names rotary_pct / rotary_emb_base, which newer
///        files spell rope_parameters.partial_rotary_factor / rope_theta). Defaults are
///        transformers' GPTNeoXConfig defaults (GPT-NeoX-20B).
struct GptNeoxConfig {
  int64_t vocab_size = 50432;
  int64_t hidden_size = 6144;
  int64_t num_hidden_layers = 44;
  int64_t num_attention_heads = 64;
  int64_t intermediate_size = 24576;
  double rotary_pct = 0.25;          // fraction of each head's dims that are rotated
  double rotary_emb_base = 10000.0;  // RoPE theta
  int64_t max_position_embeddings = 2048;
  double layer_norm_eps = 1e-5;
  double attention_dropout = 0.0;  // on attention probabilities
  double hidden_dropout = 0.0;     // on the embeddings and on each block's attention and MLP outputs
  double initializer_range = 0.02;
  bool use_parallel_residual = true;  // x + attn(ln1(x)) + mlp(ln2(x)); false: sequential
  bool attention_bias = true;         // biases of query_key_value and attention.dense
  bool tie_word_embeddings = false;   // true: the LM head is embed_in's matrix (no embed_out)
  std::string hidden_act = "gelu";    // "gelu" (erf), "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "relu"
  int64_t bos_token_id = 0;           // token ids are carried for config.json only; -1 = null
  int64_t eos_token_id = 2;
  int64_t pad_token_id = -1;
};

namespace detail {

/// \brief The MLP non-linearities GptNeox implements.
enum class GptNeoxActivation { gelu_erf, gelu_tanh, relu };

// hidden_act -> activation. gelu_new and gelu_fast are transformers' hand-written tanh
// approximations; LibTorch's gelu(approximate="tanh") is the same formula, equal to them
// up to float rounding.
[[nodiscard]] inline GptNeoxActivation gpt_neox_activation(const std::string& name, std::string_view where) {
  if (name == "gelu") return GptNeoxActivation::gelu_erf;
  if (name == "gelu_new" || name == "gelu_fast" || name == "gelu_pytorch_tanh") return GptNeoxActivation::gelu_tanh;
  if (name == "relu") return GptNeoxActivation::relu;
  require(false, where, ": hidden_act \"", name,
          "\" is not supported (contaccum's GptNeox implements gelu, gelu_new, gelu_fast, gelu_pytorch_tanh, relu)");
  return GptNeoxActivation::gelu_erf;
}

// Rotated dims per head, as transformers computes them: int(head_size * rotary_pct).
[[nodiscard]] inline int64_t gpt_neox_rotary_dims(const GptNeoxConfig& c) {
  return static_cast<int64_t>(static_cast<double>(c.hidden_size / c.num_attention_heads) * c.rotary_pct);
}

/// \brief Throws invalid_input "contaccum: <where>: ..." for a config GptNeox cannot run.
inline void validate_gpt_neox_config(const GptNeoxConfig& c, std::string_view where) {
  const double blocks = require_transformer_shape(where, c);
  require_parameter_count(where, static_cast<double>(c.hidden_size) * static_cast<double>(c.vocab_size) *
                                         (c.tie_word_embeddings ? 1.0 : 2.0) +
                                     blocks);
  require(c.rotary_pct >= 0.0 && c.rotary_pct <= 1.0, where, ": rotary_pct (partial_rotary_factor) ", c.rotary_pct,
          " is not in [0, 1]");
  const auto rotary = gpt_neox_rotary_dims(c);
  require(rotary % 2 == 0, where, ": rotary dims ", rotary, " (head_size ", c.hidden_size / c.num_attention_heads,
          " x rotary_pct ", c.rotary_pct, ") are odd: rotate-half RoPE pairs dim i with i + dims/2");
  require_positive_finite(where, "rotary_emb_base (rope_theta)", c.rotary_emb_base);
  require_probability(where, "attention_dropout", c.attention_dropout);
  require_probability(where, "hidden_dropout", c.hidden_dropout);
  require_positive_finite(where, "layer_norm_eps", c.layer_norm_eps);
  require_init_range(where, c.initializer_range);
  (void)gpt_neox_activation(c.hidden_act, where);
}

/// \brief RoPE tables for positions 0..T-1: cos and sin (T, r), computed in fp32 as
///        transformers does (inv_freq = 1 / base^(2i / r), angles repeated for both halves)
///        and returned in `options`' dtype and device.
[[nodiscard]] inline std::pair<torch::Tensor, torch::Tensor> gpt_neox_rotary_table(int64_t t, int64_t r, double base,
                                                                                   torch::TensorOptions options) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(options.device());
  auto inv_freq = torch::pow(base, torch::arange(0, r, 2, f32) / static_cast<double>(r)).reciprocal();  // (r/2)
  auto angles = torch::outer(torch::arange(t, f32), inv_freq);                                          // (T, r/2)
  auto emb = torch::cat({angles, angles}, -1);                                                           // (T, r)
  return {emb.cos().to(options.dtype()), emb.sin().to(options.dtype())};
}

/// \brief Rotate-half RoPE on the first r = cos.size(-1) dims of each head; the other
///        dims pass through. x: (B, nh, T, hd); cos, sin: (T, r) -> (B, nh, T, hd).
[[nodiscard]] inline torch::Tensor apply_gpt_neox_rotary(const torch::Tensor& x, const torch::Tensor& cos,
                                                         const torch::Tensor& sin) {
  const auto r = cos.size(-1);
  if (r == 0) return x;
  auto rot = x.narrow(-1, 0, r), pass = x.narrow(-1, r, x.size(-1) - r);  // (B, nh, T, r), (B, nh, T, hd - r)
  auto halves = rot.chunk(2, -1);                                          // dims [0, r/2) and [r/2, r)
  auto rotated = torch::cat({-halves[1], halves[0]}, -1);                  // (B, nh, T, r)
  return torch::cat({rot * cos + rotated * sin, pass}, -1);
}

/// \brief Which keys each query may attend to: mask (B, T) -> keep (B, 1, T, T) bool.
///
/// Query i sees real keys j <= i (causal + padding, as transformers' mask). Every query also
/// sees itself: a padded query with no real key at or before it (left padding) would
/// otherwise get a softmax over nothing (NaN), which pooling or gradients could carry into
/// real outputs. Real queries always see themselves already, so their outputs are unchanged.
[[nodiscard]] inline torch::Tensor gpt_neox_attention_keep(const torch::Tensor& mask) {
  const auto b = mask.size(0), t = mask.size(1);
  const auto opts = mask.options().dtype(torch::kBool);
  auto causal = torch::ones({t, t}, opts).tril();            // (T, T)
  auto real_key = mask.to(torch::kBool).view({b, 1, 1, t});  // (B, 1, 1, T)
  return (causal & real_key) | torch::eye(t, opts);          // (B, 1, T, T)
}

struct GptNeoxAttentionImpl : torch::nn::Module {
  explicit GptNeoxAttentionImpl(const GptNeoxConfig& c)
      : heads(c.num_attention_heads),
        head_size(c.hidden_size / c.num_attention_heads),
        p_drop(c.attention_dropout),
        query_key_value(register_module(
            "query_key_value",
            AdaptableLinear(torch::nn::LinearOptions(c.hidden_size, 3 * c.hidden_size).bias(c.attention_bias)))),
        dense(register_module(
            "dense",
            AdaptableLinear(torch::nn::LinearOptions(c.hidden_size, c.hidden_size).bias(c.attention_bias)))) {}

  // x: (B, T, H); cos, sin: (T, r); keep: (B, 1, T, T) -> (B, T, H)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& keep) {
    const auto b = x.size(0), t = x.size(1);
    // query_key_value's output rows are grouped by head, [h0: q, k, v | h1: q, k, v | ...],
    // so heads split first and q, k, v are the three thirds of each head's slice.
    auto qkv = query_key_value(x).view({b, t, heads, 3 * head_size}).transpose(1, 2);  // (B, nh, T, 3 hd)
    auto parts = qkv.chunk(3, -1);                                                      // 3 x (B, nh, T, hd)
    auto q = apply_gpt_neox_rotary(parts[0], cos, sin), k = apply_gpt_neox_rotary(parts[1], cos, sin);
    const auto& v = parts[2];
    torch::Tensor ctx;  // (B, nh, T, hd)
    if (is_training() && p_drop > 0) {
      // Written out so dropout draws from the default generator in one fixed way
      // (GradCache's replay relies on it); softmax in fp32 as transformers' eager path.
      auto scores = torch::matmul(q, k.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(head_size)));
      scores = scores.masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
      auto probs = torch::softmax(scores, -1, torch::kFloat).to(q.scalar_type());
      ctx = torch::matmul(torch::dropout(probs, p_drop, true), v);
    } else {
      ctx = at::scaled_dot_product_attention(q, k, v, keep);
    }
    return dense(ctx.transpose(1, 2).reshape({b, t, heads * head_size}));
  }

  int64_t heads, head_size;
  double p_drop;
  AdaptableLinear query_key_value, dense;
};
TORCH_MODULE(GptNeoxAttention);

struct GptNeoxMlpImpl : torch::nn::Module {
  explicit GptNeoxMlpImpl(const GptNeoxConfig& c)
      : act(gpt_neox_activation(c.hidden_act, "GptNeoxConfig")),
        dense_h_to_4h(register_module("dense_h_to_4h", AdaptableLinear(c.hidden_size, c.intermediate_size))),
        dense_4h_to_h(register_module("dense_4h_to_h", AdaptableLinear(c.intermediate_size, c.hidden_size))) {}

  // (B, T, H) -> (B, T, H)
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = dense_h_to_4h(x);  // (B, T, I)
    switch (act) {
      case GptNeoxActivation::gelu_erf: h = torch::gelu(h); break;
      case GptNeoxActivation::gelu_tanh: h = torch::gelu(h, "tanh"); break;
      case GptNeoxActivation::relu: h = torch::relu(h); break;
    }
    return dense_4h_to_h(h);
  }

  GptNeoxActivation act;
  AdaptableLinear dense_h_to_4h, dense_4h_to_h;
};
TORCH_MODULE(GptNeoxMlp);

struct GptNeoxLayerImpl : torch::nn::Module {
  explicit GptNeoxLayerImpl(const GptNeoxConfig& c)
      : parallel(c.use_parallel_residual),
        input_layernorm(register_module(
            "input_layernorm",
            torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)))),
        post_attention_layernorm(register_module(
            "post_attention_layernorm",
            torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)))),
        post_attention_dropout(register_module("post_attention_dropout", torch::nn::Dropout(c.hidden_dropout))),
        post_mlp_dropout(register_module("post_mlp_dropout", torch::nn::Dropout(c.hidden_dropout))),
        attention(register_module("attention", GptNeoxAttention(c))),
        mlp(register_module("mlp", GptNeoxMlp(c))) {}

  // x: (B, T, H) -> (B, T, H); the sums are added in transformers' order.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& keep) {
    auto attn = post_attention_dropout(attention(input_layernorm(x), cos, sin, keep));
    if (parallel) return post_mlp_dropout(mlp(post_attention_layernorm(x))) + attn + x;  // x + attn(ln1 x) + mlp(ln2 x)
    auto h = attn + x;                                                                    // sequential (GPT-2 style)
    return post_mlp_dropout(mlp(post_attention_layernorm(h))) + h;
  }

  bool parallel;
  torch::nn::LayerNorm input_layernorm, post_attention_layernorm;
  torch::nn::Dropout post_attention_dropout, post_mlp_dropout;
  GptNeoxAttention attention;
  GptNeoxMlp mlp;
};
TORCH_MODULE(GptNeoxLayer);

// GPTNeoXModel: embeddings, the blocks and the final LayerNorm; registered as "gpt_neox".
struct GptNeoxBodyImpl : torch::nn::Module {
  explicit GptNeoxBodyImpl(const GptNeoxConfig& c)
      : rotary_dims(gpt_neox_rotary_dims(c)),
        rotary_base(c.rotary_emb_base),
        embed_in(register_module("embed_in", torch::nn::Embedding(c.vocab_size, c.hidden_size))),
        emb_dropout(register_module("emb_dropout", torch::nn::Dropout(c.hidden_dropout))),
        layers(register_module("layers", torch::nn::ModuleList())),
        final_layer_norm(register_module(
            "final_layer_norm",
            torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)))) {
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(GptNeoxLayer(c));
  }

  // ids, mask: (B, T) -> (B, T, H) after final_layer_norm. With first_trainable_layer = n,
  // embed_in and layers [0, n) run under NoGradGuard (BlockFreeze: no activations kept,
  // no backward work below layer n).
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask) {
    const auto first = static_cast<size_t>(first_trainable_layer.value_or(0));
    const auto keep = gpt_neox_attention_keep(mask);  // (B, 1, T, T)
    torch::Tensor x, cos, sin;                        // (B, T, H); (T, r)
    {
      std::optional<torch::NoGradGuard> no_grad;
      if (first_trainable_layer) no_grad.emplace();
      x = emb_dropout(embed_in(ids));
      std::tie(cos, sin) = gpt_neox_rotary_table(ids.size(1), rotary_dims, rotary_base, x.options());
      for (size_t i = 0; i < first; ++i) x = layers[i]->as<GptNeoxLayer>()->forward(x, cos, sin, keep);
    }
    for (size_t i = first; i < layers->size(); ++i) {
      if (!gradient_checkpointing) {
        x = layers[i]->as<GptNeoxLayer>()->forward(x, cos, sin, keep);
        continue;
      }
      x = recomputed(
          [layer = layers->ptr(i), cos, sin, keep](const torch::Tensor& h) {
            return layer->as<GptNeoxLayer>()->forward(h, cos, sin, keep);
          },
          x);
    }
    return final_layer_norm(x);
  }

  int64_t rotary_dims;
  double rotary_base;
  std::optional<int64_t> first_trainable_layer;  // set through GptNeoxImpl::set_first_trainable_layer
  bool gradient_checkpointing = false;           // set through GptNeoxImpl::set_gradient_checkpointing
  torch::nn::Embedding embed_in;
  torch::nn::Dropout emb_dropout;
  torch::nn::ModuleList layers;
  torch::nn::LayerNorm final_layer_norm;
};
TORCH_MODULE(GptNeoxBody);

// GptNeoxConfig checked before any submodule is built from it.
[[nodiscard]] inline const GptNeoxConfig& validated(const GptNeoxConfig& c) {
  validate_gpt_neox_config(c, "GptNeoxConfig");
  return c;
}

}  // namespace detail

/// \brief GPT-NeoX (Pythia) as an encoder: (ids, mask) -> last hidden states after
///        final_layer_norm, plus the LM head for next-token logits and a causal-LM loss.
///
/// Attention is causal, so a sequence's summary is its last real token's state: read it
/// with LastTokenPooling. Padded positions get finite (meaningless) states; they never
/// reach real tokens.
/// \code
/// contaccum::GptNeox lm(contaccum::GptNeoxConfig{.vocab_size = 1000, .hidden_size = 64,
///                                                .num_hidden_layers = 2, .num_attention_heads = 4,
///                                                .intermediate_size = 256});
/// auto h = lm(ids, mask);                     // (B, T, 64)
/// auto logits = lm->lm_logits(h);             // (B, T, 1000)
/// auto loss = lm->causal_lm_loss(ids, mask);  // scalar
/// \endcode
class GptNeoxImpl : public torch::nn::Module {
public:
  using Config = GptNeoxConfig;

  explicit GptNeoxImpl(const GptNeoxConfig& c)
      : config_(detail::validated(c)), gpt_neox(register_module("gpt_neox", detail::GptNeoxBody(c))) {
    if (!c.tie_word_embeddings) {
      embed_out = register_module(
          "embed_out", AdaptableLinear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
    }
    reset_parameters();
  }

  /// \brief ids (B, T) int64, mask (B, T) (nonzero = real token) -> hidden states (B, T, H).
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask) {
    detail::require(ids.dim() == 2 && mask.sizes() == ids.sizes(), "GptNeox: ids (B, T) and mask (B, T) expected, got ",
                    ids.sizes(), " and ", mask.sizes());
    return gpt_neox(ids, mask);
  }

  /// \brief Next-token logits from hidden states: (..., H) -> (..., vocab_size).
  torch::Tensor lm_logits(const torch::Tensor& hidden) {
    return embed_out ? embed_out(hidden) : torch::nn::functional::linear(hidden, gpt_neox->embed_in->weight);
  }

  /// \brief Mean next-token cross-entropy over real tokens: position t predicts token
  ///        t + 1 when both are real. ids, mask: (B, T) -> scalar.
  ///
  /// With right padding this is transformers' loss for labels = ids with padding set to
  /// -100. With left padding transformers would also score each row's first real token
  /// as predicted from a pad position; that term is left out here (pass -100 for it too
  /// to get the same number from transformers). No pair at all gives 0, not NaN.
  torch::Tensor causal_lm_loss(const torch::Tensor& ids, const torch::Tensor& mask) {
    auto hidden = forward(ids, mask);  // (B, T, H)
    const auto t = ids.size(1);
    if (t < 2) return hidden.sum() * 0.0;
    const auto real = mask.to(torch::kBool);
    auto pairs = real.narrow(1, 0, t - 1) & real.narrow(1, 1, t - 1);  // (B, T-1): t and t+1 real
    auto logits = lm_logits(hidden.narrow(1, 0, t - 1).index({pairs}));  // (N, V), only scored positions
    auto target = ids.narrow(1, 1, t - 1).index({pairs});                // (N)
    // At least fp32, as transformers upcasts the logits before the loss.
    logits = logits.to(c10::promoteTypes(logits.scalar_type(), torch::kFloat));
    auto total = torch::nn::functional::cross_entropy(
        logits, target, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    return total / static_cast<double>(std::max<int64_t>(target.size(0), 1));
  }

  [[nodiscard]] int64_t hidden_size() const { return config_.hidden_size; }
  [[nodiscard]] const GptNeoxConfig& config() const { return config_; }
  /// \brief Dims per head that RoPE rotates: int(head_size * rotary_pct).
  [[nodiscard]] int64_t rotary_dims() const { return gpt_neox->rotary_dims; }
  /// \brief Number of Transformer blocks (gpt_neox.layers.*).
  [[nodiscard]] int64_t num_layers() const { return static_cast<int64_t>(gpt_neox->layers->size()); }

  /// \brief The hook BlockFreeze sets: with a value n, embed_in and layers [0, n) run under
  ///        torch::NoGradGuard (no activations kept, no backward work below layer n);
  ///        std::nullopt (the default) records the whole forward. Outputs are unchanged.
  ///        Marking parameters frozen is the adapter's job, not this setting's.
  void set_first_trainable_layer(std::optional<int64_t> n) {
    detail::require(!n || (*n >= 0 && *n <= num_layers()), "GptNeox: first_trainable_layer ", n.value_or(-1),
                    " is outside [0, ", num_layers(), "] (the model has ", num_layers(), " layers)");
    gpt_neox->first_trainable_layer = n;
  }
  [[nodiscard]] std::optional<int64_t> first_trainable_layer() const { return gpt_neox->first_trainable_layer; }

  /// \brief Activation recompute per layer (Hugging Face's gradient checkpointing): a
  ///        trained layer keeps only its input and runs again in the backward, with the
  ///        forward's dropout masks and autocast state (encoders/recompute.hpp).
  void set_gradient_checkpointing(bool on) { gpt_neox->gradient_checkpointing = on; }
  [[nodiscard]] bool gradient_checkpointing() const { return gpt_neox->gradient_checkpointing; }

  /// \brief transformers' initialisation: weights N(0, initializer_range), biases 0,
  ///        LayerNorm 1/0.
  void reset_parameters() {
    torch::NoGradGuard no_grad;
    for (auto& p : named_parameters()) {
      const auto& name = p.key();
      auto& t = p.value();
      const bool norm = name.find("layernorm") != std::string::npos || name.find("layer_norm") != std::string::npos;
      if (norm && name.ends_with("weight")) t.fill_(1.0);
      else if (name.ends_with("bias")) t.zero_();
      else t.normal_(0.0, config_.initializer_range);
    }
  }

private:
  GptNeoxConfig config_;

public:
  detail::GptNeoxBody gpt_neox;
  AdaptableLinear embed_out{nullptr};  // null when tie_word_embeddings
};
TORCH_MODULE(GptNeox);

}  // namespace contaccum
