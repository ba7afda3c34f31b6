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

// ---------------------------------------------------------------------------------------
// Matryoshka: against sentence-transformers' MatryoshkaLoss(MultipleNegativesRankingLoss)
// on the same embeddings, and under GradCache and ContAccum against dense recomputations.

namespace {

// The Matryoshka sum written out densely: rows [q; Mq] against columns [p; Mp; h; Mh],
// each prefix cut and renormalised, cross-entropy with row i's positive at its own column.
struct DenseMatryoshka {
  double temperature = 0.05;
  std::vector<int64_t> dims;
  std::vector<double> weights;
  torch::Tensor operator()(const LossInputs& in) const {
    auto join = [](std::initializer_list<const torch::Tensor*> ts) {
      std::vector<torch::Tensor> kept;
      for (const auto* t : ts)
        if (t->defined() && t->size(0) > 0) kept.push_back(*t);
      return torch::cat(kept);
    };
    const auto n = in.queries.size(0), b = rows_of(in.bank_queries);
    auto rows = join({&in.queries, &in.bank_queries});
    auto cols = join({&in.positives, &in.bank_positives, &in.hard_negatives, &in.bank_hard_negatives});
    auto labels = torch::cat({torch::arange(n, torch::kLong), n + torch::arange(b, torch::kLong)});
    torch::Tensor total;
    for (std::size_t k = 0; k < dims.size(); ++k) {
      auto r = F::normalize(rows.slice(1, 0, dims[k]), F::NormalizeFuncOptions().dim(1));
      auto c = F::normalize(cols.slice(1, 0, dims[k]), F::NormalizeFuncOptions().dim(1));
      auto l = weights[k] * F::cross_entropy(torch::matmul(r, c.t()) / temperature, labels);
      total = total.defined() ? total + l : l;
    }
    return total;
  }
};

}  // namespace

TEST_CASE("Matryoshka equals sentence-transformers' MatryoshkaLoss over MNRL (loss and gradients)",
          "[loss][matryoshka][python]") {
  torch::manual_seed(21);
  auto q = leaf({6, 16}), p = leaf({6, 16}), h = leaf({12, 16});  // m = 2 hard negatives, query-major
  const Matryoshka<InfoNCE<Cosine>> loss{.inner = {.similarity = {.temperature = 0.05}},  // MNRL's scale 20
                                         .dims = {16, 8, 4}, .weights = {1.0, 0.5, 0.25}};
  auto ours = loss(LossInputs{.queries = q, .positives = p, .hard_negatives = h});
  auto g = torch::autograd::grad({ours}, {q, p, h});

  const auto dir = test::scratch_dir("matryoshka");
  save_safetensors(dir / "in.safetensors", {{"q", q.detach()}, {"p", p.detach()}, {"h", h.detach()}},
                   {{"scale", "20"}, {"dims", "[16, 8, 4]"}, {"weights", "[1.0, 0.5, 0.25]"}});
  REQUIRE(test::run_python_reference("st_loss_reference.py", "matryoshka " + (dir / "in.safetensors").string() + " " +
                                                                 (dir / "out.safetensors").string()));
  const auto ref = load_safetensors(dir / "out.safetensors");
  CHECK(ours.item<double>() == Approx(ref.at("loss").item<double>()).epsilon(1e-12));
  CHECK(test::relative_error({g[0], g[1], g[2]}, {ref.at("q"), ref.at("p"), ref.at("h")}) <= 1e-10);
  // control: the prefixes matter (the full-width InfoNCE alone is another value)
  CHECK(std::abs(InfoNCE<Cosine>{.similarity = {.temperature = 0.05}}(q, torch::cat({p, h})).item<double>() -
                 ours.item<double>()) > 0.1);
}

TEST_CASE("Matryoshka with GradCache equals FullBatch, and with ContAccum equals the dense recomputation",
          "[loss][matryoshka][strategy]") {
  const Matryoshka<InfoNCE<Cosine>> loss{.inner = {.similarity = {.temperature = 0.05}}, .dims = {6, 3, 2},
                                         .weights = {1.0, 0.7, 0.3}};
  const DenseMatryoshka dense{.temperature = 0.05, .dims = {6, 3, 2}, .weights = {1.0, 0.7, 0.3}};
  CHECK(loss.chance_terms() == Approx(2.0));

  SECTION("GradCache: the gradient of the whole sum through the cached embeddings, dropout on") {
    torch::manual_seed(5);
    DualEncoder<Bert, MeanPooling> model(test::tiny_bert(0.1));
    model->to(torch::kFloat64);
    auto data = test::tiny_data(/*m=*/1);
    const auto batch = data.next(10);
    Matryoshka<InfoNCE<Cosine>> wide = loss;
    wide.dims = {32, 16, 8};  // the tiny BERT's width is 32
    DenseMatryoshka wide_dense = dense;
    wide_dense.dims = wide.dims;
    auto run = [&](auto strategy, const auto& l) {
      auto params = model->parameters();
      test::zero_grads(params);
      model->train();
      torch::manual_seed(9);
      auto acc = strategy.accumulate(model, l, batch, StepContext{0, 4});
      strategy.finish_step(true);
      return std::pair{acc.loss, test::grads_of(params)};
    };
    const auto [l_full, g_full] = run(FullBatch<>({.encode_chunk = 4}), wide);
    const auto [l_cache, g_cache] = run(GradCache<>(), wide);
    const auto [l_dense, g_dense] = run(FullBatch<>({.encode_chunk = 4}), wide_dense);
    CHECK(l_cache == Approx(l_full).epsilon(1e-12));
    CHECK(l_dense == Approx(l_full).epsilon(1e-12));
    CHECK(test::relative_error(g_cache, g_full) <= 1e-10);
    CHECK(test::relative_error(g_dense, g_full) <= 1e-10);
  }

  SECTION("ContAccum: banked rows and columns cut like the current ones, over 3 steps") {
    torch::manual_seed(8);
    test::LookupBiEncoder model(400, 6);
    ContAccum<DualBank> ours({.capacity = 8}), reference({.capacity = 8});
    auto params = model->parameters();
    for (int s = 0; s < 3; ++s) {
      const auto batch = test::lookup_batch(s * 8, s * 16, 8, 1);
      test::zero_grads(params);
      auto a = ours.accumulate(model, loss, batch, StepContext{s, 4});
      ours.finish_step(true);
      auto ga = test::grads_of(params);
      test::zero_grads(params);
      auto b = reference.accumulate(model, dense, batch, StepContext{s, 4});
      reference.finish_step(true);
      auto gb = test::grads_of(params);
      INFO("step " << s);
      CHECK(a.negatives_per_query > 8);  // the bank took part
      CHECK(a.loss == Approx(b.loss).epsilon(1e-12));
      CHECK(test::relative_error(ga, gb) <= 1e-10);
    }
  }
}

TEST_CASE("Matryoshka refuses dims wider than the embedding, naming the dim", "[loss][matryoshka][errors]") {
  const Matryoshka<InfoNCE<>> loss{.dims = {8, 32}};
  auto q = leaf({3, 8}), d = leaf({3, 8});
  CHECK_THROWS_WITH(loss(q, d), Catch::Contains("dim 32 (dims[1]) must lie in [1, 8]"));
  const Matryoshka<InfoNCE<>> no_weights{.dims = {8, 4}, .weights = {1.0}};
  CHECK_THROWS_WITH(no_weights(q, d), Catch::Contains("1 weights for 2 dims"));
}
