#pragma once
/// \file
/// \brief A BERT encoder (post-LN Transformer, erf GELU) whose `named_parameters()` are
///        Hugging Face's names (embeddings.word_embeddings.weight, encoder.layer.0.
///        attention.self.query.weight, ...). Random-initialised as BERT is (normal 0.02);
///        small configs make it the library's built-in test encoder. The same body with
///        RoBERTa's position ids (model_type "roberta" or "xlm-roberta") is RoBERTa and
///        XLM-RoBERTa, which differ from BERT in nothing else that an encoder computes.

#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/detail/config_limits.hpp>
#include <contaccum/encoders/linear.hpp>
#include <contaccum/encoders/recompute.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace contaccum {

/// \brief Shape and regularisation of a BERT encoder; field names follow config.json.
struct BertConfig {
  int64_t vocab_size = 30522;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  double layer_norm_eps = 1e-12;
  double initializer_range = 0.02;
  /// "bert", or "roberta" / "xlm-roberta": the same architecture, with position ids counted
  /// from pad_token_id + 1 over the non-padding ids (RoBERTa's scheme) instead of from 0.
  std::string model_type = "bert";
  /// The padding id; with RoBERTa's positions also the position every padding token gets.
  int64_t pad_token_id = 0;
};

/// \brief The model_type values a BertConfig describes, with the architecture name
///        transformers gives each family's bare encoder.
inline constexpr std::array<std::pair<std::string_view, std::string_view>, 3> bert_family{
    {{"bert", "BertModel"}, {"roberta", "RobertaModel"}, {"xlm-roberta", "XLMRobertaModel"}}};

/// \brief transformers' bare-encoder class for c.model_type ("BertModel", "RobertaModel",
///        "XLMRobertaModel"); an unknown model_type is an invalid_input naming it.
[[nodiscard]] inline std::string_view bert_architecture(const BertConfig& c) {
  for (const auto& [type, architecture] : bert_family)
    if (type == c.model_type) return architecture;
  throw invalid_input(detail::cat("contaccum: BertConfig.model_type \"", c.model_type,
                                  "\" is not supported (\"bert\", \"roberta\", \"xlm-roberta\")"));
}

/// \brief True where position ids follow RoBERTa (pad_token_id + 1, + 2, ... over real ids).
[[nodiscard]] inline bool uses_roberta_positions(const BertConfig& c) { return c.model_type != "bert"; }

namespace detail {

/// \brief Every field of `c` in its range (sizes bounded by ConfigLimits, probabilities in
///        [0, 1), layer_norm_eps positive, initializer_range >= 0, all finite); `where`
///        names the source (the config.json file, or "BertConfig").
inline void validate_bert_config(const BertConfig& c, std::string_view where) {
  const double blocks = require_transformer_shape(where, c);
  require_size(where, "type_vocab_size", c.type_vocab_size, 1, ConfigLimits::type_vocab_size);
  require_parameter_count(where, static_cast<double>(c.hidden_size) *
                                         static_cast<double>(c.vocab_size + c.max_position_embeddings + c.type_vocab_size) +
                                     blocks);
  require_probability(where, "hidden_dropout_prob", c.hidden_dropout_prob);
  require_probability(where, "attention_probs_dropout_prob", c.attention_probs_dropout_prob);
  require_positive_finite(where, "layer_norm_eps", c.layer_norm_eps);
  require_init_range(where, c.initializer_range);
  require(std::ranges::any_of(bert_family, [&](const auto& f) { return f.first == c.model_type; }), where, ": model_type \"", c.model_type,
          "\" is not supported (contaccum's Bert loads \"bert\", \"roberta\" and \"xlm-roberta\")");
  require(c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size, where, ": pad_token_id ", c.pad_token_id,
          " is outside the vocabulary [0, ", c.vocab_size, ")");
  if (uses_roberta_positions(c)) {
    require(c.pad_token_id + 1 < c.max_position_embeddings, where, ": max_position_embeddings ",
            c.max_position_embeddings, " leaves no position after pad_token_id ", c.pad_token_id,
            " (RoBERTa's positions start at pad_token_id + 1)");
  }
}

// BertConfig checked before any submodule is built from it.
[[nodiscard]] inline const BertConfig& validated(const BertConfig& c) {
  validate_bert_config(c, "BertConfig");
  return c;
}

// mask: (B, T), nonzero = real token -> (B, 1, 1, T) additive attention bias in `dtype`:
// 0 for a real key, -inf for padding. Made once per forward and shared by every layer.
inline torch::Tensor attention_mask_bias(const torch::Tensor& mask, torch::ScalarType dtype) {
  return torch::zeros({mask.size(0), 1, 1, mask.size(1)}, mask.options().dtype(dtype))
      .masked_fill_(mask.eq(0).view({mask.size(0), 1, 1, mask.size(1)}), -std::numeric_limits<double>::infinity());
}

/// \brief The real tokens of a padded (B, T) batch as the rows of one (n, H) matrix: the
///        unpadded layout, where every per-token op (embeddings, LayerNorm, the linear maps,
///        the GELU) skips the padding, and only attention sees (B, T) again.
struct TokenPacking {
  torch::Tensor index;  // (n) int64: flat positions b * T + t of the real tokens, in row order
  int64_t batch = 0, length = 0;

