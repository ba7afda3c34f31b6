#pragma once
/// \file
/// \brief The model families the planner chooses from, and the cost per token of each
///        method on a GPT-NeoX shape, counted from the config alone (no weights are built,
///        so a 2.8b family member costs nothing to plan with).
///
/// N_t per method on a GPT-NeoX shape with d = hidden_size, I = intermediate_size and L
/// blocks, each block holding 4d^2 + 2dI + I + 5d (+ 4d attention biases) parameters:
///  * full:         N_t = N;
///  * block_freeze: the top k blocks and the final LayerNorm, N_t = k x block + 2d;
///  * lora:         rank r on query_key_value, dense, dense_h_to_4h, dense_4h_to_h,
///                  N_t = L r (8d + 2I) (A is r x in, B is out x r);
///  * bias_only:    every bias, N_t = L (I + 3d (+ 4d attention biases)) + d.
/// These equal count_trainable_non_embedding on a GptNeox prepared by the adapter
/// (tests/unit/test_planner.cpp checks it). A user method (method_of<A>()) is counted by
/// its adapter's customisation (compute/adapter_cost.hpp) in the same way.

#include <contaccum/compute/flops.hpp>
#include <contaccum/compute/method.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/gpt_neox.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace contaccum {

/// \brief A model the planner may recommend: a name and its GPT-NeoX shape.
struct PlannerModel {
  std::string name;      ///< e.g. "pythia-410m"
  GptNeoxConfig config;  ///< its shape; only the sizes matter to the planner
};

/// \brief A GPT-NeoX config with Pythia's ratios: intermediate 4d, rotary_pct 0.25,
///        parallel residual, LayerNorm eps 1e-5, attention biases, untied LM head.
///
/// \code
/// auto micro = contaccum::pythia_shaped_config(2, 64, 4, 30522);  // a 2-block, d = 64 toy
/// \endcode
[[nodiscard]] inline GptNeoxConfig pythia_shaped_config(int64_t layers, int64_t hidden, int64_t heads,
                                                        int64_t vocab_size = 50304,
                                                        int64_t max_position_embeddings = 2048) {
  return {.vocab_size = vocab_size, .hidden_size = hidden, .num_hidden_layers = layers,
          .num_attention_heads = heads, .intermediate_size = 4 * hidden, .rotary_pct = 0.25,
          .max_position_embeddings = max_position_embeddings, .layer_norm_eps = 1e-5,
          .use_parallel_residual = true, .attention_bias = true, .tie_word_embeddings = false};
}

/// \brief The Pythia suite the paper trains (14m ... 2.8b), shapes as in the model cards
///        (layers, d_model, heads; vocab 50304).
[[nodiscard]] inline std::vector<PlannerModel> pythia_family() {
  auto m = [](const char* name, int64_t l, int64_t d, int64_t h) { return PlannerModel{name, pythia_shaped_config(l, d, h)}; };
  return {m("pythia-14m", 6, 128, 4),     m("pythia-31m", 6, 256, 8),    m("pythia-70m", 6, 512, 8),
          m("pythia-160m", 12, 768, 12),  m("pythia-410m", 24, 1024, 16), m("pythia-1b", 16, 2048, 8),
          m("pythia-1.4b", 24, 2048, 16), m("pythia-2.8b", 32, 2560, 32)};
}

namespace detail {
// `m`, or the built-in Method of that name when `m` was spelt by hand without a cost model.
[[nodiscard]] inline const Method& costed_method(const Method& m) {
  if (m.cost_per_token != nullptr && m.trainable_count != nullptr) return m;
  for (const auto& built_in : all_methods)
    if (built_in == m) return built_in;
  return m;
}
}  // namespace detail

/// \brief N_t: the non-embedding parameters `method` trains on a GPT-NeoX shape (see the
///        file comment), counted by the method's adapter (a user method's too). Throws
///        invalid_input for a setting the shape cannot take (k > L blocks), a missing/extra
///        setting, or a Method not made by method_of (it carries no cost).
[[nodiscard]] inline int64_t method_trainable_non_embedding(const GptNeoxConfig& c, const Method& method,
                                                            std::optional<int64_t> setting) {
  validate_setting(method, setting, "method_trainable_non_embedding");
  const auto& m = detail::costed_method(method);
  detail::require(m.trainable_count != nullptr, "method_trainable_non_embedding: method ", method_name(method),
                  " carries no cost model (make it with contaccum::method_of<Adapter>())");
  return m.trainable_count(c, setting);
}

/// \brief Training FLOPs per token of `method` (with its setting) on a GPT-NeoX shape,
///        by contaccum::flops_per_token and the adapter's FlopFormula: full 6N, block
///        freezing 2N + 4N_t, LoRA and bias-only 4N + 2N_t.
///
/// \code
/// // Pythia-70m, LoRA r = 8: 4 x 18915328 + 2 x 393216
/// double f = contaccum::method_flops_per_token(pythia_70m, contaccum::Method::lora, 8);
/// \endcode
[[nodiscard]] inline double method_flops_per_token(const GptNeoxConfig& c, const Method& method,
                                                   std::optional<int64_t> setting) {
  validate_setting(method, setting, "method_flops_per_token");
  const auto& m = detail::costed_method(method);
  detail::require(m.cost_per_token != nullptr, "method_flops_per_token: method ", method_name(method),
                  " carries no cost model (make it with contaccum::method_of<Adapter>())");
  return m.cost_per_token(c, setting);  // training_flops_per_token at sequence length 0: the paper's formula
}

}  // namespace contaccum
