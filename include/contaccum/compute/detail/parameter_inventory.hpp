#pragma once
/// \file
/// \brief Private to the cost models (flops_detailed.hpp, memory_model.hpp): the
///        parameter tensors and linear layers of a Bert or GptNeox *shape*, listed from
///        its config with the encoders' own (Hugging Face) names, and which of them an
///        adapter leaves trainable. Nothing is allocated, so Pythia-2.8b costs no memory.
///
/// The lists mirror encoders/bert.hpp and encoders/gpt_neox.hpp; tests/unit/test_budgets.cpp
/// checks them against built models (count_parameters, count_trainable,
/// count_trainable_non_embedding) for every adapter.

#include <contaccum/adapters/bias_only.hpp>
#include <contaccum/adapters/block_freeze.hpp>
#include <contaccum/adapters/detail/modules.hpp>
#include <contaccum/adapters/full_fine_tune.hpp>
#include <contaccum/adapters/lora.hpp>
#include <contaccum/detail/banner.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/bert.hpp>
#include <contaccum/encoders/gpt_neox.hpp>
#include <contaccum/train/optim.hpp>

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

namespace contaccum::detail {

/// \brief What a parameter tensor is to the cost models.
enum class param_role {
  embedding_table,  ///< word / position / token-type embeddings, GptNeox embed_in
  lm_head,          ///< GptNeox embed_out: allocated, never run by an embedding model
  weight,           ///< a linear layer's weight
  bias,             ///< a linear layer's bias
  norm_weight,      ///< a LayerNorm's weight
  norm_bias,        ///< a LayerNorm's bias
  lora,             ///< LoRA's A or B
};

struct param_entry {
  std::string path;  ///< encoder-relative name, e.g. "gpt_neox.layers.0.attention.dense.weight"
  int64_t numel = 0;
  param_role role = param_role::weight;
  int64_t block = -1;  ///< Transformer block index; -1 outside the blocks
  bool trainable = false;
};

struct linear_entry {
  std::string path;  ///< module path, e.g. "encoder.layer.3.intermediate.dense"
  int64_t in = 0, out = 0;
  bool bias = true;
  int64_t block = -1;       ///< -1: GptNeox's embed_out
  int64_t lora_rank = 0;    ///< set by LoRA; 0 = no branch
  double lora_dropout = 0;  ///< LoRA's dropout on the branch input
};

/// \brief One encoder shape: its parameters and linear layers, in forward order.
struct encoder_inventory {
  bool gpt_neox = false;
  int64_t layers = 0, hidden = 0, heads = 0, intermediate = 0;
  std::vector<param_entry> params;
  std::vector<linear_entry> linears;