  // (B, T, ...) -> (n, ...): the real positions of a padded tensor.
  [[nodiscard]] torch::Tensor pack(const torch::Tensor& x) const {
    auto flat = x.dim() == 2 ? x.reshape({batch * length}) : x.reshape({batch * length, x.size(-1)});
    return flat.index_select(0, index);
  }
  // (n, H) -> (B, T, H), zero at the padding. Differentiable in x (index_copy's backward
  // gathers the real rows of the gradient).
  [[nodiscard]] torch::Tensor unpack(const torch::Tensor& x) const {
    return torch::zeros({batch * length, x.size(-1)}, x.options())
        .index_copy(0, index, x)
        .view({batch, length, x.size(-1)});
  }
};

// mask: (B, T) -> the packing of its nonzero entries; std::nullopt when no entry is padding
// (then the padded layout is already the unpadded one).
[[nodiscard]] inline std::optional<TokenPacking> token_packing(const torch::Tensor& mask) {
  auto index = mask.reshape({-1}).ne(0).nonzero().squeeze(1);  // (n)
  if (index.size(0) == mask.numel()) return std::nullopt;
  return TokenPacking{std::move(index), mask.size(0), mask.size(1)};
}

struct BertEmbeddingsImpl : torch::nn::Module {
  explicit BertEmbeddingsImpl(const BertConfig& c)
      : word_embeddings(register_module("word_embeddings", torch::nn::Embedding(c.vocab_size, c.hidden_size))),
        position_embeddings(register_module("position_embeddings",
                                            torch::nn::Embedding(c.max_position_embeddings, c.hidden_size))),
        token_type_embeddings(register_module("token_type_embeddings",
                                              torch::nn::Embedding(c.type_vocab_size, c.hidden_size))),
        LayerNorm(register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size})
                                                                        .eps(c.layer_norm_eps)))),
        dropout(register_module("dropout", torch::nn::Dropout(c.hidden_dropout_prob))),
        roberta_positions(uses_roberta_positions(c)),
        padding_idx(c.pad_token_id) {}

  // ids, types: (B, T) -> (B, T, H); with a packing, -> (n, H) for its real tokens.
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& types, const TokenPacking* packing = nullptr) {
    const auto t = ids.size(1);
    const auto positions = position_embeddings->weight.size(0);
    torch::Tensor pos;  // (B, T) or (1, T)
    if (!roberta_positions) {
      detail::require(t <= positions, "sequence length ", t, " exceeds max_position_embeddings ", positions);
      pos = torch::arange(t, ids.options()).unsqueeze(0);
    } else {
      // RoBERTa: the k-th real id of a row (k = 1, 2, ...) sits at position padding_idx + k
      // and every padding id at padding_idx, wherever it is in the row (as transformers counts).
      detail::require(t + padding_idx < positions, "sequence length ", t, " exceeds max_position_embeddings ",
                      positions, " less the ", padding_idx + 1, " positions RoBERTa reserves");
      auto real = ids.ne(padding_idx);
      pos = real.cumsum(1).mul_(real).add_(padding_idx);
    }
    if (packing == nullptr)
      return dropout(LayerNorm(word_embeddings(ids) + position_embeddings(pos) + token_type_embeddings(types)));
    auto packed_pos = packing->pack(pos.expand({ids.size(0), t}));  // (n)
    return dropout(LayerNorm(word_embeddings(packing->pack(ids)) + position_embeddings(packed_pos) +
                             token_type_embeddings(packing->pack(types))));  // (n, H)
  }

  torch::nn::Embedding word_embeddings, position_embeddings, token_type_embeddings;
  torch::nn::LayerNorm LayerNorm;  // NOLINT: Hugging Face's name
  torch::nn::Dropout dropout;
  bool roberta_positions;
  int64_t padding_idx;
};
TORCH_MODULE(BertEmbeddings);

