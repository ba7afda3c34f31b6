#pragma once
/// \file
/// \brief A Llama / Qwen2-style decoder used as an encoder, the backbone of today's
///        strongest embedders (gte-Qwen2, e5-mistral, NV-Embed, Qwen3-Embedding): pre-norm
///        blocks with RMSNorm, rotary position embeddings on every head dimension,
///        grouped-query attention (num_key_value_heads <= num_attention_heads), causal
///        masking and a SwiGLU MLP. `named_parameters()` are LlamaModel's / Qwen2Model's
///        names (embed_tokens.weight, layers.0.self_attn.q_proj.weight, ...,
///        layers.0.mlp.gate_proj.weight, norm.weight); read a sequence with
///        LastTokenPooling.
///
/// The two families differ only in their linear biases: Qwen2 has biases on q, k and v
/// (none on o_proj); Llama has them on all four when attention_bias is set, and on the
/// MLP when mlp_bias is. Position ids are transformers' default, 0..T-1 for every row
/// whatever the padding (as for GPT-NeoX).

#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/detail/config_limits.hpp>
#include <contaccum/encoders/gpt_neox.hpp>
#include <contaccum/encoders/linear.hpp>
#include <contaccum/encoders/recompute.hpp>

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

namespace contaccum {

/// \brief Shape of a Llama / Qwen2 model; field names follow config.json. Defaults are
///        transformers' LlamaConfig defaults (Llama-2-7B) with model_type "llama".
struct LlamaConfig {
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 32;  // < num_attention_heads: grouped-query attention
  int64_t head_dim = 0;              // 0: hidden_size / num_attention_heads
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  double attention_dropout = 0.0;
  double initializer_range = 0.02;
  bool attention_bias = false;  // Llama: biases on q, k, v and o (Qwen2 always has q, k, v biases)
  bool mlp_bias = false;
  bool tie_word_embeddings = false;  // carried for config.json (the encoder has no LM head)
  std::string model_type = "llama";  // "llama" or "qwen2"
};

namespace detail {

[[nodiscard]] inline int64_t llama_head_dim(const LlamaConfig& c) {
  return c.head_dim > 0 ? c.head_dim : c.hidden_size / std::max<int64_t>(c.num_attention_heads, 1);
}
[[nodiscard]] inline bool llama_qkv_bias(const LlamaConfig& c) { return c.model_type == "qwen2" || c.attention_bias; }
[[nodiscard]] inline bool llama_o_bias(const LlamaConfig& c) { return c.model_type == "llama" && c.attention_bias; }

/// \brief Throws invalid_input "contaccum: <where>: ..." for a config Llama cannot run.
inline void validate_llama_config(const LlamaConfig& c, std::string_view where) {
  require(c.model_type == "llama" || c.model_type == "qwen2", where, ": model_type \"", c.model_type,
          "\" is not supported (contaccum's Llama loads \"llama\" and \"qwen2\")");
  require(c.hidden_size >= 1 && c.num_attention_heads >= 1 && c.num_key_value_heads >= 1, where,
          ": hidden_size, num_attention_heads and num_key_value_heads must be >= 1");
  require(c.head_dim > 0 || c.hidden_size % c.num_attention_heads == 0, where, ": hidden_size ", c.hidden_size,
          " is not a multiple of num_attention_heads ", c.num_attention_heads, " (and head_dim is not given)");
  require(c.num_attention_heads % c.num_key_value_heads == 0, where, ": num_attention_heads ", c.num_attention_heads,
          " is not a multiple of num_key_value_heads ", c.num_key_value_heads,
          " (grouped-query attention shares each key/value head among a whole group)");
  require(llama_head_dim(c) % 2 == 0, where, ": head_dim ", llama_head_dim(c),
          " is odd: rotate-half RoPE pairs dim i with i + head_dim/2");
  require_size(where, "vocab_size", c.vocab_size, 1, ConfigLimits::vocab_size);
  require_size(where, "hidden_size", c.hidden_size, 1, ConfigLimits::hidden_size);
  require_size(where, "intermediate_size", c.intermediate_size, 1, ConfigLimits::intermediate_size);
  require_size(where, "num_hidden_layers", c.num_hidden_layers, 1, ConfigLimits::num_hidden_layers);
  require_size(where, "max_position_embeddings", c.max_position_embeddings, 1, ConfigLimits::max_position_embeddings);
  const double d = static_cast<double>(c.hidden_size), hd = static_cast<double>(llama_head_dim(c));
  const double per_layer = d * hd * static_cast<double>(2 * c.num_attention_heads + 2 * c.num_key_value_heads) +
                           3.0 * d * static_cast<double>(c.intermediate_size);
  require_parameter_count(where, d * static_cast<double>(c.vocab_size) + per_layer * static_cast<double>(c.num_hidden_layers));
  require_positive_finite(where, "rms_norm_eps", c.rms_norm_eps);
  require_positive_finite(where, "rope_theta", c.rope_theta);
  require_probability(where, "attention_dropout", c.attention_dropout);
  require_init_range(where, c.initializer_range);
}

[[nodiscard]] inline const LlamaConfig& validated(const LlamaConfig& c) {
  validate_llama_config(c, "LlamaConfig");
  return c;
}

/// \brief RMSNorm as transformers computes it: in fp32, x / sqrt(mean(x^2) + eps), then
///        back to the input dtype and scaled by `weight`.
struct LlamaRmsNormImpl : torch::nn::Module {
  LlamaRmsNormImpl(int64_t d, double eps)
      : eps(eps), weight(register_parameter("weight", torch::ones({d}))) {}
  // (..., d) -> (..., d)
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = x.to(c10::promoteTypes(x.scalar_type(), torch::kFloat));
    h = h * torch::rsqrt(h.pow(2).mean(-1, true) + eps);
    return weight * h.to(x.scalar_type());
  }
  double eps;
  torch::Tensor weight;
};
TORCH_MODULE(LlamaRmsNorm);

struct LlamaAttentionImpl : torch::nn::Module {
  explicit LlamaAttentionImpl(const LlamaConfig& c)
      : heads(c.num_attention_heads),
        kv_heads(c.num_key_value_heads),
        head_dim(llama_head_dim(c)),
        p_drop(c.attention_dropout),
        q_proj(register_module("q_proj", AdaptableLinear(torch::nn::LinearOptions(c.hidden_size, heads * head_dim)
                                                             .bias(llama_qkv_bias(c))))),
        k_proj(register_module("k_proj", AdaptableLinear(torch::nn::LinearOptions(c.hidden_size, kv_heads * head_dim)
                                                             .bias(llama_qkv_bias(c))))),
        v_proj(register_module("v_proj", AdaptableLinear(torch::nn::LinearOptions(c.hidden_size, kv_heads * head_dim)
                                                             .bias(llama_qkv_bias(c))))),
        o_proj(register_module("o_proj", AdaptableLinear(torch::nn::LinearOptions(heads * head_dim, c.hidden_size)
                                                             .bias(llama_o_bias(c))))) {}

