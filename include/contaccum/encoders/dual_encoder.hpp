#pragma once
/// \file
/// \brief DualEncoder: a query tower and a passage tower (untied, as in DPR, or one shared
///        tower, as in sentence-transformers) read out by a pooling policy.

#include <contaccum/data/batch.hpp>
#include <contaccum/detail/banner.hpp>
#include <contaccum/encoders/concepts.hpp>
#include <contaccum/pooling/concepts.hpp>

#include <torch/torch.h>

#include <type_traits>
#include <vector>

namespace contaccum {

/// \brief Tower policy: two encoders with their own parameters (DPR, ContAccum paper).
struct SeparateTowers {};
/// \brief Tower policy: one encoder for queries and passages (sentence embedders).
struct SharedTower {};

template <class T>
concept TowerPolicy = std::same_as<T, SeparateTowers> || std::same_as<T, SharedTower>;

template <Encoder E, Pooler P, TowerPolicy Towers = SeparateTowers>
class DualEncoderImpl : public torch::nn::Module {
public:
  using encoder_type = E;
  using pooler_type = P;
  static constexpr bool shared = std::is_same_v<Towers, SharedTower>;

  /// \brief Separate towers from two encoders.
  DualEncoderImpl(E query, E passage, P pooler = {})
    requires(!shared)
      : pooler_(pooler) {
    query_encoder = register_module("query_encoder", std::move(query));
    passage_encoder = register_module("passage_encoder", std::move(passage));
  }
  /// \brief One shared tower.
  explicit DualEncoderImpl(E encoder, P pooler = {})
    requires shared
      : pooler_(pooler) {
    query_encoder = register_module("encoder", std::move(encoder));
    passage_encoder = query_encoder;
  }
  /// \brief Builds the tower(s) from an encoder config (each tower randomly initialised).
  template <class Config>
    requires std::constructible_from<E, const Config&> && (!std::same_as<std::remove_cvref_t<Config>, E>)
  explicit DualEncoderImpl(const Config& config, P pooler = {}) : pooler_(pooler) {
    if constexpr (shared) {
      query_encoder = register_module("encoder", E(config));
      passage_encoder = query_encoder;
    } else {
      query_encoder = register_module("query_encoder", E(config));
      passage_encoder = register_module("passage_encoder", E(config));
    }
  }

  /// \brief Token batch (B, T) -> query embeddings (B, H).
  torch::Tensor encode_queries(const TokenBatch& b) {
    return pooler_(query_encoder->forward(b.input_ids, b.attention_mask), b.attention_mask);
  }
  /// \brief Token batch (B, T) -> passage embeddings (B, H).
  torch::Tensor encode_passages(const TokenBatch& b) {
    return pooler_(passage_encoder->forward(b.input_ids, b.attention_mask), b.attention_mask);
  }

  std::vector<torch::Tensor> query_parameters() const { return query_encoder->parameters(); }
  std::vector<torch::Tensor> passage_parameters() const { return passage_encoder->parameters(); }
  [[nodiscard]] int64_t hidden_size() const { return query_encoder->hidden_size(); }

  E query_encoder{nullptr};
  E passage_encoder{nullptr};

private:
  P pooler_;
};

/// \brief Module holder for DualEncoderImpl (the TORCH_MODULE pattern, for a template).
///
/// \code
/// using Model = contaccum::DualEncoder<contaccum::Bert, contaccum::ClsPooling>;
/// Model model(contaccum::BertConfig{...});
/// auto q = model->encode_queries(batch.queries);  // (B, H)
/// \endcode
template <Encoder E, Pooler P, TowerPolicy Towers = SeparateTowers>
class DualEncoder : public torch::nn::ModuleHolder<DualEncoderImpl<E, P, Towers>> {
public:
  using torch::nn::ModuleHolder<DualEncoderImpl<E, P, Towers>>::ModuleHolder;
  using Impl = DualEncoderImpl<E, P, Towers>;
};

}  // namespace contaccum
