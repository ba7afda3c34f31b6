#pragma once
/// \file
/// \brief Training FLOPs as the compute-optimal recipe counts them (Ziarko et al. 2024,
///        arXiv 2406.04165, official code SeqDM/Efficient-Embeddings): per token,
///        full fine-tuning 6N, block freezing 2N + 4N_t, LoRA and bias-only 4N + 2N_t,
///        with N the non-embedding parameters and N_t the trainable ones among them;
///        a budget C buys C / (cost per token x tokens per pair) pairs (78 tokens per
///        pair on average in the paper's data).
///
/// Why those formulas: a forward pass costs 2N per token, a backward pass 4N (2N for the
/// gradient with respect to activations, 2N for the gradient with respect to weights).
/// Frozen blocks below the first trainable one need no backward at all (2N + 4N_t);
/// LoRA and bias-only need the activation gradients everywhere but weight gradients only
/// for their few parameters (2N + 2N + 2N_t). Which formula prices an adapter is the
/// adapter's customisation (compute/adapter_cost.hpp: `flop_formula`), so a user-defined
/// adapter is costed like the built-in ones.

#include <contaccum/adapters/concepts.hpp>
#include <contaccum/adapters/detail/modules.hpp>
#include <contaccum/compute/adapter_cost.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/bert.hpp>
#include <contaccum/encoders/gpt_neox.hpp>
#include <contaccum/encoders/linear.hpp>

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_set>