  // x: (B, T, H); cos, sin: (T, hd); keep: (B, 1, T, T) -> (B, T, H)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& keep) {
    const auto b = x.size(0), t = x.size(1);
    auto q = q_proj(x).view({b, t, heads, head_dim}).transpose(1, 2);     // (B, nh, T, hd)
    auto k = k_proj(x).view({b, t, kv_heads, head_dim}).transpose(1, 2);  // (B, nkv, T, hd)
    auto v = v_proj(x).view({b, t, kv_heads, head_dim}).transpose(1, 2);  // (B, nkv, T, hd)
    q = apply_gpt_neox_rotary(q, cos, sin);
    k = apply_gpt_neox_rotary(k, cos, sin);
    if (kv_heads != heads) {  // key/value head j serves query heads [j g, (j + 1) g)
      const auto g = heads / kv_heads;
      k = k.unsqueeze(2).expand({b, kv_heads, g, t, head_dim}).reshape({b, heads, t, head_dim});
      v = v.unsqueeze(2).expand({b, kv_heads, g, t, head_dim}).reshape({b, heads, t, head_dim});
    }
    torch::Tensor ctx;  // (B, nh, T, hd)
    if (is_training() && p_drop > 0) {
      // Written out so dropout draws from the default generator in one fixed way
      // (GradCache's replay relies on it); softmax in fp32 as transformers' eager path.
      auto scores = torch::matmul(q, k.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(head_dim)));
      scores = scores.masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
      auto probs = torch::softmax(scores, -1, torch::kFloat).to(q.scalar_type());
      ctx = torch::matmul(torch::dropout(probs, p_drop, true), v);
    } else {
      ctx = at::scaled_dot_product_attention(q, k, v, keep);
    }
    return o_proj(ctx.transpose(1, 2).reshape({b, t, heads * head_dim}));
  }

  int64_t heads, kv_heads, head_dim;
  double p_drop;
  AdaptableLinear q_proj, k_proj, v_proj, o_proj;
};
TORCH_MODULE(LlamaAttention);

