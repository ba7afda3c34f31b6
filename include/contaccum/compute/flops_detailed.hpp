#pragma once
/// \file
/// \brief Training FLOPs per token with attention counted, from a model *shape*
///        (BertConfig or GptNeoxConfig) and an adapter (FullFineTune, BlockFreeze, LoRA,
///        BiasOnly, or any CostedAdapter: compute/adapter_cost.hpp), for sequences of a
///        given length.
///
/// Convention (Chinchilla's, Hoffmann et al. 2022, appendix F, without its embedding and
/// softmax terms): one multiply-add is 2 FLOPs. Per token and per block the forward pass
/// costs
///   * 2 x (the block's weights) for the linear layers, as in the paper's 2N, and
///   * 4 S d for attention: the scores Q K^T (2 S d: S keys, d = heads x head size) and the
///     weighted sum A V (2 S d), with S the length the attention runs over.
/// Attention is counted over all S keys: the encoders run a dense, masked product (causal
/// GPT-NeoX included), so no factor 1/2 for the causal mask. A backward pass through a
/// block costs 2x its forward for the activation gradients; attention has no weights, so
/// its backward is 8 S d where gradients flow and 0 where they do not:
///
///   full fine-tuning   6N        + 12 S d L
///   block freezing k   2N + 4N_t +  4 S d L + 8 S d k   (no backward below block L - k)
///   LoRA, bias-only    4N + 2N_t + 12 S d L             (activation gradients everywhere)
///
/// The first term is the adapter's FlopFormula; the attention term follows from whether
/// the adapter runs a frozen prefix without autograd (ParameterInventory::first_trainable_layer).
///
/// With S = 0 these are the paper's formulas (compute/flops.hpp). N and N_t come from the
/// config (non-embedding parameters; trainable ones, LoRA's A and B included), counted as
/// count_non_embedding / count_trainable_non_embedding count them on a built model.
///
/// Attention's share grows with S / d: at S = 75 it adds 2.4% to Pythia-70m's full
/// fine-tuning cost, at S = 2048 it adds 44% to Pythia-160m's.

#include <contaccum/compute/detail/parameter_inventory.hpp>
#include <contaccum/compute/flops.hpp>
#include <contaccum/detail/error.hpp>

#include <concepts>
#include <cstdint>