  [[nodiscard]] const param_entry* find(const std::string& path) const {
    for (const auto& p : params)
      if (p.path == path) return &p;
    return nullptr;
  }
  /// \brief Whether the parameter `path` exists and trains.
  [[nodiscard]] bool trains(const std::string& path) const {
    const auto* p = find(path);
    return p != nullptr && p->trainable;
  }
  [[nodiscard]] const linear_entry& linear(const std::string& path) const {
    for (const auto& l : linears)
      if (l.path == path) return l;
    require(false, "internal: no linear layer ", path);
    return linears.front();
  }
};

inline void add_linear(encoder_inventory& inv, const std::string& path, int64_t in, int64_t out, bool bias,
                       int64_t block, param_role weight_role = param_role::weight) {
  inv.linears.push_back({path, in, out, bias, block});
  inv.params.push_back({path + ".weight", in * out, weight_role, block});
  if (bias) inv.params.push_back({path + ".bias", out, param_role::bias, block});
}
inline void add_norm(encoder_inventory& inv, const std::string& path, int64_t d, int64_t block) {
  inv.params.push_back({path + ".weight", d, param_role::norm_weight, block});
  inv.params.push_back({path + ".bias", d, param_role::norm_bias, block});
}

/// \brief BertImpl's parameters (encoders/bert.hpp), nothing trainable yet.
[[nodiscard]] inline encoder_inventory inventory_of(const BertConfig& c) {
  encoder_inventory inv{.gpt_neox = false, .layers = c.num_hidden_layers, .hidden = c.hidden_size,
                        .heads = c.num_attention_heads, .intermediate = c.intermediate_size};
  const int64_t d = c.hidden_size, i = c.intermediate_size;
  inv.params.push_back({"embeddings.word_embeddings.weight", c.vocab_size * d, param_role::embedding_table});
  inv.params.push_back({"embeddings.position_embeddings.weight", c.max_position_embeddings * d,
                        param_role::embedding_table});
  inv.params.push_back({"embeddings.token_type_embeddings.weight", c.type_vocab_size * d, param_role::embedding_table});
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
[[nodiscard]] inline encoder_inventory inventory_of(const GptNeoxConfig& c) {
  encoder_inventory inv{.gpt_neox = true, .layers = c.num_hidden_layers, .hidden = c.hidden_size,
                        .heads = c.num_attention_heads, .intermediate = c.intermediate_size};
  const int64_t d = c.hidden_size, i = c.intermediate_size;
  inv.params.push_back({"gpt_neox.embed_in.weight", c.vocab_size * d, param_role::embedding_table});
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
  if (!c.tie_word_embeddings) add_linear(inv, "embed_out", d, c.vocab_size, false, -1, param_role::lm_head);
  return inv;
}

/// \brief Marks what adapter A trains, as A::prepare would on a built encoder; LoRA adds
///        its A and B (trainable) to every linear layer its target_modules selects.
template <Adapter A>
void apply_adapter(encoder_inventory& inv, const A& adapter) {
  if constexpr (std::same_as<A, FullFineTune>) {
    (void)adapter;
    for (auto& p : inv.params) p.trainable = true;
  } else if constexpr (std::same_as<A, BlockFreeze>) {
    const auto k = adapter.trainable_blocks;
    require(k >= 0 && k <= inv.layers, "BlockFreeze: trainable_blocks (k) = ", k, " is outside [0, ", inv.layers,
            "]: the encoder has ", inv.layers, " blocks");
    for (auto& p : inv.params)
      p.trainable = (p.block >= inv.layers - k) || (inv.gpt_neox && p.path.starts_with("gpt_neox.final_layer_norm"));
  } else if constexpr (std::same_as<A, BiasOnly>) {
    (void)adapter;
    for (auto& p : inv.params) p.trainable = p.path.ends_with("bias");
  } else if constexpr (std::same_as<A, LoRA>) {
    adapter.validate();
    const auto pattern = compile_module_pattern(adapter.target_modules, "LoRA.target_modules");
    int64_t chosen = 0;
    for (auto& l : inv.linears) {
      if (!module_path_matches(pattern, l.path)) continue;
      ++chosen;
      l.lora_rank = adapter.rank;
      l.lora_dropout = adapter.dropout;
    }
    // A and B are registered on their layer, after its weight and bias (named_parameters order).
    std::vector<param_entry> params;
    for (auto p : inv.params) {
      p.trainable = false;
      params.push_back(p);
      const auto layer = p.path.substr(0, p.path.rfind('.'));
      const auto l = std::find_if(inv.linears.begin(), inv.linears.end(),
                                  [&](const linear_entry& e) { return e.path == layer; });
      if (l == inv.linears.end() || l->lora_rank == 0 || !p.path.ends_with(l->bias ? ".bias" : ".weight")) continue;
      params.push_back({layer + ".lora_A.weight", l->lora_rank * l->in, param_role::lora, l->block, true});
      params.push_back({layer + ".lora_B.weight", l->out * l->lora_rank, param_role::lora, l->block, true});
    }
    inv.params = std::move(params);
    require(chosen > 0, "LoRA: target_modules \"", adapter.target_modules, "\" matches none of the ",
            inv.linears.size(), " linear layers of this shape");
  } else {
    static_assert(dependent_false<A>, CONTACCUM_BANNER
                  "the cost models know FullFineTune, BlockFreeze, BiasOnly and LoRA; this adapter has no entry");
  }
}

/// \brief An encoder shape with adapter A applied.
template <class Config, Adapter A>
[[nodiscard]] encoder_inventory adapted_inventory(const Config& c, const A& adapter) {
  auto inv = inventory_of(c);
  apply_adapter(inv, adapter);
  return inv;
}

// The LM head and anything registered on it (a LoRA branch there): never run by an
// embedding model, so it gets no gradient and no optimizer state.
[[nodiscard]] inline bool on_lm_head(const param_entry& p) {
  return p.role == param_role::lm_head || p.path.starts_with("embed_out.");
}

/// \brief N: non-embedding parameters of the base model (no LoRA branch, no LM head).
[[nodiscard]] inline int64_t non_embedding(const encoder_inventory& inv) {
  int64_t n = 0;
  for (const auto& p : inv.params)
    if (p.role != param_role::embedding_table && p.role != param_role::lora && !on_lm_head(p)) n += p.numel;
  return n;
}

/// \brief N_t: trainable non-embedding parameters, LoRA's A and B included.
[[nodiscard]] inline int64_t trainable_non_embedding(const encoder_inventory& inv) {
  int64_t n = 0;
  for (const auto& p : inv.params)
    if (p.trainable && p.role != param_role::embedding_table && !on_lm_head(p)) n += p.numel;
  return n;
}

/// \brief Every parameter, LoRA branches included (what the encoder allocates).
[[nodiscard]] inline int64_t all_parameters(const encoder_inventory& inv) {
  int64_t n = 0;
  for (const auto& p : inv.params) n += p.numel;
  return n;
}

/// \brief Trainable parameters that get a gradient in training (the LM head never does).
[[nodiscard]] inline int64_t parameters_with_gradient(const encoder_inventory& inv) {
  int64_t n = 0;
  for (const auto& p : inv.params)
    if (p.trainable && !on_lm_head(p)) n += p.numel;
  return n;
}

/// \brief Sizes of the tensors AdamW updates, in its order: the Trainer's two parameter
///        groups (decayed, then biases and norms: exempt_from_weight_decay), each in
///        named_parameters order over `towers` copies of the encoder.
[[nodiscard]] inline std::vector<int64_t> optimizer_order(const encoder_inventory& inv, int64_t towers) {
  std::vector<int64_t> out;
  for (const bool exempt : {false, true})
    for (int64_t t = 0; t < towers; ++t)
      for (const auto& p : inv.params)
        if (p.trainable && !on_lm_head(p) && exempt_from_weight_decay(p.path) == exempt) out.push_back(p.numel);
  return out;
}

}  // namespace contaccum::detail
