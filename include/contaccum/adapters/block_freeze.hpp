#pragma once
/// \file
/// \brief BlockFreeze: the input embedding and the first L - k Transformer blocks are
///        frozen; the last k blocks (and, for GPT-NeoX, the final LayerNorm) train.
///
/// The compute-optimal recipe's "block freezing" (Ziarko et al. 2024, arXiv 2406.04165).
/// Freezing alone would still record the frozen blocks' graph whenever the input needs a
/// gradient; here the encoder also runs its frozen prefix under torch::NoGradGuard
/// (`set_first_trainable_layer`), so the frozen blocks keep no activations and backward
/// stops at the first trainable block: the paper's cost model 2N + 4N_t per token.
/// Everything else of the encoder is frozen too, e.g. GptNeox's unused LM head embed_out.
/// When to use: close to full fine-tuning in quality at every budget the paper tried, with
/// less memory and compute per token; a good choice when full fine-tuning does not fit.

#include <contaccum/adapters/concepts.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/bert.hpp>
#include <contaccum/encoders/gpt_neox.hpp>

#include <torch/torch.h>

#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

namespace contaccum {

/// \brief The modules that train under BlockFreeze when the blocks from `first` on train:
///        BERT's layers [first, L) (post-LN: nothing follows the last block).
[[nodiscard]] inline std::vector<std::shared_ptr<torch::nn::Module>> block_freeze_trainable_modules(Bert& model,
                                                                                                    int64_t first) {
  std::vector<std::shared_ptr<torch::nn::Module>> out;
  const auto& layers = *model->encoder->layer;
  for (auto i = static_cast<size_t>(first); i < layers.size(); ++i) out.push_back(layers[i]);
  return out;
}

/// \brief GPT-NeoX's layers [first, L) and final_layer_norm (the LM head stays frozen).
[[nodiscard]] inline std::vector<std::shared_ptr<torch::nn::Module>> block_freeze_trainable_modules(GptNeox& model,
                                                                                                    int64_t first) {
  std::vector<std::shared_ptr<torch::nn::Module>> out;
  const auto& layers = *model->gpt_neox->layers;
  for (auto i = static_cast<size_t>(first); i < layers.size(); ++i) out.push_back(layers[i]);
  out.push_back(model->gpt_neox->final_layer_norm.ptr());
  return out;
}

namespace detail {
template <class E>
inline constexpr bool the_encoder_has_no_num_layers_set_first_trainable_layer_or_block_freeze_trainable_modules = false;
template <class M>
inline constexpr bool block_freeze_needs_a_BlockFreezable_encoder_or_a_TwoTowerModel_of_them = false;

template <class E>
concept BlockFreezableImpl = requires(E& e, std::optional<int64_t> n) {
  { e->num_layers() } -> std::convertible_to<int64_t>;
  e->set_first_trainable_layer(n);
  { block_freeze_trainable_modules(e, int64_t{0}) } -> std::same_as<std::vector<std::shared_ptr<torch::nn::Module>>>;
};
}  // namespace detail

/// \brief An encoder BlockFreeze can cut: it counts its blocks, runs a frozen prefix
///        without autograd, and names the modules after the cut (an overload of
///        block_freeze_trainable_modules found by argument-dependent lookup). Bert and
///        GptNeox are; a user encoder becomes one by providing the three.
template <class E>
concept BlockFreezable =
    detail::BlockFreezableImpl<E> ||
    detail::the_encoder_has_no_num_layers_set_first_trainable_layer_or_block_freeze_trainable_modules<E>;

/// \brief A TwoTowerModel (DualEncoder) whose towers are BlockFreezable.
template <class M>
concept BlockFreezableTowers = TwoTowerModel<M> && BlockFreezable<tower_type<M>>;

/// \brief A model BlockFreeze can prepare: a BlockFreezable encoder, or a model with
///        BlockFreezableTowers (each tower is cut).
template <class M>
concept BlockFreezableModel = BlockFreezable<M> || BlockFreezableTowers<M> ||
                              detail::block_freeze_needs_a_BlockFreezable_encoder_or_a_TwoTowerModel_of_them<M>;

/// \brief Adapter: the last `trainable_blocks` (k) blocks train, the embedding and the
///        blocks below are frozen and run without autograd. k = L freezes the embedding only.
///
/// Works on a BlockFreezableModel: an encoder (Bert, GptNeox) or a DualEncoder of them.
/// \code
/// contaccum::Trainer<Model, contaccum::GradAccum<>, contaccum::BlockFreeze> trainer(
///     std::move(model), config, {}, contaccum::BlockFreeze{.trainable_blocks = 2});
/// \endcode
struct BlockFreeze {
  static constexpr std::string_view name = "block_freeze";

  int64_t trainable_blocks = 1;  ///< k: how many of the top blocks train

  /// \brief Freezes all but the last k blocks of the encoder, or of each tower. Throws
  ///        invalid_input when k is outside [0, L].
  template <BlockFreezableModel Model>
  void prepare(Model& model) const {
    if constexpr (BlockFreezableTowers<Model>) {
      cut(model->query_encoder);
      if (model->passage_encoder.ptr() != model->query_encoder.ptr()) cut(model->passage_encoder);
      // Anything beside the towers (none today) stays as it was.
    } else {
      cut(model);
    }
  }

private:
  template <BlockFreezable E>
  void cut(E& encoder) const {
    const int64_t layers = encoder->num_layers();
    detail::require(trainable_blocks >= 0 && trainable_blocks <= layers, "BlockFreeze: trainable_blocks (k) = ",
                    trainable_blocks, " is outside [0, ", layers, "]: the encoder has ", layers, " blocks");
    const auto first = layers - trainable_blocks;
    for (auto& p : encoder->parameters()) p.requires_grad_(false);
    for (const auto& m : block_freeze_trainable_modules(encoder, first))
      for (auto& p : m->parameters()) p.requires_grad_(true);
    encoder->set_first_trainable_layer(first);
  }
};

}  // namespace contaccum