namespace contaccum {

namespace detail {

// Attention FLOPs per token of a prepared shape: 4 S d forward per block, twice that
// backward where gradients flow, none below a frozen prefix (first_trainable_layer).
template <class Config>
[[nodiscard]] double attention_flops(const Config& config, const ParameterInventory& inv, int64_t seq_len) {
  require(seq_len >= 0, "attention_flops_per_token: seq_len must be >= 0, got ", seq_len);
  const double per_block = 4.0 * static_cast<double>(seq_len) * static_cast<double>(config.hidden_size);
  const auto layers = static_cast<double>(config.num_hidden_layers);
  if (inv.first_trainable_layer) {
    const auto backward_blocks = static_cast<double>(config.num_hidden_layers - *inv.first_trainable_layer);
    return per_block * layers + 2.0 * per_block * backward_blocks;
  }
  return 3.0 * per_block * layers;
}

}  // namespace detail

/// \brief N_t of a shape under `adapter`: trainable non-embedding parameters (LoRA's A
///        and B included; embeddings and GptNeox's LM head left out), counted from the
///        config without building the model.
///
/// \code
/// // Pythia-70m, LoRA r = 8 on the four linears: 6 layers x 8192 x 8 = 393216
/// auto nt = contaccum::trainable_non_embedding_parameters(
///     pythia_70m, contaccum::LoRA{.rank = 8, .target_modules = "query_key_value|dense|dense_h_to_4h|dense_4h_to_h"});
/// \endcode
template <class Config, CostedAdapter A>
  requires std::same_as<Config, BertConfig> || std::same_as<Config, GptNeoxConfig>
[[nodiscard]] int64_t trainable_non_embedding_parameters(const Config& config, const A& adapter) {
  return detail::trainable_non_embedding(detail::adapted_inventory(config, adapter));
}

/// \brief Every trainable parameter of one encoder of `config`'s shape under `adapter`
///        (embeddings, the LM head and LoRA's A and B included): what count_trainable says
///        of the built encoder once adapter.prepare has run.
template <class Config, CostedAdapter A>
  requires std::same_as<Config, BertConfig> || std::same_as<Config, GptNeoxConfig>
[[nodiscard]] int64_t trainable_parameters(const Config& config, const A& adapter) {
  return detail::trainable_parameters(detail::adapted_inventory(config, adapter));
}

/// \brief Attention FLOPs per token (the Q K^T and A V products, forward and backward)
///        of `adapter` on `config`'s shape, for sequences of `seq_len` tokens; the rest of
///        training_flops_per_token. Blocks below an adapter's frozen prefix
///        (ParameterInventory::first_trainable_layer, BlockFreeze's L - k) have no backward.
template <class Config, CostedAdapter A>
  requires std::same_as<Config, BertConfig> || std::same_as<Config, GptNeoxConfig>
[[nodiscard]] double attention_flops_per_token(const Config& config, const A& adapter, int64_t seq_len) {
  return detail::attention_flops(config, detail::adapted_inventory(config, adapter), seq_len);
}

/// \brief Training FLOPs per token of `adapter` on `config`'s shape for sequences of
///        `seq_len` tokens: the paper's formula (`flop_formula(adapter)` at N, N_t) plus
///        attention_flops_per_token. seq_len = 0 gives the paper's formula exactly.
///
/// \code
/// // Pythia-70m (6 layers, d 512), full fine-tuning, 75-token sequences:
/// // 6 x 18915328 + 12 x 75 x 512 x 6 = 113491968 + 2764800 = 116256768
/// double f = contaccum::training_flops_per_token(pythia_70m, contaccum::FullFineTune{}, 75);
/// \endcode
template <class Config, CostedAdapter A>
  requires std::same_as<Config, BertConfig> || std::same_as<Config, GptNeoxConfig>
[[nodiscard]] double training_flops_per_token(const Config& config, const A& adapter, int64_t seq_len) {
  const auto inv = detail::adapted_inventory(config, adapter);
  const auto n = static_cast<double>(detail::non_embedding(inv));
  const auto nt = static_cast<double>(detail::trainable_non_embedding(inv));
  return flops_per_token(flop_formula(adapter), n, nt) + detail::attention_flops(config, inv, seq_len);
}

/// \brief Training FLOPs of one pair: a query of `query_tokens`, its positive and
///        `hard_negatives` passages of `passage_tokens` each, every sequence costing
///        training_flops_per_token at its own length (give padded lengths for the FLOPs
///        the hardware runs, real lengths for the paper's accounting).
template <class Config, CostedAdapter A>
  requires std::same_as<Config, BertConfig> || std::same_as<Config, GptNeoxConfig>
[[nodiscard]] double training_flops_per_pair(const Config& config, const A& adapter, int64_t query_tokens,
                                             int64_t passage_tokens, int64_t hard_negatives = 0) {
  detail::require(query_tokens > 0 && passage_tokens > 0, "training_flops_per_pair: query_tokens (", query_tokens,
                  ") and passage_tokens (", passage_tokens, ") must be positive");
  detail::require(hard_negatives >= 0, "training_flops_per_pair: hard_negatives must be >= 0, got ", hard_negatives);
  const auto q = static_cast<double>(query_tokens), p = static_cast<double>(passage_tokens);
  return q * training_flops_per_token(config, adapter, query_tokens) +
         static_cast<double>(1 + hard_negatives) * p * training_flops_per_token(config, adapter, passage_tokens);
}

}  // namespace contaccum