struct BertSelfAttentionImpl : torch::nn::Module {
  explicit BertSelfAttentionImpl(const BertConfig& c)
      : heads(checked_heads(c)),
        head_size(c.hidden_size / heads),
        p_drop(c.attention_probs_dropout_prob),
        query(register_module("query", AdaptableLinear(c.hidden_size, c.hidden_size))),
        key(register_module("key", AdaptableLinear(c.hidden_size, c.hidden_size))),
        value(register_module("value", AdaptableLinear(c.hidden_size, c.hidden_size))) {}

  // Checked before head_size divides by it.
  static int64_t checked_heads(const BertConfig& c) {
    detail::require(c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0, "BertConfig.hidden_size ",
                    c.hidden_size, " is not a multiple of num_attention_heads ", c.num_attention_heads);
    return c.num_attention_heads;
  }

  // x: (B, T, H); mask_bias: (B, 1, 1, T), 0 for a real key and -inf for padding -> (B, T, H).
  // With a packing x is (n, H) and so is the result: q, k, v are laid out padded only for
  // the attention itself.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask_bias, const TokenPacking* packing = nullptr) {
    const auto b = packing ? packing->batch : x.size(0), t = packing ? packing->length : x.size(1);
    auto split = [&](const torch::Tensor& y) {
      return (packing ? packing->unpack(y) : y).view({b, t, heads, head_size}).transpose(1, 2);
    };
    auto q = split(query(x)), k = split(key(x)), v = split(value(x));  // (B, nh, T, hd)
    torch::Tensor ctx;
    if (is_training() && p_drop > 0) {
      // Written out so dropout draws from the default generator in one fixed way
      // (GradCache's replay relies on it). The scale goes on q (B nh T hd values), not on
      // the scores (B nh T T), and the padding bias is added in place: the score matrix is
      // made once and touched once before the softmax.
      auto scores = torch::matmul(q * (1.0 / std::sqrt(static_cast<double>(head_size))), k.transpose(-1, -2));
      scores.add_(mask_bias);  // (B, nh, T, T)
      ctx = torch::matmul(torch::dropout(torch::softmax(scores, -1), p_drop, true), v);
    } else {
      ctx = at::scaled_dot_product_attention(q, k, v, mask_bias);
    }
    auto merged = ctx.transpose(1, 2).reshape({b, t, heads * head_size});  // (B, T, H)
    return packing ? packing->pack(merged) : merged;
  }

  int64_t heads, head_size;
  double p_drop;
  AdaptableLinear query, key, value;
};
TORCH_MODULE(BertSelfAttention);

