// Memory-bank semantics: FIFO order, capacity, wrap-around, persistence, ablation switches,
// device/dtype following the inputs, and exact rollback of a failed step.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

using namespace contaccum;

namespace {
// rows filled with their value v, (n, H)
torch::Tensor rows(std::initializer_list<double> values, int64_t width = 3, torch::Dtype dtype = torch::kFloat32) {
  std::vector<torch::Tensor> r;
  for (double v : values) r.push_back(torch::full({1, width}, v, dtype));
  return torch::cat(r);
}
std::vector<double> firsts(const torch::Tensor& t) {
  std::vector<double> out;
  for (int64_t i = 0; i < t.size(0); ++i) out.push_back(t[i][0].item<double>());
  return out;
}
using V = std::vector<double>;
}  // namespace

TEST_CASE("RingBuffer keeps the newest rows FIFO, oldest first", "[bank]") {
  RingBuffer ring(5);
  CHECK(ring.empty());
  ring.push(rows({1, 2}));
  CHECK(firsts(ring.oldest_first()) == V{1, 2});
  ring.push(rows({3, 4}));
  CHECK(ring.size() == 4);
  ring.push(rows({5, 6, 7}));  // wraps: 1 and 2 fall out
  CHECK(ring.size() == 5);
  CHECK(ring.capacity() == 5);
  CHECK(firsts(ring.oldest_first()) == V{3, 4, 5, 6, 7});
  // storage order: slots 0,1 were overwritten by 6,7
  CHECK(firsts(ring.entries()) == V{6, 7, 3, 4, 5});
  ring.push(rows({8, 9, 10, 11, 12, 13, 14}));  // more than capacity: keep the newest 5
  CHECK(firsts(ring.oldest_first()) == V{10, 11, 12, 13, 14});
}

TEST_CASE("RingBuffer with zero capacity stays empty; clear empties", "[bank]") {
  RingBuffer none(0);
  none.push(rows({1, 2}));
  CHECK(none.size() == 0);
  CHECK(!none.entries().defined());
  RingBuffer ring(3);
  ring.push(rows({1, 2}));
  ring.clear();
  CHECK(ring.size() == 0);
  ring.push(rows({3}));
  CHECK(firsts(ring.oldest_first()) == V{3});
}

TEST_CASE("RingBuffer stores detached copies with the input's dtype", "[bank]") {
  RingBuffer ring(4);
  auto x = rows({1, 2}, 3, torch::kFloat64).requires_grad_(true);
  ring.push(x * 2);
  CHECK(ring.storage().scalar_type() == torch::kFloat64);
  CHECK(!ring.entries().requires_grad());
  {
    torch::NoGradGuard g;
    x.mul_(10);  // the bank holds a copy, not a view of x
  }
  CHECK(firsts(ring.oldest_first()) == V{2, 4});
  ring.push(rows({5}, 3, torch::kFloat32));  // later rows in another dtype: storage follows them
  CHECK(ring.storage().scalar_type() == torch::kFloat32);
  CHECK(firsts(ring.oldest_first()) == V{2, 4, 5});
}

TEST_CASE("RingBuffer rejects a changed embedding width", "[bank][errors]") {
  RingBuffer ring(4, "positive bank");
  ring.push(rows({1}, 3));
  CHECK_THROWS_WITH(ring.push(rows({2}, 5)), Catch::Contains("positive bank holds 3-wide embeddings but got 5-wide"));
  CHECK_THROWS_AS(RingBuffer(-1), invalid_input);
}

TEST_CASE("RingBuffer rollback restores overwritten rows exactly", "[bank]") {
  RingBuffer ring(4);
  ring.push(rows({1, 2, 3, 4}));
  ring.begin();
  ring.push(rows({5, 6, 7}));
  ring.push(rows({8, 9}));
  CHECK(firsts(ring.oldest_first()) == V{6, 7, 8, 9});
  ring.rollback();
  CHECK(firsts(ring.oldest_first()) == V{1, 2, 3, 4});
  ring.begin();
  ring.push(rows({5}));
  ring.commit();
  ring.rollback();  // nothing to undo after commit
  CHECK(firsts(ring.oldest_first()) == V{2, 3, 4, 5});
}

TEST_CASE("DualBank enqueues queries, positives and hard negatives in lockstep", "[bank]") {
  DualBank bank({.capacity = 4});
  bank.enqueue(rows({1, 2}), rows({11, 12}), rows({21, 22, 23, 24}));  // m = 2
  bank.enqueue(rows({3, 4}), rows({13, 14}), rows({25, 26, 27, 28}));
  bank.enqueue(rows({5, 6}), rows({15, 16}), rows({29, 30, 31, 32}));
  CHECK(firsts(bank.query_ring().oldest_first()) == V{3, 4, 5, 6});
  CHECK(firsts(bank.positive_ring().oldest_first()) == V{13, 14, 15, 16});
  CHECK(bank.hard_negative_ring().capacity() == 8);  // capacity x m
  CHECK(firsts(bank.hard_negative_ring().oldest_first()) == V{25, 26, 27, 28, 29, 30, 31, 32});
  // storage order keeps query i with positive i
  auto q = bank.queries(), p = bank.positives();
  CHECK(torch::equal(q.select(1, 0) + 10, p.select(1, 0)));
  CHECK(bank.bytes() == (4 + 4 + 8) * 3 * 4);
}

