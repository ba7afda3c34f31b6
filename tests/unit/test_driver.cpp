// The second training core: one driver (Accumulate<Schedule, Pool>), ContAccum over
// GradCache, micro-batches by token budget, the backward seam and the Trainer's collective.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

#include <deque>

using namespace contaccum;
using Dual = DualEncoder<Bert, ClsPooling>;

namespace {

template <class Model, class S, class L>
std::vector<torch::Tensor> gradients(Model& model, S& strategy, const L& loss, const PairBatch& batch, int64_t n_local,
                                     uint64_t seed, Accumulation* acc_out = nullptr, BackwardSeam* seam = nullptr,
                                     int64_t step = 0) {
  auto params = model->parameters();
  test::zero_grads(params);
  model->train();
  torch::manual_seed(seed);
  auto acc = strategy.accumulate(model, loss, batch, StepContext{step, n_local, seam});
  strategy.finish_step(true);
  if (acc_out) *acc_out = acc;
  return test::grads_of(params);
}

// Right padding of random length per row: real lengths in [2, T]. Ids past the length are 0.
TokenBatch ragged(const TokenBatch& t, torch::Generator& g) {
  auto ids = t.input_ids.clone(), mask = t.attention_mask.clone();
  const auto rows = ids.size(0), width = ids.size(1);
  auto lengths = torch::randint(2, width + 1, {rows}, g, torch::kLong);
  for (int64_t r = 0; r < rows; ++r) {
    const auto len = lengths[r].item<int64_t>();
    ids[r].slice(0, len).zero_();
    mask[r].slice(0, len).zero_();
  }
  return {ids, mask};
}
PairBatch ragged(const PairBatch& b, uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  return {ragged(b.queries, g), ragged(b.positives, g),
          b.hard_negatives.defined() ? ragged(b.hard_negatives, g) : TokenBatch{}};
}

// The dense reference of ContAccum over GradCache on a lookup model: per step, one
// forward with autograd over Q = [q_step; M_q], D = [p_step; M_p; h_step; M_h] (and the
// symmetric direction), banks kept as plain FIFO lists of rows.
struct DenseBankReference {
  int64_t capacity;
  bool query_bank = true;
  std::deque<torch::Tensor> mq, mp, mh;  // one row each, oldest first

  static torch::Tensor stack(const std::deque<torch::Tensor>& d, const torch::Tensor& like) {
    if (d.empty()) return torch::empty({0, like.size(1)}, like.options());
    return torch::stack(std::vector<torch::Tensor>(d.begin(), d.end()));
  }
  template <class Sim>
  std::pair<double, std::vector<torch::Tensor>> step(test::LookupBiEncoder& model, const PairBatch& batch,
                                                     const Sim& sim, bool symmetric) {
    auto params = model->parameters();
    test::zero_grads(params);
    auto q = model->encode_queries(batch.queries), p = model->encode_passages(batch.positives);
    auto h = batch.hard_negatives.defined() ? model->encode_passages(batch.hard_negatives)
                                            : torch::empty({0, q.size(1)}, q.options());
    auto bq = stack(mq, q), bp = stack(mp, q), bh = stack(mh, q);
    auto e = [&](const torch::Tensor& t) { return sim.embed(t); };
    auto Q = torch::cat({q, bq}), D = torch::cat({p, bp, h, bh});
    auto logits = torch::matmul(e(Q), e(D).t()) * sim.scale();
    auto labels = torch::arange(Q.size(0), torch::kLong);
    auto loss = torch::nn::functional::cross_entropy(logits, labels);
    if (symmetric) {
      auto P = torch::cat({p, bp.slice(0, 0, bq.size(0))}), C = torch::cat({q, bq});
      auto rev = torch::matmul(e(P), e(C).t()) * sim.scale();
      loss = 0.5 * (loss + torch::nn::functional::cross_entropy(rev, torch::arange(P.size(0), torch::kLong)));
    }
    loss.backward();
    auto push = [&](std::deque<torch::Tensor>& d, const torch::Tensor& rows, int64_t cap) {
      for (int64_t i = 0; i < rows.size(0); ++i) d.push_back(rows[i].detach().clone());
      while (static_cast<int64_t>(d.size()) > cap) d.pop_front();
    };
    if (query_bank) push(mq, q, capacity);
    push(mp, p, capacity);
    push(mh, h, capacity * batch.negatives_per_query());
    return {loss.template item<double>(), test::grads_of(params)};
  }
};

template <class L, class Sim>
void check_against_dense(const BankConfig& config, const L& loss, const Sim& sim, bool symmetric, int64_t n_total,
                         int64_t n_local, int64_t m, int steps, bool expect_cache) {
  torch::manual_seed(70);
  test::LookupBiEncoder model(4000, 5);
  ContAccumOverGradCache<DualBank> strategy(config);
  DenseBankReference ref{.capacity = config.capacity, .query_bank = config.query_bank};
  int64_t hits = 0, fallbacks = 0;
  for (int s = 0; s < steps; ++s) {
    const auto batch = test::lookup_batch(s * n_total, s * n_total * (1 + m), n_total, m);
    Accumulation acc;
    auto g = gradients(model, strategy, loss, batch, n_local, 1, &acc, nullptr, s);
    auto [l_ref, g_ref] = ref.step(model, batch, sim, symmetric);
    INFO("step " << s);
    CHECK(acc.micro_batches == (n_total + n_local - 1) / n_local);
    CHECK(acc.loss == Approx(l_ref).epsilon(1e-12));
    CHECK(test::relative_error(g, g_ref) <= 1e-10);
    hits += acc.score_cache_hits;
    fallbacks += acc.score_cache_fallbacks;
    if (acc.score_cache_fallbacks > 0) CHECK_FALSE(acc.score_cache_note.empty());
  }
  CHECK(strategy.bank().positive_ring().size() == std::min<int64_t>(config.capacity, steps * n_total));
  if (expect_cache) {
    CHECK(hits >= steps - 1);  // every step after the first scores its banked rows from the cache
    CHECK(fallbacks == 0);
    CHECK(strategy.bank().score_cache_reuses() >= steps - 1);
  }
}

}  // namespace