// Linear -> dropout -> LayerNorm(residual + .): BERT's "output" blocks.
struct BertResidualOutputImpl : torch::nn::Module {
  BertResidualOutputImpl(int64_t in, const BertConfig& c)
      : dense(register_module("dense", AdaptableLinear(in, c.hidden_size))),
        LayerNorm(register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size})
                                                                        .eps(c.layer_norm_eps)))),
        dropout(register_module("dropout", torch::nn::Dropout(c.hidden_dropout_prob))) {}
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual) {
    return LayerNorm(dropout(dense(x)) + residual);
  }
  AdaptableLinear dense;
  torch::nn::LayerNorm LayerNorm;  // NOLINT
  torch::nn::Dropout dropout;
};
TORCH_MODULE(BertResidualOutput);

struct BertAttentionImpl : torch::nn::Module {
  explicit BertAttentionImpl(const BertConfig& c)
      : self(register_module("self", BertSelfAttention(c))),
        output(register_module("output", BertResidualOutput(c.hidden_size, c))) {}
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask_bias, const TokenPacking* packing = nullptr) {
    return output(self(x, mask_bias, packing), x);
  }
  BertSelfAttention self;
  BertResidualOutput output;
};
TORCH_MODULE(BertAttention);

struct BertIntermediateImpl : torch::nn::Module {
  explicit BertIntermediateImpl(const BertConfig& c)
      : dense(register_module("dense", AdaptableLinear(c.hidden_size, c.intermediate_size))) {}
  torch::Tensor forward(const torch::Tensor& x) { return torch::gelu(dense(x)); }  // erf GELU
  AdaptableLinear dense;
};
TORCH_MODULE(BertIntermediate);

struct BertLayerImpl : torch::nn::Module {
  explicit BertLayerImpl(const BertConfig& c)
      : attention(register_module("attention", BertAttention(c))),
        intermediate(register_module("intermediate", BertIntermediate(c))),
        output(register_module("output", BertResidualOutput(c.intermediate_size, c))) {}
  // (B, T, H) -> (B, T, H), or (n, H) -> (n, H) with a packing
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask_bias, const TokenPacking* packing = nullptr) {
    auto a = attention(x, mask_bias, packing);
    return output(intermediate(a), a);
  }
  BertAttention attention;
  BertIntermediate intermediate;
  BertResidualOutput output;
};
TORCH_MODULE(BertLayer);

struct BertStackImpl : torch::nn::Module {
  explicit BertStackImpl(const BertConfig& c) : layer(register_module("layer", torch::nn::ModuleList())) {
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) layer->push_back(BertLayer(c));
  }
  torch::nn::ModuleList layer;
};
TORCH_MODULE(BertStack);

}  // namespace detail

/// \brief BERT encoder: (ids, mask[, token types]) -> last hidden states.
///
/// \code
/// contaccum::Bert enc(contaccum::BertConfig{.vocab_size = 1000, .hidden_size = 64,
///                                           .num_hidden_layers = 2, .num_attention_heads = 4,
///                                           .intermediate_size = 128});
/// auto h = enc(ids, mask);  // (B, T, 64)
/// \endcode
class BertImpl : public torch::nn::Module {
public:
  using Config = BertConfig;

  explicit BertImpl(const BertConfig& c)
      : config_(detail::validated(c)),
        embeddings(register_module("embeddings", detail::BertEmbeddings(c))),
        encoder(register_module("encoder", detail::BertStack(c))) {
    reset_parameters();
  }

