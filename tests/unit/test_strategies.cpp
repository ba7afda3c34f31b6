// Gradient equivalences between strategies, on the BERT encoder with dropout on.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

using namespace contaccum;
using Dual = DualEncoder<Bert, ClsPooling>;
using Shared = DualEncoder<Bert, MeanPooling, SharedTower>;

namespace {

// Gradients of every parameter after one strategy.accumulate() from RNG seed `seed`.
template <class Model, class S, class L>
std::vector<torch::Tensor> gradients(Model& model, S strategy, const L& loss, const PairBatch& batch,
                                     int64_t n_local, uint64_t seed, double* loss_out = nullptr) {
  auto params = model->parameters();
  test::zero_grads(params);
  model->train();
  torch::manual_seed(seed);
  auto acc = strategy.accumulate(model, loss, batch, StepContext{0, n_local});
  strategy.finish_step(true);
  if (loss_out) *loss_out = acc.loss;
  return test::grads_of(params);
}

}  // namespace

TEST_CASE("GradCache gradients equal FullBatch's with dropout and hard negatives (float64)", "[strategy][gradcache]") {
  torch::manual_seed(11);
  Dual model(test::tiny_bert(0.1));
  model->to(torch::kFloat64);
  auto data = test::tiny_data(/*m=*/2);
  const auto batch = data.next(12);
  InfoNCE<> loss;

  double l_full = 0, l_cache = 0;
  auto full = gradients(model, FullBatch<>({.encode_chunk = 4}), loss, batch, 4, 7, &l_full);
  auto cache = gradients(model, GradCache<>(), loss, batch, 4, 7, &l_cache);
  CHECK(l_cache == Approx(l_full).epsilon(1e-12));
  const double err = test::relative_error(cache, full);
  INFO("relative gradient error " << err);
  CHECK(err <= 1e-5);
  CHECK(err <= 1e-10);  // float64: equal to rounding

  // Control: dropout is really on. Other masks (one forward for the whole batch) give a
  // different gradient, so the agreement above is not trivial.
  auto other_masks = gradients(model, FullBatch<>(), loss, batch, 4, 7);
  CHECK(test::relative_error(other_masks, full) > 1e-3);
}

TEST_CASE("GradCache equals FullBatch for a shared tower with symmetric cosine InfoNCE", "[strategy][gradcache]") {
  torch::manual_seed(12);
  Shared model(test::tiny_bert(0.1));
  model->to(torch::kFloat64);
  auto data = test::tiny_data(/*m=*/0);
  const auto batch = data.next(10);  // 10 pairs, N_local 4: micro-batches of 4, 4, 2
  InfoNCE<Cosine> loss{.similarity = {.temperature = 0.05}, .symmetric = true};
  auto full = gradients(model, FullBatch<>({.encode_chunk = 4}), loss, batch, 4, 3);
  auto cache = gradients(model, GradCache<>(), loss, batch, 4, 3);
  CHECK(test::relative_error(cache, full) <= 1e-10);
}

TEST_CASE("GradCache equals FullBatch in float32 to float tolerance", "[strategy][gradcache]") {
  torch::manual_seed(13);
  Dual model(test::tiny_bert(0.1));
  auto data = test::tiny_data(1);
  const auto batch = data.next(16);
  InfoNCE<> loss;
  auto full = gradients(model, FullBatch<>({.encode_chunk = 4}), loss, batch, 4, 5);
  auto cache = gradients(model, GradCache<>(), loss, batch, 4, 5);
  CHECK(test::relative_error(cache, full) <= 1e-5);
}

TEST_CASE("Without dropout, FullBatch's gradient does not depend on how it is chunked", "[strategy]") {
  torch::manual_seed(14);
  Dual model(test::tiny_bert(0.0));
  model->to(torch::kFloat64);
  auto batch = test::tiny_data(1).next(9);
  InfoNCE<> loss;
  auto one = gradients(model, FullBatch<>(), loss, batch, 9, 1);
  auto chunked = gradients(model, FullBatch<>({.encode_chunk = 2}), loss, batch, 9, 1);
  auto cache = gradients(model, GradCache<>(), loss, batch, 3, 1);
  CHECK(test::relative_error(chunked, one) <= 1e-10);
  CHECK(test::relative_error(cache, one) <= 1e-10);
}

