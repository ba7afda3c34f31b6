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

// One training step's loss and parameter gradients under `strategy`, dropout on, seeded.
template <class Strategy, class Model, class Loss>
std::pair<double, std::vector<torch::Tensor>> step_grads(Strategy strategy, Model& model, const Loss& loss,
                                                          const PairBatch& batch) {
  auto params = model->parameters();
  test::zero_grads(params);
  model->train();
  torch::manual_seed(9);
  auto acc = strategy.accumulate(model, loss, batch, StepContext{0, 4});
  strategy.finish_step(true);
  return {acc.loss, test::grads_of(params)};
}

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
    const auto [l_full, g_full] = step_grads(FullBatch<>({.encode_chunk = 4}), model, wide, batch);
    const auto [l_cache, g_cache] = step_grads(GradCache<>(), model, wide, batch);
    const auto [l_dense, g_dense] = step_grads(FullBatch<>({.encode_chunk = 4}), model, wide_dense, batch);
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

// ---------------------------------------------------------------------------------------
// The scored-pair (CoSENT, AnglE), distillation (MarginMSE, DistillKLDiv) and guided
// (GISTEmbed) losses: against sentence-transformers' implementations on the same embeddings.

#include <contaccum/loss/cosent.hpp>
#include <contaccum/loss/distillation.hpp>
#include <contaccum/loss/gist.hpp>

namespace {

// Runs st_loss_reference.py `cmd` on the tensors and metadata -> {loss, grads of q, p, h}.
std::map<std::string, torch::Tensor> st_reference(const std::string& cmd,
                                                  const std::map<std::string, torch::Tensor>& tensors,
                                                  const std::map<std::string, std::string>& meta = {}) {
  const auto dir = test::scratch_dir("st_loss_" + cmd);
  std::map<std::string, torch::Tensor> detached;
  for (const auto& [k, v] : tensors) detached[k] = v.detach();
  save_safetensors(dir / "in.safetensors", detached, meta);
  REQUIRE(test::run_python_reference("st_loss_reference.py", cmd + " " + (dir / "in.safetensors").string() + " " +
                                                                 (dir / "out.safetensors").string()));
  return load_safetensors(dir / "out.safetensors");
}

// Our loss and gradients vs the reference's, for the leaves named in `leaves` (q, p[, h]).
void check_against(const torch::Tensor& ours, const std::vector<std::pair<std::string, torch::Tensor>>& leaves,
                   const std::map<std::string, torch::Tensor>& ref) {
  std::vector<torch::Tensor> inputs, want;
  for (const auto& [name, t] : leaves) {
    inputs.push_back(t);
    want.push_back(ref.at(name));
  }
  CHECK(ours.item<double>() == Approx(ref.at("loss").item<double>()).epsilon(1e-10));
  const auto got = torch::autograd::grad({ours}, inputs, {}, /*retain_graph=*/true, false, /*allow_unused=*/true);
  std::vector<torch::Tensor> g;
  for (std::size_t i = 0; i < got.size(); ++i) g.push_back(got[i].defined() ? got[i] : torch::zeros_like(inputs[i]));
  CHECK(test::relative_error(g, want) <= 1e-8);
}

}  // namespace