// SwiGLU: down(silu(gate(x)) * up(x)).
struct LlamaMlpImpl : torch::nn::Module {
  explicit LlamaMlpImpl(const LlamaConfig& c)
      : gate_proj(register_module("gate_proj", AdaptableLinear(torch::nn::LinearOptions(c.hidden_size, c.intermediate_size)
                                                                   .bias(c.mlp_bias)))),
        up_proj(register_module("up_proj", AdaptableLinear(torch::nn::LinearOptions(c.hidden_size, c.intermediate_size)
                                                               .bias(c.mlp_bias)))),
        down_proj(register_module("down_proj", AdaptableLinear(torch::nn::LinearOptions(c.intermediate_size, c.hidden_size)
                                                                   .bias(c.mlp_bias)))) {}
  // (B, T, H) -> (B, T, H)
  torch::Tensor forward(const torch::Tensor& x) { return down_proj(torch::silu(gate_proj(x)) * up_proj(x)); }
  AdaptableLinear gate_proj, up_proj, down_proj;
};
TORCH_MODULE(LlamaMlp);

struct LlamaLayerImpl : torch::nn::Module {
  explicit LlamaLayerImpl(const LlamaConfig& c)
      : self_attn(register_module("self_attn", LlamaAttention(c))),
        mlp(register_module("mlp", LlamaMlp(c))),
        input_layernorm(register_module("input_layernorm", LlamaRmsNorm(c.hidden_size, c.rms_norm_eps))),
        post_attention_layernorm(
            register_module("post_attention_layernorm", LlamaRmsNorm(c.hidden_size, c.rms_norm_eps))) {}
  // (B, T, H) -> (B, T, H)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& keep) {
    auto h = x + self_attn(input_layernorm(x), cos, sin, keep);
    return h + mlp(post_attention_layernorm(h));
  }
  LlamaAttention self_attn;
  LlamaMlp mlp;
  LlamaRmsNorm input_layernorm, post_attention_layernorm;
};
TORCH_MODULE(LlamaLayer);

}  // namespace detail

/// \brief Llama / Qwen2 as an encoder: (ids, mask) -> last hidden states after the final
///        RMSNorm (B, T, H). Attention is causal: read a sequence with LastTokenPooling.
///
/// \code
/// contaccum::Llama enc(contaccum::LlamaConfig{.vocab_size = 1000, .hidden_size = 64, .intermediate_size = 128,
///                                             .num_hidden_layers = 2, .num_attention_heads = 4,
///                                             .num_key_value_heads = 2, .model_type = "qwen2"});
/// auto h = enc(ids, mask);  // (B, T, 64)
/// \endcode
class LlamaImpl : public torch::nn::Module {
public:
  using Config = LlamaConfig;