TEST_CASE("GradAccum equals the 1/K-weighted sum of per-micro-batch gradients", "[strategy][gradaccum]") {
  torch::manual_seed(15);
  Dual model(test::tiny_bert(0.1));
  model->to(torch::kFloat64);
  auto batch = test::tiny_data(1).next(12);
  InfoNCE<> loss;
  const int64_t n_local = 4, k = 3;
  auto accum = gradients(model, GradAccum<>(), loss, batch, n_local, 21);

  // Reference: each micro-batch alone as a full batch, same RNG stream, summed / K.
  auto params = model->parameters();
  std::vector<torch::Tensor> sum;
  torch::manual_seed(21);
  for (int64_t j = 0; j < k; ++j) {
    test::zero_grads(params);
    FullBatch<> fb;
    fb.accumulate(model, loss, batch.slice(j * n_local, (j + 1) * n_local), StepContext{0, n_local});
    auto g = test::grads_of(params);
    if (sum.empty()) sum = g;
    else for (size_t i = 0; i < g.size(); ++i) sum[i] += g[i];
  }
  for (auto& g : sum) g /= static_cast<double>(k);
  CHECK(test::relative_error(accum, sum) <= 1e-10);
  // and it is not the full-batch gradient (in-batch negatives differ)
  auto full = gradients(model, FullBatch<>({.encode_chunk = n_local}), loss, batch, n_local, 21);
  CHECK(test::relative_error(accum, full) > 1e-3);
}

TEST_CASE("ContAccum with a zero-capacity bank equals GradAccum", "[strategy][contaccum]") {
  torch::manual_seed(16);
  Dual model(test::tiny_bert(0.1));
  model->to(torch::kFloat64);
  auto data = test::tiny_data(1);
  InfoNCE<> loss;
  ContAccum<DualBank> cont({.capacity = 0});
  for (int step = 0; step < 2; ++step) {
    const auto batch = data.next(12);
    double la = 0, lc = 0;
    auto ga = gradients(model, GradAccum<>(), loss, batch, 4, 30 + step, &la);
    auto params = model->parameters();
    test::zero_grads(params);
    torch::manual_seed(30 + step);
    auto acc = cont.accumulate(model, loss, batch, StepContext{step, 4});
    cont.finish_step(true);
    lc = acc.loss;
    CHECK(lc == Approx(la).epsilon(1e-12));
    CHECK(acc.negatives_per_query == Approx(3 + 4));  // N_local - 1 in-batch + N_local * m hard
    CHECK(test::relative_error(test::grads_of(params), ga) <= 1e-12);
  }
}

TEST_CASE("ContAccum's bank adds negatives: later micro-batches see earlier ones", "[strategy][contaccum]") {
  torch::manual_seed(17);
  test::LookupBiEncoder model(100, 4);
  ContAccum<DualBank> cont({.capacity = 8});
  InfoNCE<> loss;
  auto acc = cont.accumulate(model, loss, test::lookup_batch(0, 0, 12, 1), StepContext{0, 4});
  cont.finish_step(true);
  // micro-batch 1: 3 + 4 negatives; 2: + 4 banked p + 4 banked h; 3: + 8 + 8
  CHECK(acc.negatives_per_query == Approx((7.0 + 15.0 + 23.0) / 3.0));
  CHECK(cont.bank().positive_ring().size() == 8);
}

namespace {
// Runs ContAccum with and without the bank's score cache over `steps` steps of N_total
// pairs and checks losses and embedding gradients agree at every step.
template <class L>
void check_cache_matches_streaming(const BankConfig& bank, const L& loss, int64_t n_total, int64_t n_local,
                                   int64_t m, int steps, bool alive_at_end, int64_t min_reuses) {
  torch::manual_seed(50);
  test::LookupBiEncoder model(4000, 5);
  BankConfig off = bank;
  off.cache_scores = false;
  ContAccum<DualBank> cached(bank), streamed(off);
  auto params = model->parameters();
  for (int s = 0; s < steps; ++s) {
    const auto batch = test::lookup_batch(s * n_total, s * n_total * (1 + m), n_total, m);
    test::zero_grads(params);
    auto a = cached.accumulate(model, loss, batch, StepContext{s, n_local});
    cached.finish_step(true);
    auto ga = test::grads_of(params);
    test::zero_grads(params);
    auto b = streamed.accumulate(model, loss, batch, StepContext{s, n_local});
    streamed.finish_step(true);
    auto gb = test::grads_of(params);
    INFO("step " << s);
    CHECK(a.loss == Approx(b.loss).epsilon(1e-12));
    CHECK(test::relative_error(ga, gb) <= 1e-10);
  }
  CHECK((cached.bank().score_cache_bytes() > 0) == alive_at_end);
  // the cache took its new blocks from the loss's own scores, not from fresh products
  CHECK(cached.bank().score_cache_reuses() >= min_reuses);
  if (min_reuses == 0) CHECK(cached.bank().score_cache_reuses() == 0);
  CHECK(streamed.bank().score_cache_bytes() == 0);
}
}  // namespace