TEST_CASE("DualBank ablations: no query bank, no hard-negative bank, clear every step", "[bank]") {
  DualBank no_mq({.capacity = 4, .query_bank = false});
  no_mq.enqueue(rows({1}), rows({11}), rows({21}));
  CHECK(no_mq.query_ring().size() == 0);
  CHECK(no_mq.positive_ring().size() == 1);

  DualBank no_h({.capacity = 4, .hard_negative_bank = false});
  no_h.enqueue(rows({1}), rows({11}), rows({21}));
  CHECK(no_h.hard_negative_ring().size() == 0);

  DualBank persist({.capacity = 4});
  DualBank per_step({.capacity = 4, .persist_across_steps = false});
  for (auto* b : {&persist, &per_step}) {
    b->begin_step();
    b->enqueue(rows({1}), rows({11}), rows({21}));
    b->enqueue(rows({2}), rows({12}), rows({22}));
    CHECK(b->positive_ring().size() == 2);  // later micro-batches of the step see earlier ones
    b->commit_step();
  }
  CHECK(persist.positive_ring().size() == 2);
  CHECK(per_step.positive_ring().size() == 0);
  CHECK(per_step.query_ring().size() == 0);
}

TEST_CASE("DualBank rollback_step undoes a failed step", "[bank]") {
  DualBank bank({.capacity = 2});
  bank.begin_step();
  bank.enqueue(rows({1, 2}), rows({11, 12}), rows({21, 22}));
  bank.commit_step();
  bank.begin_step();
  bank.enqueue(rows({3}), rows({13}), rows({23}));
  bank.rollback_step();
  CHECK(firsts(bank.query_ring().oldest_first()) == V{1, 2});
  CHECK(firsts(bank.positive_ring().oldest_first()) == V{11, 12});
  CHECK(firsts(bank.hard_negative_ring().oldest_first()) == V{21, 22});
}

TEST_CASE("DualBank rejects a hard-negative count that changes", "[bank][errors]") {
  DualBank bank({.capacity = 4});
  bank.enqueue(rows({1}), rows({11}), rows({21}));
  CHECK_THROWS_WITH(bank.enqueue(rows({2}), rows({12}), rows({22, 23})),
                    Catch::Contains("2 hard negatives per query, but the bank was filled with 1"));
}

TEST_CASE("Bank storage follows the device of its inputs", "[bank][cuda]") {
  if (!torch::cuda::is_available()) {
    // CPU-only machine: the CPU half of the property still holds and is checked here.
    RingBuffer ring(2);
    ring.push(rows({1}));
    CHECK(ring.storage().device().is_cpu());
    return;
  }
  RingBuffer ring(2);
  ring.push(rows({1}).cuda());
  CHECK(ring.storage().device().is_cuda());
  ring.push(rows({2}));
  CHECK(ring.storage().device().is_cpu());
  CHECK(firsts(ring.oldest_first()) == V{1, 2});
}

TEST_CASE("A bank stored in bf16 holds half the bytes and gives back fp32 rows, rounded once", "[bank][precision]") {
  torch::manual_seed(3);
  const auto q = torch::randn({4, 8}), p = torch::randn({4, 8}), h = torch::randn({8, 8});
  DualBank fp32({.capacity = 8}), bf16({.capacity = 8, .storage_dtype = torch::kBFloat16});
  for (auto* b : {&fp32, &bf16}) b->enqueue(q, p, h);
  CHECK(bf16.query_ring().storage().scalar_type() == torch::kBFloat16);
  CHECK(bf16.bytes() * 2 == fp32.bytes());
  CHECK(bf16.queries().scalar_type() == torch::kFloat);  // scored in the enqueued rows' type
  CHECK(torch::equal(bf16.queries(), q.to(torch::kBFloat16).to(torch::kFloat)));
  CHECK(torch::equal(bf16.hard_negatives(), h.to(torch::kBFloat16).to(torch::kFloat)));
  CHECK_FALSE(torch::equal(bf16.queries(), q));  // really rounded
  CHECK(torch::equal(bf16.query_ring().oldest_first(), bf16.queries()));

  // a failed step leaves the bf16 rows as they were
  bf16.begin_step();
  bf16.enqueue(torch::randn({4, 8}), torch::randn({4, 8}), torch::randn({8, 8}));
  bf16.enqueue(torch::randn({4, 8}), torch::randn({4, 8}), torch::randn({8, 8}));  // wraps over the first rows
  bf16.rollback_step();
  CHECK(torch::equal(bf16.queries(), q.to(torch::kBFloat16).to(torch::kFloat)));

  // the checkpoint keeps the storage type (half the bytes) and the rows' type
  StateDict s;
  bf16.save_state(s, "bank.");
  CHECK(s.tensors.at("bank.queries.storage").scalar_type() == torch::kBFloat16);
  DualBank restored({.capacity = 8, .storage_dtype = torch::kBFloat16});
  restored.load_state(StateReader(s, "memory"), "bank.");
  CHECK(torch::equal(restored.queries(), bf16.queries()));
  CHECK(restored.queries().scalar_type() == torch::kFloat);
  // a bf16 bank refuses an fp32 bank's rows, naming the key and the setting
  StateDict s32;
  fp32.save_state(s32, "bank.");
  CHECK_THAT(test::error_of([&] { restored.load_state(StateReader(s32, "memory"), "bank."); }),
             Catch::Contains("bank.queries.storage") && Catch::Contains("BankConfig.storage_dtype"));
  CHECK_THROWS_WITH(RingBuffer(4, "ring", torch::kLong), Catch::Contains("ring: the storage dtype must be a floating type"));
}