TEST_CASE("ContAccum over GradCache with an empty bank equals GradCache and FullBatch (float64, dropout)",
          "[driver][contaccum-gradcache]") {
  torch::manual_seed(61);
  Dual model(test::tiny_bert(0.1));
  model->to(torch::kFloat64);
  auto data = test::tiny_data(/*m=*/2);
  const auto batch = data.next(12);
  InfoNCE<> loss;
  FullBatch<> full_s({.encode_chunk = 4});
  GradCache<> cache_s;
  ContAccumOverGradCache<DualBank> empty_s({.capacity = 0}), fresh_s({.capacity = 48});
  Accumulation a_full, a_cache, a_empty, a_fresh;
  auto full = gradients(model, full_s, loss, batch, 4, 9, &a_full);
  auto cache = gradients(model, cache_s, loss, batch, 4, 9, &a_cache);
  auto empty = gradients(model, empty_s, loss, batch, 4, 9, &a_empty);
  auto fresh = gradients(model, fresh_s, loss, batch, 4, 9, &a_fresh);  // first step: the bank is still empty
  CHECK(a_empty.loss == Approx(a_full.loss).epsilon(1e-12));
  CHECK(a_fresh.loss == Approx(a_full.loss).epsilon(1e-12));
  CHECK(test::relative_error(empty, full) <= 1e-10);
  CHECK(test::relative_error(empty, cache) <= 1e-10);
  CHECK(test::relative_error(fresh, full) <= 1e-10);
  CHECK(a_fresh.negatives_per_query == Approx(11 + 24));
  CHECK(fresh_s.bank().positive_ring().size() == 12);  // the step's N_total rows, enqueued after the backward
  // the second step sees the banked rows: more negatives, another gradient
  const auto next = data.next(12);
  Accumulation a2;
  gradients(model, fresh_s, loss, next, 4, 10, &a2, nullptr, 1);
  CHECK(a2.negatives_per_query == Approx(11 + 24 + 12 + 24));
}