TEST_CASE("ContAccum's incremental bank score cache equals streaming the bank scores", "[contaccum][cache]") {
  InfoNCE<> dot;
  InfoNCE<Cosine> cosine_sym{.similarity = {.temperature = 0.1}, .symmetric = true};
  SECTION("dual bank, hard negatives, wraps many times") {
    check_cache_matches_streaming({.capacity = 12}, dot, 8, 4, 1, 8, true, 15);
  }
  SECTION("two hard negatives, bank of 13 blocks (groups do not divide)") {
    check_cache_matches_streaming({.capacity = 26}, dot, 8, 2, 2, 9, true, 35);
  }
  SECTION("symmetric cosine") { check_cache_matches_streaming({.capacity = 16}, cosine_sym, 8, 4, 1, 6, true, 2 * 11); }
  SECTION("no hard-negative bank") {
    check_cache_matches_streaming({.capacity = 8, .hard_negative_bank = false}, dot, 8, 4, 1, 5, true, 9);
  }
  SECTION("without past encoder: cleared (tables freed) every step, rebuilt by its first micro-batch") {
    check_cache_matches_streaming({.capacity = 8, .persist_across_steps = false}, dot, 12, 4, 1, 4, false, 4 * 2);
  }
  SECTION("without query bank: no banked rows, nothing to cache") {
    check_cache_matches_streaming({.capacity = 8, .query_bank = false}, dot, 8, 4, 1, 4, false, 0);
  }
  SECTION("micro-batches that do not tile the bank: falls back to streaming") {
    check_cache_matches_streaming({.capacity = 8}, dot, 10, 4, 1, 4, false, 1);
  }
}

TEST_CASE("The score cache stays exact after a failed step is rolled back", "[contaccum][cache]") {
  torch::manual_seed(51);
  test::LookupBiEncoder model(400, 4);
  ContAccum<DualBank> cached({.capacity = 8}), streamed({.capacity = 8, .cache_scores = false});
  InfoNCE<> loss;
  auto params = model->parameters();
  auto run = [&](ContAccum<DualBank>& s, int64_t step, bool apply) {
    test::zero_grads(params);
    auto acc = s.accumulate(model, loss, test::lookup_batch(step * 8, step * 16, 8, 1), StepContext{step, 4});
    s.finish_step(apply);
    return std::make_pair(acc.loss, test::grads_of(params));
  };
  for (int64_t step = 0; step < 6; ++step) {
    const bool apply = step != 2 && step != 3;  // two failed steps in a row
    auto [la, ga] = run(cached, step, apply);
    auto [lb, gb] = run(streamed, step, apply);
    CHECK(la == Approx(lb).epsilon(1e-12));
    CHECK(test::relative_error(ga, gb) <= 1e-10);
  }
}

TEST_CASE("ContAccum over a bank stored in bf16: the score cache stays exact, the step close to a full-precision bank's",
          "[contaccum][cache][precision]") {
  torch::manual_seed(52);
  test::LookupBiEncoder model(400, 4);
  const BankConfig narrow{.capacity = 8, .storage_dtype = torch::kBFloat16};
  ContAccum<DualBank> cached(narrow), wide({.capacity = 8});
  auto streaming = narrow;
  streaming.cache_scores = false;
  ContAccum<DualBank> streamed(streaming);
  InfoNCE<> loss;
  auto params = model->parameters();
  auto run = [&](ContAccum<DualBank>& s, int64_t step) {
    test::zero_grads(params);
    auto acc = s.accumulate(model, loss, test::lookup_batch(step * 8, step * 16, 8, 1), StepContext{step, 4});
    s.finish_step(true);
    return std::make_pair(acc.loss, test::grads_of(params));
  };
  double largest_difference = 0;
  for (int64_t step = 0; step < 5; ++step) {
    auto [la, ga] = run(cached, step);
    auto [lb, gb] = run(streamed, step);
    auto [lw, gw] = run(wide, step);
    INFO("step " << step << ": loss bf16 bank " << la << ", float64 bank " << lw);
    CHECK(la == Approx(lb).epsilon(1e-12));  // the cache is exact over the rounded rows
    CHECK(test::relative_error(ga, gb) <= 1e-10);
    CHECK(test::relative_error(ga, gw) <= 2e-2);  // bf16 rounding of the banked rows only
    largest_difference = std::max(largest_difference, test::relative_error(ga, gw));
  }
  CHECK(cached.bank().score_cache_status().empty());
  CHECK(largest_difference > 1e-6);  // the banked rows were really rounded
  CHECK(cached.bank().bytes() * 4 == wide.bank().bytes());  // 2 bytes a value against float64's 8
}

