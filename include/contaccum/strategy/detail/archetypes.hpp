#pragma once
/// \file
/// \brief Archetypes: the least a BiEncoder and a ContrastiveLoss must offer. The strategy
///        concepts check a policy against them, so `Strategy<S>` means "can train any
///        bi-encoder with any contrastive loss", not "has the right member names".
///        Declared only: they live in unevaluated contexts.

#include <contaccum/data/batch.hpp>
#include <contaccum/encoders/concepts.hpp>
#include <contaccum/loss/concepts.hpp>

#include <torch/torch.h>

#include <string>
#include <vector>

namespace contaccum::detail {

struct bi_encoder_archetype_impl {
  torch::Tensor encode_queries(const TokenBatch&);
  torch::Tensor encode_passages(const TokenBatch&);
  std::vector<torch::Tensor> query_parameters() const;
  std::vector<torch::Tensor> passage_parameters() const;
  torch::OrderedDict<std::string, torch::Tensor> named_parameters() const;
  void train(bool);
};
struct bi_encoder_archetype {
  bi_encoder_archetype_impl* operator->();
};
static_assert(BiEncoder<bi_encoder_archetype>);

struct loss_archetype {
  torch::Tensor operator()(const LossInputs&) const;
};
static_assert(ContrastiveLoss<loss_archetype>);

}  // namespace contaccum::detail