TEST_CASE("ContAccum over GradCache equals a dense recomputation over steps with wrap-around",
          "[driver][contaccum-gradcache]") {
  InfoNCE<> dot;
  InfoNCE<Cosine> cosine_sym{.similarity = {.temperature = 0.1}, .symmetric = true};
  SECTION("dual bank, one hard negative, wraps") { check_against_dense({.capacity = 24}, dot, DotProduct{}, false, 8, 4, 1, 6, true); }
  SECTION("no hard negatives") { check_against_dense({.capacity = 16}, dot, DotProduct{}, false, 8, 2, 0, 5, true); }
  SECTION("two hard negatives, symmetric cosine") {
    check_against_dense({.capacity = 16}, cosine_sym, Cosine{.temperature = 0.1}, true, 8, 4, 2, 5, true);
  }
  SECTION("without the query bank (w/o M_q)") {
    check_against_dense({.capacity = 16, .query_bank = false}, dot, DotProduct{}, false, 8, 4, 1, 4, false);
  }
  SECTION("a capacity that is not a multiple of N_total: exact, and the fallback is reported") {
    torch::manual_seed(71);
    test::LookupBiEncoder model(400, 5);
    ContAccumOverGradCache<DualBank> strategy({.capacity = 12});
    DenseBankReference ref{.capacity = 12};
    int64_t fallbacks = 0;
    std::string note;
    for (int s = 0; s < 4; ++s) {
      const auto batch = test::lookup_batch(s * 8, s * 16, 8, 1);
      Accumulation acc;
      auto g = gradients(model, strategy, dot, batch, 4, 1, &acc, nullptr, s);
      auto [l_ref, g_ref] = ref.step(model, batch, DotProduct{}, false);
      CHECK(acc.loss == Approx(l_ref).epsilon(1e-12));
      CHECK(test::relative_error(g, g_ref) <= 1e-10);
      fallbacks += acc.score_cache_fallbacks;
      if (!acc.score_cache_note.empty()) note = acc.score_cache_note;
    }
    CHECK(fallbacks >= 3);
    CHECK_THAT(note, Catch::Contains("not a multiple of the block (8 rows per enqueue)"));
  }
}

TEST_CASE("An explicit bank block size is checked", "[driver][bank]") {
  CHECK_THAT(test::error_of([] { DualBank b({.capacity = 10, .block_rows = 4}); }),
             Catch::Contains("BankConfig.capacity (10) must be a multiple of BankConfig.block_rows (4)"));
  torch::manual_seed(72);
  test::LookupBiEncoder model(100, 4);
  ContAccum<DualBank> strategy({.capacity = 16, .block_rows = 8});  // ContAccum enqueues N_local = 4 rows
  InfoNCE<> loss;
  CHECK_THAT(test::error_of([&] { strategy.accumulate(model, loss, test::lookup_batch(0, 0, 8, 1), StepContext{0, 4}); }),
             Catch::Contains("an enqueue of 4 rows, but BankConfig.block_rows is 8"));
}

