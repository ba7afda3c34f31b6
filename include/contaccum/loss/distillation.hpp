#pragma once
/// \file
/// \brief Distillation from a teacher's scores (typically a cross-encoder's), for a query,
///        its positive and m hard negatives.
///
///  - MarginMSE (Hofstätter et al., 2020): the student's margins s(q, p) - s(q, n_j) regress
///    the teacher's, L = mean_{i, j} (margin_ij - gold_ij)^2.
///  - DistillKLDiv (the KL form of RocketQAv2 / the listwise distillation of Lin et al.):
///    the student's distribution over [p, n_1..n_m] matches the teacher's,
///    L = T_s^2 / n * sum_i KL(softmax(t_i / T_t) || softmax(s_i / T_s)).
///
/// Both use PairDot by default and follow sentence-transformers' `MarginMSELoss` and
/// `DistillKLDivLoss` (label layouts, batch-mean reduction, the T_s^2 factor); the test
/// suite checks them against those on the same embeddings. The teacher's scores carry no
/// gradient. Shapes: q (n, H), p (n, H), h (n*m, H) query-major (row i*m + j is query i's
/// j-th negative, as PairBatch lays them out).
///
/// \code
/// contaccum::MarginMSE<> mse;
/// auto l1 = mse(q, p, h, teacher);                // teacher (n, 1 + m) scores or (n, m) margins
/// contaccum::DistillKLDiv<> kl{.temperature = 1.0};
/// auto l2 = kl(q, p, h, teacher);                 // teacher (n, 1 + m) scores
/// \endcode

#include <contaccum/detail/error.hpp>
#include <contaccum/loss/pair_similarity.hpp>

#include <torch/torch.h>

#include <optional>

namespace contaccum {

namespace detail {
/// The student's scores of each query with its positive and its m negatives -> (n, 1 + m).
template <class Sim>
torch::Tensor candidate_scores(const Sim& sim, const torch::Tensor& q, const torch::Tensor& p, const torch::Tensor& h,
                               const char* who) {
  require_pairs(q, p, who);
  const auto n = q.size(0);
  require(h.defined() && h.dim() == 2 && h.size(0) > 0 && h.size(0) % n == 0 && h.size(1) == q.size(1), who,
          ": hard negatives must be (n*m, H) with m >= 1 per query, got ", h.defined() ? h.sizes() : c10::IntArrayRef{},
          " for ", n, " queries of width ", q.size(1));
  const auto m = h.size(0) / n;
  const auto pos = sim(q, p);                                                     // (n)
  const auto neg = sim(q.repeat_interleave(m, 0), h).view({n, m});                // (n, m)
  return torch::cat({pos.unsqueeze(1), neg}, 1);                                  // (n, 1 + m)
}
}  // namespace detail

template <PairSimilarity Sim = PairDot>
struct MarginMSE {
  Sim similarity{};

  /// \brief q (n, H), p (n, H), h (n*m, H); teacher (n, 1 + m) scores [pos, negs], or
  ///        (n, m) margins (also (n) when m = 1) -> scalar.
  torch::Tensor operator()(const torch::Tensor& q, const torch::Tensor& p, const torch::Tensor& h,
                           const torch::Tensor& teacher) const {
    const auto s = detail::candidate_scores(similarity, q, p, h, "MarginMSE");  // (n, 1 + m)
    const auto n = s.size(0), m = s.size(1) - 1;
    detail::require(teacher.defined(), "MarginMSE: no teacher scores given");
    auto gold = teacher.detach().to(s.scalar_type());
    if (gold.dim() == 2 && gold.size(0) == n && gold.size(1) == m + 1)
      gold = gold.slice(1, 0, 1) - gold.slice(1, 1);  // scores -> margins (n, m)
    else if (gold.dim() == 1 && m == 1 && gold.size(0) == n)
      gold = gold.unsqueeze(1);
    detail::require(gold.dim() == 2 && gold.size(0) == n && gold.size(1) == m, "MarginMSE: teacher scores must be (",
                    n, ", ", m + 1, ") scores or (", n, ", ", m, ") margins, got ", teacher.sizes());
    const auto margins = s.slice(1, 0, 1) - s.slice(1, 1);  // (n, m)
    return torch::mse_loss(margins, gold);
  }
};

template <PairSimilarity Sim = PairDot>
struct DistillKLDiv {
  Sim similarity{};
  double temperature = 1.0;                  ///< both sides' temperature unless overridden
  std::optional<double> student_temperature;  ///< T_s
  std::optional<double> teacher_temperature;  ///< T_t

  /// \brief q (n, H), p (n, H), h (n*m, H); teacher (n, 1 + m) scores [pos, negs] -> scalar.
  torch::Tensor operator()(const torch::Tensor& q, const torch::Tensor& p, const torch::Tensor& h,
                           const torch::Tensor& teacher) const {
    const double ts = student_temperature.value_or(temperature), tt = teacher_temperature.value_or(temperature);
    detail::require(ts > 0 && tt > 0, "DistillKLDiv: temperatures must be positive, got student ", ts, " teacher ",
                    tt);
    const auto s = detail::candidate_scores(similarity, q, p, h, "DistillKLDiv");  // (n, 1 + m)
    detail::require(teacher.defined() && teacher.dim() == 2 && teacher.size(0) == s.size(0) &&
                        teacher.size(1) == s.size(1),
                    "DistillKLDiv: teacher scores must be (", s.size(0), ", ", s.size(1), ") for [positive, ",
                    s.size(1) - 1, " negatives], got ", teacher.defined() ? teacher.sizes() : c10::IntArrayRef{});
    const auto log_student = torch::log_softmax(s / ts, 1);                                // (n, 1 + m)
    const auto log_teacher = torch::log_softmax(teacher.detach().to(s.scalar_type()) / tt, 1);  // (n, 1 + m)
    // KL(teacher || student) summed over candidates, mean over queries
    const auto kl = (log_teacher.exp() * (log_teacher - log_student)).sum() / static_cast<double>(s.size(0));
    return kl * (ts * ts);
  }
};

}  // namespace contaccum