TEST_CASE("CoSENT and AnglE equal sentence-transformers' CoSENTLoss and AnglELoss", "[loss][cosent][python]") {
  torch::manual_seed(31);
  const int64_t n = 9, h = 7;  // odd width: AnglE pads one zero
  auto a = leaf({n, h}), b = leaf({n, h});
  // STS-like gold scores with ties (tied pairs are not ordered against each other)
  const auto labels = torch::tensor({0.0, 1.0, 2.5, 2.5, 4.0, 1.0, 5.0, 0.0, 3.0}, torch::kFloat64);

  SECTION("CoSENT, cosine, scale 20") {
    const CoSENT<> loss;
    check_against(loss(a, b, labels), {{"q", a}, {"p", b}}, st_reference("cosent", {{"q", a}, {"p", b}, {"labels", labels}}, {{"scale", "20"}}));
  }
  SECTION("CoSENT, scale 5; the dense n x n form gives the same value") {
    const CoSENT<> loss{.scale = 5.0};
    const auto ours = loss(a, b, labels);
    check_against(ours, {{"q", a}, {"p", b}}, st_reference("cosent", {{"q", a}, {"p", b}, {"labels", labels}}, {{"scale", "5"}}));
    const auto s = 5.0 * PairCosine{}(a, b);
    const auto diff = (s.unsqueeze(1) - s.unsqueeze(0)).masked_fill(labels.unsqueeze(1) >= labels.unsqueeze(0), -INFINITY);
    const auto dense = torch::logsumexp(torch::cat({torch::zeros({1}, torch::kFloat64), diff.flatten()}), 0);
    CHECK(ours.item<double>() == Approx(dense.item<double>()).epsilon(1e-12));
  }
  SECTION("AnglE on pairs") {
    const AnglE loss;
    check_against(loss(a, b, labels), {{"q", a}, {"p", b}}, st_reference("angle", {{"q", a}, {"p", b}, {"labels", labels}}, {{"scale", "20"}}));
  }
  SECTION("AnglE on (anchor, positive, 2 negatives): negatives take 1 - label") {
    auto hn = leaf({n * 2, h});
    const AnglE loss;
    const auto ours = loss(LossInputs{.queries = a, .positives = b, .hard_negatives = hn});
    check_against(ours, {{"q", a}, {"p", b}, {"h", hn}}, st_reference("angle", {{"q", a}, {"p", b}, {"h", hn}}, {{"scale", "20"}}));
  }
}

TEST_CASE("MarginMSE and DistillKLDiv equal sentence-transformers' on teacher scores", "[loss][distill][python]") {
  torch::manual_seed(32);
  const int64_t n = 6, m = 3, h = 8;
  auto q = leaf({n, h}), p = leaf({n, h}), hn = leaf({n * m, h});
  const auto teacher = torch::randn({n, 1 + m}, torch::kFloat64) * 3;  // a cross-encoder's logits
  const std::map<std::string, torch::Tensor> in{{"q", q}, {"p", p}, {"h", hn}, {"labels", teacher}};
  const std::vector<std::pair<std::string, torch::Tensor>> leaves{{"q", q}, {"p", p}, {"h", hn}};

  SECTION("MarginMSE from (n, 1 + m) scores, and the same from (n, m) margins") {
    const MarginMSE<> loss;
    const auto ours = loss(q, p, hn, teacher);
    check_against(ours, leaves, st_reference("margin_mse", in));
    const auto margins = teacher.slice(1, 0, 1) - teacher.slice(1, 1);  // (n, m)
    CHECK(loss(q, p, hn, margins).item<double>() == Approx(ours.item<double>()).epsilon(1e-12));
    CHECK_THROWS_WITH(loss(q, p, hn, torch::zeros({n, m + 2})), Catch::Contains("must be (6, 4) scores or (6, 3) margins"));
  }
  SECTION("DistillKLDiv with student and teacher temperatures") {
    const DistillKLDiv<> loss{.student_temperature = 2.0, .teacher_temperature = 0.5};
    check_against(loss(q, p, hn, teacher), leaves,
                  st_reference("distill_kl", in, {{"student_temperature", "2"}, {"teacher_temperature", "0.5"}}));
    // the student matching the teacher exactly has zero loss
    const DistillKLDiv<> plain;
    const auto s = contaccum::detail::candidate_scores(PairDot{}, q, p, hn, "test").detach();
    CHECK(plain(q, p, hn, s).item<double>() == Approx(0.0).margin(1e-12));
    CHECK_THROWS_WITH(plain(q, p, hn, teacher.slice(1, 0, 2)), Catch::Contains("teacher scores must be (6, 4)"));
  }
}

