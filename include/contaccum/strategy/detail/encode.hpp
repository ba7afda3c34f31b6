#pragma once
/// \file
/// \brief Shared pieces of the schedules and the driver: encoding a micro-batch's
///        passages, finiteness and width checks.

#include <contaccum/data/batch.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/concepts.hpp>
#include <contaccum/strategy/concepts.hpp>

#include <torch/torch.h>

#include <cmath>

namespace contaccum::detail {

struct encoded_docs {
  torch::Tensor positives;       // (n, H)
  torch::Tensor hard_negatives;  // (n*m, H), maybe (0, H)
};

// Queries through the query tower, in the context's precision: (n, H).
template <BiEncoder M>
torch::Tensor encode_queries(M& model, const PairBatch& mb, const EncodeContext& how) {
  return how.encoding([&] { return model->encode_queries(mb.queries); });
}

// Positives and hard negatives go through the passage tower in one call, as DPR does:
// (n + n*m, H), in the context's precision.
template <BiEncoder M>
torch::Tensor encode_documents(M& model, const PairBatch& mb, const EncodeContext& how) {
  return how.encoding([&] { return model->encode_passages(cat_rows(mb.positives, mb.hard_negatives)); });
}

template <BiEncoder M>
encoded_docs encode_passages(M& model, const PairBatch& mb, const EncodeContext& how) {
  const auto n = mb.size();
  auto d = encode_documents(model, mb, how);  // (n + n*m, H)
  return {d.slice(0, 0, n), d.slice(0, n)};
}

// Loss value as double; throws non_finite_loss (no update has happened yet).
inline double finite_or_throw(const torch::Tensor& loss, int64_t step, int64_t micro_batch) {
  const double v = loss.item<double>();
  if (!std::isfinite(v))
    throw non_finite_loss(cat("contaccum: step ", step, ": loss is ", v, " at micro-batch ", micro_batch,
                              "; no parameter was updated and the memory bank is unchanged"),
                          step);
  return v;
}

inline void check_width(const torch::Tensor& q, const torch::Tensor& p, int64_t step) {
  require(q.dim() == 2 && p.dim() == 2 && q.size(1) == p.size(1), "step ", step, ": query embeddings ", q.sizes(),
          " and passage embeddings ", p.sizes(), " must be (n, H) with the same H");
}

}  // namespace contaccum::detail