namespace contaccum {

/// \brief Non-embedding parameters of a GPT-NeoX shape: per block query_key_value
///        (3d^2 + 3d), dense (d^2 + d), the MLP (2 d I + I + d) and two LayerNorms (4d), plus
///        the final LayerNorm (2d); attention biases as the config says. For Pythia
///        (I = 4d) this is the paper's N = L (12 d^2 + 13 d) + 2d.
[[nodiscard]] inline int64_t non_embedding_parameters(const GptNeoxConfig& c) {
  const int64_t d = c.hidden_size, i = c.intermediate_size, attn_bias = c.attention_bias ? 1 : 0;
  const int64_t block = 4 * d * d + 4 * d * attn_bias + 2 * d * i + i + d + 4 * d;
  return c.num_hidden_layers * block + 2 * d;
}

/// \brief Non-embedding parameters of a BERT shape: per layer query, key, value, the
///        attention output (4d^2 + 4d), the MLP (2 d I + I + d), two LayerNorms (4d), plus
///        the embeddings' LayerNorm (2d). The three embedding tables are left out.
[[nodiscard]] inline int64_t non_embedding_parameters(const BertConfig& c) {
  const int64_t d = c.hidden_size, i = c.intermediate_size;
  return c.num_hidden_layers * (4 * d * d + 4 * d + 2 * d * i + i + d + 4 * d) + 2 * d;
}

namespace detail {

// Parameters of `model` that are not embedding tables: not owned by a torch::nn::Embedding
// and not a language-model head (GptNeox's embed_out, which an embedding model never runs).
// trainable_only = false counts the base model (no adapter branch); true counts every
// trainable parameter, LoRA's A and B included.
template <ParameterModule M>
[[nodiscard]] int64_t count_non_embedding(M& model, bool trainable_only) {
  auto& root = module_of(model);
  std::unordered_set<const void*> base;
  for (const auto& entry : base_parameters(root)) base.insert(entry.second.unsafeGetTensorImpl());
  std::unordered_set<const void*> embedding;
  for (const auto& m : root.named_modules()) {
    const auto last = m.key().substr(m.key().rfind('.') == std::string::npos ? 0 : m.key().rfind('.') + 1);
    if (dynamic_cast<const torch::nn::EmbeddingImpl*>(m.value().get()) != nullptr || last == "embed_out")
      for (const auto& p : m.value()->parameters()) embedding.insert(p.unsafeGetTensorImpl());
  }
  std::unordered_set<const void*> seen;
  int64_t n = 0;
  for (const auto& p : root.parameters()) {
    const auto* impl = p.unsafeGetTensorImpl();
    if (embedding.contains(impl) || (trainable_only ? !p.requires_grad() : !base.contains(impl))) continue;
    if (seen.insert(p.unsafeGetTensorImpl()).second) n += p.numel();
  }
  return n;
}

}  // namespace detail

/// \brief N: the parameters of an encoder's base model (module or holder; adapter
///        branches left out) that are not embedding tables or the LM head.
template <ParameterModule M>
[[nodiscard]] int64_t count_non_embedding(M& model) {
  return detail::count_non_embedding(model, false);
}
/// \brief N_t: the trainable non-embedding parameters, LoRA's A and B included.
template <ParameterModule M>
[[nodiscard]] int64_t count_trainable_non_embedding(M& model) {
  return detail::count_non_embedding(model, true);
}

/// \brief Training FLOPs per token of adapter A, as the paper counts them, for N
///        non-embedding parameters of which N_t train: the formula A's customisation names
///        (`flop_formula`, compute/adapter_cost.hpp), asked of a default A.
///
/// \code
/// // Pythia-70m, LoRA r = 8 on the four linears: 4 x 18915328 + 2 x 393216 = 76447744
/// auto cost = contaccum::flops_per_token<contaccum::LoRA>(18915328, 393216);
/// \endcode
template <CostedAdapter A>
[[nodiscard]] constexpr double flops_per_token(double n, double n_trainable) {
  return flops_per_token(flop_formula(A{}), n, n_trainable);
}

/// \brief flops_per_token for an encoder already prepared by `adapter`: N and N_t are
///        counted on the model (count_non_embedding, count_trainable_non_embedding), the
///        formula is `flop_formula(adapter)`.
template <CostedAdapter A, ParameterModule M>
[[nodiscard]] double flops_per_token(const A& adapter, M& model) {
  return flops_per_token(flop_formula(adapter), static_cast<double>(count_non_embedding(model)),
                         static_cast<double>(count_trainable_non_embedding(model)));
}

/// \brief How many training pairs a budget of `budget_flops` buys at `flops_per_token`
///        and `tokens_per_pair`, rounded down to whole optimizer steps of
///        `pairs_per_step` pairs. Throws invalid_input when the budget does not cover one
///        step; the message gives the minimum budget.
///
/// \code
/// // Pythia-70m, full fine-tuning, 1e15 FLOPs, 78 tokens per pair, batch 1024:
/// auto pairs = contaccum::pairs_for_budget(1e15, 6.0 * 18915328, 78.0, 1024);  // 112640
/// \endcode
[[nodiscard]] inline int64_t pairs_for_budget(double budget_flops, double flops_per_token,
                                              double tokens_per_pair = 78.0, int64_t pairs_per_step = 1) {
  detail::require(flops_per_token > 0 && std::isfinite(flops_per_token),
                  "pairs_for_budget: flops_per_token must be positive, got ", flops_per_token);
  detail::require(tokens_per_pair > 0 && std::isfinite(tokens_per_pair),
                  "pairs_for_budget: tokens_per_pair must be positive, got ", tokens_per_pair);
  detail::require(pairs_per_step > 0, "pairs_for_budget: pairs_per_step must be positive, got ", pairs_per_step);
  const double per_step = flops_per_token * tokens_per_pair * static_cast<double>(pairs_per_step);
  detail::require(budget_flops >= per_step, "pairs_for_budget: a budget of ", budget_flops,
                  " FLOPs is too small for one optimizer step of ", pairs_per_step, " pairs x ", tokens_per_pair,
                  " tokens at ", flops_per_token, " FLOPs per token: the minimum is ", per_step, " FLOPs");
  return static_cast<int64_t>(std::floor(budget_flops / per_step)) * pairs_per_step;
}

}  // namespace contaccum
