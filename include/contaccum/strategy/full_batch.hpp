#pragma once
/// \file
/// \brief FullBatch: one InfoNCE over all N_total pairs of the step, in one backward.
/// When to use: as the reference every other strategy is measured against, or when
/// N_total pairs fit in memory. Memory grows with N_total.
///
///   L = InfoNCE(q_{1..N}, [p_{1..N}; h_{1..N*m}])

#include <contaccum/dist/single_process.hpp>
#include <contaccum/strategy/concepts.hpp>
#include <contaccum/strategy/detail/encode.hpp>

#include <string_view>
#include <vector>

namespace contaccum {

struct FullBatchConfig {
  /// Encode the towers in chunks of this many pairs (0 = all at once). The graph of
  /// every chunk is kept, so the gradient is the full-batch one; only the dropout draws
  /// follow the chunking (set it to N_local to compare with GradCache mask for mask).
  int64_t encode_chunk = 0;
};

template <Collective C = SingleProcess>
class FullBatch {
public:
  static constexpr std::string_view name = "FullBatch";
  using config_type = FullBatchConfig;

  explicit FullBatch(FullBatchConfig config = {}, C collective = {}) : config_(config), collective_(collective) {}

  template <BiEncoder M, ContrastiveLoss L>
  Accumulation accumulate(M& model, const L& loss, const PairBatch& batch, const StepContext& ctx) {
    const auto chunk = config_.encode_chunk > 0 ? config_.encode_chunk : batch.size();
    std::vector<torch::Tensor> qs, ps, hs;
    for (const PairBatch& mb : micro_batches(batch, chunk)) {
      qs.push_back(model->encode_queries(mb.queries));  // (n, H)
      auto d = detail::encode_passages(model, mb);
      ps.push_back(d.positives);
      hs.push_back(d.hard_negatives);
    }
    LossInputs in{.queries = torch::cat(qs), .positives = torch::cat(ps), .hard_negatives = torch::cat(hs)};
    detail::check_width(in.queries, in.positives, ctx.step);
    auto l = loss(collective_.exchange(in));
    const double v = detail::finite_or_throw(l, ctx.step, 0);
    l.backward();
    const auto n = batch.size();
    return {v, static_cast<double>(n - 1 + n * batch.negatives_per_query()), 1};
  }

  void finish_step(bool /*applied*/) {}
  [[nodiscard]] const FullBatchConfig& config() const { return config_; }

private:
  FullBatchConfig config_;
  C collective_;
};

}  // namespace contaccum