TEST_CASE("GISTEmbed equals sentence-transformers' GISTEmbedLoss, and its guide removes planted false negatives",
          "[loss][gist][python]") {
  torch::manual_seed(33);
  const int64_t n = 8, h = 6, gh = 5;  // the guide is another model: another width
  auto q = leaf({n, h}), p = leaf({n, h}), hn = leaf({n, h});
  auto gq = torch::randn({n, gh}, torch::kFloat64), gp = gq + 0.6 * torch::randn({n, gh}, torch::kFloat64);
  auto gneg = torch::randn({n, gh}, torch::kFloat64);
  gneg[2] = gq[2] * 1.5;  // the guide sees query 2's negative as a positive: a false negative
  gp[5] = gq[4];          // and query 4 as having the same answer as query 5
  const LossInputs student{.queries = q, .positives = p, .hard_negatives = hn};
  const LossInputs guide{.queries = gq, .positives = gp, .hard_negatives = gneg};
  const std::map<std::string, torch::Tensor> in{{"q", q}, {"p", p}, {"h", hn}, {"gq", gq}, {"gp", gp}, {"gh", gneg}};
  const std::vector<std::pair<std::string, torch::Tensor>> leaves{{"q", q}, {"p", p}, {"h", hn}};
  for (const auto& [strategy, margin, anchors, positives] :
       std::vector<std::tuple<GISTEmbed::Margin, double, bool, bool>>{{GISTEmbed::Margin::Absolute, 0.0, true, true},
                                                                      {GISTEmbed::Margin::Absolute, 0.1, false, true},
                                                                      {GISTEmbed::Margin::Relative, 0.2, true, false}}) {
    const bool relative = strategy == GISTEmbed::Margin::Relative;
    INFO("relative " << relative << " margin " << margin << " anchors " << anchors << " positives " << positives);
    const GISTEmbed loss{.margin_strategy = strategy, .margin = margin, .contrast_anchors = anchors,
                         .contrast_positives = positives};
    const auto ours = loss(student, guide);
    check_against(ours, leaves,
                  st_reference("gist", in,
                               {{"temperature", "0.01"}, {"margin_strategy", relative ? "relative" : "absolute"},
                                {"margin", std::to_string(margin)}, {"contrast_anchors", anchors ? "1" : "0"},
                                {"contrast_positives", positives ? "1" : "0"}}));
    // control: the planted rows are filtered (the ST agreement above covered the masking):
    // without them the guide keeps those candidates and the loss is another value
    auto plain_neg = gneg.clone(), plain_pos = gp.clone();
    plain_neg[2] = torch::randn({gh}, torch::kFloat64);
    plain_pos[5] = gq[5] + 0.6 * torch::randn({gh}, torch::kFloat64);
    const auto unplanted = loss(student, LossInputs{.queries = gq, .positives = plain_pos, .hard_negatives = plain_neg});
    CHECK(std::abs(unplanted.item<double>() - ours.item<double>()) > 1e-3);
  }
  const GISTEmbed loss;
  CHECK_THROWS_WITH(loss(LossInputs{.queries = q, .positives = p, .bank_positives = p.detach()}, guide),
                    Catch::Contains("banked rows have no guide embeddings"));
}

TEST_CASE("AnglE's n-tuple form trains under GradCache exactly as under FullBatch", "[loss][cosent][strategy]") {
  torch::manual_seed(34);
  DualEncoder<Bert, MeanPooling> model(test::tiny_bert(0.1));
  model->to(torch::kFloat64);
  auto data = test::tiny_data(/*m=*/1);
  const auto batch = data.next(10);
  const AnglE loss;
  const auto [l_full, g_full] = step_grads(FullBatch<>({.encode_chunk = 4}), model, loss, batch);
  const auto [l_cache, g_cache] = step_grads(GradCache<>(), model, loss, batch);
  CHECK(l_cache == Approx(l_full).epsilon(1e-12));
  CHECK(test::relative_error(g_cache, g_full) <= 1e-10);
  CHECK_THROWS_WITH(loss(LossInputs{.queries = torch::randn({3, 4}), .positives = torch::randn({3, 4}),
                                    .bank_positives = torch::zeros({2, 4})}),
                    Catch::Contains("banked rows carry no labels"));
}