  /// \brief ids, mask (and optional token types): (B, T) -> hidden states (B, T, H).
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask,
                        const torch::Tensor& token_type_ids = {}) {
    auto types = token_type_ids.defined() ? token_type_ids : torch::zeros_like(ids);
    const auto& layers = *encoder->layer;
    const auto first = static_cast<size_t>(first_trainable_layer_.value_or(0));
    // Unpadded: x holds the n real tokens as (n, H) from the embeddings to the last layer.
    const auto packing = unpadded_ ? detail::token_packing(mask) : std::nullopt;
    const detail::TokenPacking* pk = packing ? &*packing : nullptr;
    torch::Tensor x, bias;  // (B, T, H) or (n, H); (B, 1, 1, T)
    {
      // The frozen prefix (BlockFreeze): no graph is recorded, so its activations are freed
      // as soon as the next layer has read them and backward stops at layer `first`.
      std::optional<torch::NoGradGuard> no_grad;
      if (first_trainable_layer_) no_grad.emplace();
      x = embeddings(ids, types, pk);
      bias = detail::attention_mask_bias(mask, x.scalar_type());
      for (size_t i = 0; i < first; ++i) x = layers[i]->as<detail::BertLayer>()->forward(x, bias, pk);
    }
    for (size_t i = first; i < layers.size(); ++i) {
      if (!gradient_checkpointing_) {
        x = layers[i]->as<detail::BertLayer>()->forward(x, bias, pk);
        continue;
      }
      x = detail::recomputed(
          [layer = encoder->layer->ptr(i), bias, packing](const torch::Tensor& h) {
            return layer->as<detail::BertLayer>()->forward(h, bias, packing ? &*packing : nullptr);
          },
          x);
    }
    return pk ? pk->unpack(x) : x;
  }

  [[nodiscard]] int64_t hidden_size() const { return config_.hidden_size; }
  [[nodiscard]] const BertConfig& config() const { return config_; }
  /// \brief Number of Transformer layers (encoder.layer.*).
  [[nodiscard]] int64_t num_layers() const { return static_cast<int64_t>(encoder->layer->size()); }

  /// \brief The hook BlockFreeze sets: with a value n, the embeddings and layers [0, n) run
  ///        under torch::NoGradGuard (no activations kept, no backward work below layer n);
  ///        std::nullopt (the default) records the whole forward. Outputs are unchanged.
  ///        Marking parameters frozen is the adapter's job, not this setting's.
  void set_first_trainable_layer(std::optional<int64_t> n) {
    detail::require(!n || (*n >= 0 && *n <= num_layers()), "Bert: first_trainable_layer ", n.value_or(-1),
                    " is outside [0, ", num_layers(), "] (the model has ", num_layers(), " layers)");
    first_trainable_layer_ = n;
  }
  [[nodiscard]] std::optional<int64_t> first_trainable_layer() const { return first_trainable_layer_; }

  /// \brief Activation recompute per Transformer layer (Hugging Face's gradient
  ///        checkpointing): a trained layer keeps only its input and runs again in the
  ///        backward, with the forward's dropout masks and autocast state
  ///        (encoders/recompute.hpp). Less activation memory for one more forward of each
  ///        layer; the gradients are unchanged.
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  [[nodiscard]] bool gradient_checkpointing() const { return gradient_checkpointing_; }

  /// \brief The unpadded layout: the embeddings and every per-token op of a layer (the
  ///        q/k/v and output projections, the feed-forward, LayerNorm, dropout) run on the
  ///        real tokens only, as one (n, H) matrix; attention runs on (B, T) with the padding
  ///        masked, as before. The hidden states of real tokens are those of the padded
  ///        layout (up to rounding), padding rows come back as zeros, and the gradients are
  ///        the same: only the work on padding is gone (docs/benchmarks_train.md measures the
  ///        step). Off by default.
  void set_unpadded(bool on) { unpadded_ = on; }
  [[nodiscard]] bool unpadded() const { return unpadded_; }

  /// \brief BERT's initialisation: weights N(0, initializer_range), biases 0, LayerNorm 1/0.
  void reset_parameters() {
    torch::NoGradGuard no_grad;
    for (auto& p : named_parameters()) {
      const auto& name = p.key();
      auto& t = p.value();
      if (name.find("LayerNorm.weight") != std::string::npos) t.fill_(1.0);
      else if (name.ends_with("bias")) t.zero_();
      else t.normal_(0.0, config_.initializer_range);
    }
  }

private:
  BertConfig config_;
  std::optional<int64_t> first_trainable_layer_;
  bool gradient_checkpointing_ = false;
  bool unpadded_ = false;

public:
  detail::BertEmbeddings embeddings;
  detail::BertStack encoder;
};
TORCH_MODULE(Bert);

}  // namespace contaccum
