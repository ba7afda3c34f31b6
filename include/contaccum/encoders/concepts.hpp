#pragma once
/// \file
/// \brief Concepts of the encoder family.
///
/// An **Encoder** is a LibTorch module holder that maps token ids and an attention mask
/// to hidden states. A **BiEncoder** is what a trainer trains: it turns token batches into
/// query and passage embeddings and tells which parameters belong to which tower.

#include <contaccum/data/batch.hpp>

#include <torch/torch.h>

#include <concepts>
#include <vector>

namespace contaccum {

/// \brief ids (B, T) int64 + mask (B, T) -> hidden states (B, T, H).
template <class E>
concept Encoder = requires(E e, const torch::Tensor& ids, const torch::Tensor& mask) {
  typename E::ContainedType;
  requires std::derived_from<typename E::ContainedType, torch::nn::Module>;
  { e->forward(ids, mask) } -> std::convertible_to<torch::Tensor>;
  { e->hidden_size() } -> std::convertible_to<int64_t>;
};

/// \brief A query tower and a passage tower (possibly the same module) with pooled outputs.
template <class M>
concept BiEncoder = requires(M m, const TokenBatch& b, bool on) {
  { m->encode_queries(b) } -> std::convertible_to<torch::Tensor>;   // (B, H)
  { m->encode_passages(b) } -> std::convertible_to<torch::Tensor>;  // (B, H)
  { m->query_parameters() } -> std::convertible_to<std::vector<torch::Tensor>>;
  { m->passage_parameters() } -> std::convertible_to<std::vector<torch::Tensor>>;
  { m->named_parameters() };
  m->train(on);
};

}  // namespace contaccum