TEST_CASE("Micro-batches by token budget: same gradients as by row count, padding trimmed", "[driver][tokens]") {
  torch::manual_seed(62);
  Dual model(test::tiny_bert(0.0));
  model->to(torch::kFloat64);
  auto data = test::tiny_data(/*m=*/1, 3);
  InfoNCE<> loss;
  const auto batch = ragged(data.next(12), 5);
  const int64_t budget = 40;
  const auto chunks = split_step(batch, 4, budget);
  int64_t widest = 0;
  for (const auto& c : chunks) {
    CHECK(contaccum::detail::tokens_per_pair(c).size() == static_cast<size_t>(c.size()));
    int64_t t = 0;
    for (auto v : contaccum::detail::tokens_per_pair(c)) t += v;
    CHECK(t <= budget);
    widest = std::max(widest, c.positives.input_ids.size(1));
  }
  INFO(chunks.size() << " forwards");
  CHECK(chunks.size() > 3);                           // not the row split (3 x 4)
  CHECK(widest <= batch.positives.input_ids.size(1));
  SECTION("GradCache") {
    GradCache<> rows;
    Accumulate<CachedReplay, Step> tokens({.max_tokens = budget});
    Accumulation a_rows, a_tok;
    auto g_rows = gradients(model, rows, loss, batch, 4, 1, &a_rows);
    auto g_tok = gradients(model, tokens, loss, batch, 4, 1, &a_tok);
    CHECK(a_tok.micro_batches == static_cast<int64_t>(chunks.size()));
    CHECK(a_tok.loss == Approx(a_rows.loss).epsilon(1e-12));
    CHECK(test::relative_error(g_tok, g_rows) <= 1e-10);
  }
  SECTION("ContAccum over GradCache, over three steps") {
    ContAccumOverGradCache<DualBank> rows({.capacity = 24}), tokens({.capacity = 24}, {.max_tokens = budget});
    for (int s = 0; s < 3; ++s) {
      const auto b = ragged(data.next(12), 10 + s);
      Accumulation a_rows, a_tok;
      auto g_rows = gradients(model, rows, loss, b, 4, 1, &a_rows, nullptr, s);
      auto g_tok = gradients(model, tokens, loss, b, 4, 1, &a_tok, nullptr, s);
      INFO("step " << s);
      CHECK(a_tok.loss == Approx(a_rows.loss).epsilon(1e-12));
      CHECK(test::relative_error(g_tok, g_rows) <= 1e-10);
      CHECK(a_tok.score_cache_fallbacks == 0);
    }
  }
  SECTION("with dropout: GradCache by tokens equals FullBatch cut by the same budget") {
    Dual dropout_model(test::tiny_bert(0.1));
    dropout_model->to(torch::kFloat64);
    Accumulate<CachedReplay, Step> cached({.max_tokens = budget});
    FullBatch<> full({.max_tokens = budget});
    auto g_cached = gradients(dropout_model, cached, loss, batch, 12, 4);
    auto g_full = gradients(dropout_model, full, loss, batch, 12, 4);
    CHECK(test::relative_error(g_cached, g_full) <= 1e-10);
  }
  SECTION("a budget smaller than a pair is an error naming the pair") {
    CHECK_THAT(test::error_of([&] { (void)split_step(batch, 4, 3); }),
               Catch::Contains("MicroBatching.max_tokens = 3 cannot hold pair 0"));
  }
}

namespace {
// A seam that doubles every loss it backpropagates (as fp16 loss scaling would scale).
struct DoublingSeam : BackwardSeam {
  void backward(const torch::Tensor& loss, int64_t units) override { BackwardSeam::backward(loss * 2.0, units); }
};

template <class S>
void check_seam(S strategy, S fresh, int64_t expected_calls) {
  torch::manual_seed(63);
  test::LookupBiEncoder model(400, 4);
  InfoNCE<> loss;
  const auto batch = test::lookup_batch(0, 0, 12, 1);
  auto plain = gradients(model, strategy, loss, batch, 4, 1);
  DoublingSeam seam;
  auto doubled = gradients(model, fresh, loss, batch, 4, 1, nullptr, &seam);
  for (auto& g : plain) g *= 2.0;
  INFO(S::name);
  CHECK(test::relative_error(doubled, plain) <= 1e-14);
  CHECK(seam.calls() == expected_calls);
}
}  // namespace

TEST_CASE("Every gradient passes through the backward seam", "[driver][seam]") {
  check_seam(FullBatch<>(), FullBatch<>(), 1);
  check_seam(GradAccum<>(), GradAccum<>(), 3);
  check_seam(GradCache<>(), GradCache<>(), 1 + 3);  // the loss onto the leaves, then K replays
  check_seam(ContAccum<>({.capacity = 8}), ContAccum<>({.capacity = 8}), 3);
  check_seam(ContAccumOverGradCache<>({.capacity = 24}), ContAccumOverGradCache<>({.capacity = 24}), 1 + 3);
}

namespace {
// A collective that halves the gradients (two ranks with equal gradients, averaged) and
// counts what it was asked to do.
struct HalvingCollective {
  std::shared_ptr<int64_t> reductions = std::make_shared<int64_t>(0), exchanges = std::make_shared<int64_t>(0);
  LossInputs exchange(const LossInputs& in) const {
    ++*exchanges;
    return in;
  }
  void reduce_gradients(std::vector<torch::Tensor>& params) const {
    ++*reductions;
    torch::NoGradGuard g;
    for (auto& p : params)
      if (p.grad().defined()) p.mutable_grad().mul_(0.5);
  }
  [[nodiscard]] int64_t world_size() const { return 2; }
  [[nodiscard]] int64_t rank() const { return 0; }
};
static_assert(Collective<HalvingCollective>);
}  // namespace