TEST_CASE("Unpadded BERT: the padded layout's hidden states and gradients; GradCache and recompute stay exact on it",
          "[strategy][unpadded]") {
  for (const std::string type : {"bert", "roberta"}) {
    INFO("model_type " << type);
    auto config = test::tiny_bert(0.0);
    config.model_type = type;
    config.pad_token_id = type == "bert" ? 0 : 1;
    torch::manual_seed(31);
    Bert padded(config);
    padded->to(torch::kFloat64);
    Bert unpadded(config);
    unpadded->to(torch::kFloat64);
    {
      torch::NoGradGuard no_grad;
      auto from = padded->parameters();
      auto to = unpadded->parameters();
      for (size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i]);
    }
    unpadded->set_unpadded(true);
    CHECK(unpadded->unpadded());
    CHECK_FALSE(padded->unpadded());

    // Rows of lengths 9, 3, 6, 1 in a (4, 9) batch; padding ids are pad_token_id.
    auto mask = (torch::arange(9).unsqueeze(0) < torch::tensor({9, 3, 6, 1}).unsqueeze(1)).to(torch::kLong);  // (4, 9)
    auto ids = torch::where(mask.ne(0), torch::randint(2, 120, {4, 9}), torch::full({4, 9}, config.pad_token_id));
    auto types = torch::randint(0, 2, {4, 9}) * mask;
    auto target = torch::randn({4, 9, 32}, torch::kFloat64);

    auto run = [&](Bert& model) {
      model->train();
      test::zero_grads(model->parameters());
      auto h = model(ids, mask, types);  // (4, 9, 32)
      (h * target * mask.unsqueeze(-1)).sum().backward();
      return std::pair{h.detach(), test::grads_of(model->parameters())};
    };
    auto [h_pad, g_pad] = run(padded);
    auto [h_unpad, g_unpad] = run(unpadded);
    const auto real = mask.ne(0);
    CHECK((h_unpad.index({real}) - h_pad.index({real})).abs().max().item<double>() <= 1e-12);
    CHECK(h_unpad.index({real.logical_not()}).abs().max().item<double>() == 0.0);  // padding rows are zeros
    CHECK(h_pad.index({real.logical_not()}).abs().max().item<double>() > 0.0);     // ... unlike the padded layout's
    const double err = test::relative_error(g_unpad, g_pad);
    INFO("relative gradient error " << err);
    CHECK(err <= 1e-10);

    // A batch without padding takes the padded path unchanged.
    auto full = torch::ones({2, 5}, torch::kLong);
    auto dense_ids = torch::randint(2, 120, {2, 5});
    torch::NoGradGuard no_grad;
    CHECK((unpadded(dense_ids, full) - padded(dense_ids, full)).abs().max().item<double>() == 0.0);
  }

}

TEST_CASE("GradCache equals FullBatch on unpadded BERT with dropout, with and without recompute", "[strategy][unpadded]") {
  {
    torch::manual_seed(32);
    Dual model(test::tiny_bert(0.1));
    model->to(torch::kFloat64);
    model->query_encoder->set_unpadded(true);
    model->passage_encoder->set_unpadded(true);
    auto data = test::tiny_data(/*m=*/1);
    const auto batch = data.next(10);
    REQUIRE(batch.positives.attention_mask.eq(0).any().item<bool>());  // the point: there is padding
    InfoNCE<> loss;
    auto full = gradients(model, FullBatch<>({.encode_chunk = 4}), loss, batch, 4, 9);
    auto cache = gradients(model, GradCache<>(), loss, batch, 4, 9);
    CHECK(test::relative_error(cache, full) <= 1e-10);

    model->query_encoder->set_gradient_checkpointing(true);
    model->passage_encoder->set_gradient_checkpointing(true);
    auto recomputed = gradients(model, GradCache<>(), loss, batch, 4, 9);
    CHECK(test::relative_error(recomputed, full) <= 1e-10);

    // Control: dropout draws differ between the layouts, so the padded gradient is another one.
    model->query_encoder->set_unpadded(false);
    model->passage_encoder->set_unpadded(false);
    auto padded = gradients(model, GradCache<>(), loss, batch, 4, 9);
    CHECK(test::relative_error(padded, full) > 1e-3);
  }
}
