// InfoNCE: the banked evaluation equals the dense reference formula (loss and gradients),
// also when the bank x bank scores are streamed in several chunks; symmetric and cosine.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

using namespace contaccum;
namespace F = torch::nn::functional;

namespace {
// The textbook formula: S = scale * e(Q) e(D)^T, mean CE with labels arange(|Q|).
template <class Sim>
torch::Tensor dense(const Sim& sim, const torch::Tensor& Q, const torch::Tensor& D) {
  auto s = scores(sim, Q, D);
  return F::cross_entropy(s, torch::arange(Q.size(0), torch::kLong));
}
torch::Tensor leaf(std::vector<int64_t> shape) {
  return torch::randn(shape, torch::kFloat64).requires_grad_(true);
}
}  // namespace

TEST_CASE("InfoNCE(q, d) is cross-entropy over q d^T with labels arange", "[loss]") {
  torch::manual_seed(3);
  auto q = leaf({5, 7}), d = leaf({12, 7});
  InfoNCE<> loss;
  auto a = loss(q, d);
  auto b = dense(DotProduct{}, q, d);
  CHECK(a.item<double>() == Approx(b.item<double>()).epsilon(1e-12));
  auto ga = torch::autograd::grad({a}, {q, d});
  auto gb = torch::autograd::grad({b}, {q, d});
  CHECK(test::relative_error(ga, gb) < 1e-12);
}

TEST_CASE("Symmetric cosine InfoNCE averages both directions", "[loss]") {
  torch::manual_seed(4);
  auto q = leaf({6, 5}), p = leaf({6, 5});
  InfoNCE<Cosine> loss{.similarity = {.temperature = 0.025}, .symmetric = true};
  auto a = loss(q, p);
  Cosine c{.temperature = 0.025};
  auto b = 0.5 * (dense(c, q, p) + dense(c, p, q));
  CHECK(a.item<double>() == Approx(b.item<double>()).epsilon(1e-12));
}

TEST_CASE("Banked InfoNCE equals the dense loss over [q; Mq] x [p; Mp; h; Mh]", "[loss]") {
  torch::manual_seed(5);
  const int64_t n = 4, m = 2, b = 3000, h = 6;  // b large enough to stream in chunks
  auto q = leaf({n, h}), p = leaf({n, h}), hn = leaf({n * m, h});
  auto bq = torch::randn({b, h}, torch::kFloat64), bp = torch::randn({b, h}, torch::kFloat64);
  auto bh = torch::randn({b * m, h}, torch::kFloat64);
  for (bool symmetric : {false, true}) {
    for (bool query_bank : {true, false}) {
      InfoNCE<> loss{.symmetric = symmetric};
      LossInputs in{q, p, hn, query_bank ? bq : torch::Tensor{}, bp, bh};
      auto got = loss(in);
      auto Q = query_bank ? torch::cat({q, bq}) : q;
      auto D = torch::cat({p, bp, hn, bh});
      auto want = dense(DotProduct{}, Q, D);
      if (symmetric) {
        auto P = query_bank ? torch::cat({p, bp}) : p;
        want = 0.5 * (want + dense(DotProduct{}, P, Q));
      }
      INFO("symmetric " << symmetric << " query_bank " << query_bank);
      CHECK(got.item<double>() == Approx(want.item<double>()).epsilon(1e-12));
      auto g1 = torch::autograd::grad({got}, {q, p, hn});
      auto g2 = torch::autograd::grad({want}, {q, p, hn});
      CHECK(test::relative_error(g1, g2) < 1e-10);
    }
  }
}

TEST_CASE("InfoNCE rejects mismatched shapes with a clear message", "[loss][errors]") {
  InfoNCE<> loss;
  auto q = torch::randn({4, 3});
  CHECK_THROWS_WITH(loss(q, torch::randn({3, 3})), Catch::Contains("4 queries but only 3 passages"));
  CHECK_THROWS_WITH(loss(LossInputs{q, torch::randn({4, 5})}), Catch::Contains("must both be (n, H)"));
}