TEST_CASE("The Trainer's collective reduces gradients once per step, before the norm and the clip", "[driver][trainer]") {
  auto run = [](auto collective) {
    torch::manual_seed(64);
    Trainer<Dual, GradAccum<>, FullFineTune, InfoNCE<>, decltype(collective)> trainer(
        Dual(test::tiny_bert(0.0)), {.micro_batch_size = 4, .max_grad_norm = 0.0}, GradAccum<>(), {}, {}, collective);
    auto data = test::tiny_data(1, 2);
    std::vector<double> norms;
    for (int i = 0; i < 2; ++i) norms.push_back(trainer.step(data.next(8)).grad_norm);
    CHECK(trainer.backward_calls() == 4);  // K = 2 per step
    return norms;
  };
  HalvingCollective halving;
  const auto single = run(SingleProcess{});
  const auto halved = run(halving);
  CHECK(*halving.reductions == 2);  // once per step
  CHECK(*halving.exchanges == 4);   // once per loss evaluation
  CHECK(halved[0] == Approx(0.5 * single[0]).epsilon(1e-6));
}

TEST_CASE("The Trainer reports score-cache fallbacks in StepStats", "[driver][trainer]") {
  torch::manual_seed(65);
  Trainer<Dual, ContAccum<>> trainer(Dual(test::tiny_bert(0.0)), {.micro_batch_size = 4},
                                     ContAccum<>({.capacity = 8}));
  auto data = test::tiny_data(1);
  trainer.step(data.next(8));
  const auto fine = trainer.step(data.next(8));
  CHECK(fine.score_cache_hits == 2);
  CHECK(fine.score_cache_fallbacks == 0);
  const auto odd = trainer.step(data.next(6));  // micro-batches of 4 and 2: the block is 4 rows
  const auto after = trainer.step(data.next(8));
  CHECK(odd.score_cache_fallbacks + after.score_cache_fallbacks > 0);
  std::ostringstream os;
  os << after;
  CHECK_THAT(after.score_cache_note, Catch::Contains("rows"));
  CHECK_THAT(os.str(), Catch::Contains("score cache fell back"));
}

namespace {
// A user's own negative pool, written against NegativePoolFor only: a fixed set of extra
// negative passages every query is scored against (e.g. mined once, kept constant).
struct FixedNegatives {
  static constexpr std::string_view name = "FixedNegatives";
  static constexpr PoolScope scope = PoolScope::schedule;
  torch::Tensor extra;  // (E, H)
  template <ContrastiveLoss L>
  void begin_step(const L&, int64_t) {}
  template <ContrastiveLoss L>
  PoolUse extend(LossInputs& in, const L&, int64_t) {
    in.bank_hard_negatives = extra;
    return {};
  }
  void after_unit(const LossInputs&) {}
  void finish_step(bool) {}
};
static_assert(NegativePool<FixedNegatives>);
static_assert(AccumulationPlan<Direct, FixedNegatives> && AccumulationPlan<CachedReplay, FixedNegatives>);
}  // namespace

TEST_CASE("A user's negative pool composes with both schedules", "[driver][pool]") {
  torch::manual_seed(66);
  test::LookupBiEncoder model(100, 4);
  const auto extra = torch::randn({5, 4}, torch::kFloat64);
  InfoNCE<> loss;
  const auto batch = test::lookup_batch(0, 0, 8, 1);
  Accumulate<CachedReplay, FixedNegatives> cached({}, FixedNegatives{.extra = extra});
  Accumulation acc;
  auto g = gradients(model, cached, loss, batch, 4, 1, &acc);
  CHECK(acc.negatives_per_query == Approx(7 + 8 + 5));
  // reference: one dense loss over the step plus the fixed columns
  auto params = model->parameters();
  test::zero_grads(params);
  auto q = model->encode_queries(batch.queries);
  auto d = torch::cat({model->encode_passages(batch.positives), model->encode_passages(batch.hard_negatives), extra});
  auto ref = torch::nn::functional::cross_entropy(torch::matmul(q, d.t()), torch::arange(8, torch::kLong));
  ref.backward();
  CHECK(acc.loss == Approx(ref.item<double>()).epsilon(1e-12));
  CHECK(test::relative_error(g, test::grads_of(params)) <= 1e-10);
  CHECK(decltype(cached)::name == "FixedNegatives");
}
