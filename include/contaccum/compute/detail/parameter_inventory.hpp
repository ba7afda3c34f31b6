#pragma once
/// \file
/// \brief Private to the cost models (flops_detailed.hpp, memory_model.hpp): the
///        ParameterInventory of a Bert or GptNeox *shape*, listed from its config with the
///        encoders' own (Hugging Face) names, and an adapter applied to it through its
///        customisation (compute/adapter_cost.hpp: mark_trainable). Nothing is allocated,
///        so Pythia-2.8b costs no memory.
///
/// The lists mirror encoders/bert.hpp and encoders/gpt_neox.hpp; tests/unit/test_budgets.cpp
/// checks them against built models (count_parameters, count_trainable,
/// count_trainable_non_embedding) for every adapter, a user-defined one included.

#include <contaccum/compute/adapter_cost.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/bert.hpp>
#include <contaccum/encoders/gpt_neox.hpp>
#include <contaccum/train/optim.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace contaccum::detail {

inline void add_linear(ParameterInventory& inv, const std::string& path, int64_t in, int64_t out, bool bias,
                       int64_t block, ParameterRole weight_role = ParameterRole::weight) {
  inv.linears.push_back({path, in, out, bias, block});
  inv.params.push_back({path + ".weight", in * out, weight_role, block});
  if (bias) inv.params.push_back({path + ".bias", out, ParameterRole::bias, block});
}
inline void add_norm(ParameterInventory& inv, const std::string& path, int64_t d, int64_t block) {
  inv.params.push_back({path + ".weight", d, ParameterRole::norm_weight, block});
  inv.params.push_back({path + ".bias", d, ParameterRole::norm_bias, block});
}

/// \brief BertImpl's parameters (encoders/bert.hpp), nothing trainable yet.
[[nodiscard]] inline ParameterInventory inventory_of(const BertConfig& c) {
  ParameterInventory inv{.gpt_neox = false, .layers = c.num_hidden_layers, .hidden = c.hidden_size,
                         .heads = c.num_attention_heads, .intermediate = c.intermediate_size};
  const int64_t d = c.hidden_size, i = c.intermediate_size;
  inv.params.push_back({"embeddings.word_embeddings.weight", c.vocab_size * d, ParameterRole::embedding_table});
  inv.params.push_back({"embeddings.position_embeddings.weight", c.max_position_embeddings * d,
                        ParameterRole::embedding_table});
  inv.params.push_back({"embeddings.token_type_embeddings.weight", c.type_vocab_size * d, ParameterRole::embedding_table});
  add_norm(inv, "embeddings.LayerNorm", d, -1);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const auto p = "encoder.layer." + std::to_string(l) + ".";
    for (const char* n : {"query", "key", "value"}) add_linear(inv, p + "attention.self." + n, d, d, true, l);
    add_linear(inv, p + "attention.output.dense", d, d, true, l);
    add_norm(inv, p + "attention.output.LayerNorm", d, l);
    add_linear(inv, p + "intermediate.dense", d, i, true, l);
    add_linear(inv, p + "output.dense", i, d, true, l);
    add_norm(inv, p + "output.LayerNorm", d, l);
  }
  return inv;
}

/// \brief GptNeoxImpl's parameters (encoders/gpt_neox.hpp), nothing trainable yet.
[[nodiscard]] inline ParameterInventory inventory_of(const GptNeoxConfig& c) {
  ParameterInventory inv{.gpt_neox = true, .layers = c.num_hidden_layers, .hidden = c.hidden_size,
                         .heads = c.num_attention_heads, .intermediate = c.intermediate_size};
  const int64_t d = c.hidden_size, i = c.intermediate_size;
  inv.params.push_back({"gpt_neox.embed_in.weight", c.vocab_size * d, ParameterRole::embedding_table});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const auto p = "gpt_neox.layers." + std::to_string(l) + ".";
    add_norm(inv, p + "input_layernorm", d, l);
    add_norm(inv, p + "post_attention_layernorm", d, l);
    add_linear(inv, p + "attention.query_key_value", d, 3 * d, c.attention_bias, l);
    add_linear(inv, p + "attention.dense", d, d, c.attention_bias, l);
    add_linear(inv, p + "mlp.dense_h_to_4h", d, i, true, l);
    add_linear(inv, p + "mlp.dense_4h_to_h", i, d, true, l);
  }
  add_norm(inv, "gpt_neox.final_layer_norm", d, -1);
  if (!c.tie_word_embeddings) add_linear(inv, "embed_out", d, c.vocab_size, false, -1, ParameterRole::lm_head);
  return inv;
}

/// \brief An encoder shape with adapter A applied.
template <class Config, CostedAdapter A>
[[nodiscard]] ParameterInventory adapted_inventory(const Config& c, const A& adapter) {
  auto inv = inventory_of(c);
  mark_trainable(adapter, inv);  // the adapter's customisation, found by argument-dependent lookup
  return inv;
}

// The LM head and anything registered on it (a LoRA branch there): never run by an
// embedding model, so it gets no gradient and no optimizer state.
[[nodiscard]] inline bool on_lm_head(const ParameterEntry& p) {
  return p.role == ParameterRole::lm_head || p.path.starts_with("embed_out.");
}

/// \brief N: non-embedding parameters of the base model (no LoRA branch, no LM head).
[[nodiscard]] inline int64_t non_embedding(const ParameterInventory& inv) {
  int64_t n = 0;
  for (const auto& p : inv.params)
    if (p.role != ParameterRole::embedding_table && p.role != ParameterRole::lora && !on_lm_head(p)) n += p.numel;
  return n;
}

/// \brief N_t: trainable non-embedding parameters, LoRA's A and B included.
[[nodiscard]] inline int64_t trainable_non_embedding(const ParameterInventory& inv) {
  int64_t n = 0;
  for (const auto& p : inv.params)
    if (p.trainable && p.role != ParameterRole::embedding_table && !on_lm_head(p)) n += p.numel;
  return n;
}

/// \brief Every parameter, LoRA branches included (what the encoder allocates).
[[nodiscard]] inline int64_t all_parameters(const ParameterInventory& inv) {
  int64_t n = 0;
  for (const auto& p : inv.params) n += p.numel;
  return n;
}

/// \brief Every trainable parameter (embeddings, LM head and LoRA's A and B included):
///        count_trainable on the prepared encoder.
[[nodiscard]] inline int64_t trainable_parameters(const ParameterInventory& inv) {
  int64_t n = 0;
  for (const auto& p : inv.params)
    if (p.trainable) n += p.numel;
  return n;
}

/// \brief Trainable parameters that get a gradient in training (the LM head never does).
[[nodiscard]] inline int64_t parameters_with_gradient(const ParameterInventory& inv) {
  int64_t n = 0;
  for (const auto& p : inv.params)
    if (p.trainable && !on_lm_head(p)) n += p.numel;
  return n;
}

/// \brief Sizes of the tensors AdamW updates, in its order: the Trainer's two parameter
///        groups (decayed, then biases and norms: exempt_from_weight_decay), each in
///        named_parameters order over `towers` copies of the encoder.
[[nodiscard]] inline std::vector<int64_t> optimizer_order(const ParameterInventory& inv, int64_t towers) {
  std::vector<int64_t> out;
  for (const bool exempt : {false, true})
    for (int64_t t = 0; t < towers; ++t)
      for (const auto& p : inv.params)
        if (p.trainable && !on_lm_head(p) && exempt_from_weight_decay(p.path) == exempt) out.push_back(p.numel);
  return out;
}

}  // namespace contaccum::detail