  explicit LlamaImpl(const LlamaConfig& c)
      : config_(detail::validated(c)),
        embed_tokens(register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size))),
        layers(register_module("layers", torch::nn::ModuleList())),
        norm(register_module("norm", detail::LlamaRmsNorm(c.hidden_size, c.rms_norm_eps))) {
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(detail::LlamaLayer(c));
    reset_parameters();
  }

  /// \brief ids (B, T) int64, mask (B, T) (nonzero = real token) -> hidden states (B, T, H).
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask) {
    detail::require(ids.dim() == 2 && mask.sizes() == ids.sizes(), "Llama: ids (B, T) and mask (B, T) expected, got ",
                    ids.sizes(), " and ", mask.sizes());
    const auto first = static_cast<size_t>(first_trainable_layer_.value_or(0));
    const auto keep = detail::gpt_neox_attention_keep(mask);  // (B, 1, T, T): causal + padding
    torch::Tensor x, cos, sin;                                // (B, T, H); (T, hd)
    {
      std::optional<torch::NoGradGuard> no_grad;
      if (first_trainable_layer_) no_grad.emplace();
      x = embed_tokens(ids);
      std::tie(cos, sin) =
          detail::gpt_neox_rotary_table(ids.size(1), detail::llama_head_dim(config_), config_.rope_theta, x.options());
      for (size_t i = 0; i < first; ++i) x = layers[i]->as<detail::LlamaLayer>()->forward(x, cos, sin, keep);
    }
    for (size_t i = first; i < layers->size(); ++i) {
      if (!gradient_checkpointing_) {
        x = layers[i]->as<detail::LlamaLayer>()->forward(x, cos, sin, keep);
        continue;
      }
      x = detail::recomputed(
          [layer = layers->ptr(i), cos, sin, keep](const torch::Tensor& h) {
            return layer->as<detail::LlamaLayer>()->forward(h, cos, sin, keep);
          },
          x);
    }
    return norm(x);
  }

  [[nodiscard]] int64_t hidden_size() const { return config_.hidden_size; }
  [[nodiscard]] const LlamaConfig& config() const { return config_; }
  [[nodiscard]] int64_t num_layers() const { return static_cast<int64_t>(layers->size()); }

  /// \brief BlockFreeze's hook: embeddings and layers [0, n) run under NoGradGuard.
  void set_first_trainable_layer(std::optional<int64_t> n) {
    detail::require(!n || (*n >= 0 && *n <= num_layers()), "Llama: first_trainable_layer ", n.value_or(-1),
                    " is outside [0, ", num_layers(), "] (the model has ", num_layers(), " layers)");
    first_trainable_layer_ = n;
  }
  [[nodiscard]] std::optional<int64_t> first_trainable_layer() const { return first_trainable_layer_; }

  /// \brief Activation recompute per layer (encoders/recompute.hpp).
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  [[nodiscard]] bool gradient_checkpointing() const { return gradient_checkpointing_; }

  /// \brief transformers' initialisation: weights N(0, initializer_range), biases 0,
  ///        RMSNorm weights 1.
  void reset_parameters() {
    torch::NoGradGuard no_grad;
    for (auto& p : named_parameters()) {
      const auto& name = p.key();
      auto& t = p.value();
      if (name.find("norm.weight") != std::string::npos) t.fill_(1.0);
      else if (name.ends_with("bias")) t.zero_();
      else t.normal_(0.0, config_.initializer_range);
    }
  }

private:
  LlamaConfig config_;
  std::optional<int64_t> first_trainable_layer_;
  bool gradient_checkpointing_ = false;

public:
  torch::nn::Embedding embed_tokens;
  torch::nn::ModuleList layers;
  detail::LlamaRmsNorm norm;
};
TORCH_MODULE(Llama);

}  // namespace contaccum
