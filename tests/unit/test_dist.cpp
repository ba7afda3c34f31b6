// Multi-process training on c10d: two ranks over Gloo on 127.0.0.1, each a child process
// (`contaccum_tests --dist-worker ...`, dispatched by tests/main.cpp), checked against one
// process holding the same global step.
//  - the exchange's layout: rank r's query i keeps its positive and hard negatives
//    (the interleaving bug of DESIGN §8 would fail it), and its backward keeps the rank's slice;
//  - FullBatch, GradAccum, GradCache, ContAccum and ContAccum over GradCache, float64,
//    dropout on, m = 2: parameters, AdamW moments and banks after 3 steps equal the
//    single-process run to 1e-10, and are bit for bit the same on both ranks;
//  - a NaN on rank 1 only (in its embeddings, then in its gradients): both ranks skip the
//    step with an error naming rank 1, and continue;
//  - fit() on two ranks: rank 0 alone writes, and a resumed pair of processes continues exactly;
//  - a killed rank: the survivor fails within the timeout, naming its peer.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/child_process.hpp"
#include "support/helpers.hpp"

#include <contaccum/contaccum.hpp>
#include <contaccum/dist/c10d.hpp>
#include <contaccum/dist/detail/free_port.hpp>

#include <nlohmann/json.hpp>


#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace contaccum;

namespace test {
namespace {

using Dual = DualEncoder<Bert, ClsPooling>;
constexpr int64_t kWorld = 2, kShare = 4, kLocal = 2, kSteps = 3, kM = 2, kCapacity = 16, kSeed = 5;

SyntheticPairsConfig data_config() {
  return {.vocab_size = 120, .passage_length = 12, .query_length = 6, .hard_negatives = kM, .seed = 3};
}
// Global step batches of kWorld * kShare pairs: the same in every process.
std::vector<PairBatch> global_batches(int64_t n) {
  SyntheticPairs data(data_config());
  std::vector<PairBatch> out;
  for (int64_t s = 0; s < n; ++s) out.push_back(data.next(kWorld * kShare));
  return out;
}
Dual make_model() {
  torch::manual_seed(11);
  Dual m(tiny_bert(0.1));
  m->to(torch::kFloat64);
  return m;
}
TrainerConfig config(int64_t n_local) {
  return {.micro_batch_size = n_local, .learning_rate = 1e-3, .dropout_seed = kSeed};
}

TokenBatch cat_tokens(const std::vector<TokenBatch>& parts) {
  std::vector<torch::Tensor> ids, mask;
  for (const auto& p : parts) {
    ids.push_back(p.input_ids);
    mask.push_back(p.attention_mask);
  }
  return {torch::cat(ids), torch::cat(mask)};
}
// The global batch reordered so that micro-batch k of kWorld * kLocal pairs is every rank's
// k-th micro-batch (what a loss per micro-batch sees on several ranks).
PairBatch interleaved(const PairBatch& global) {
  std::vector<TokenBatch> q, p, h;
  for (int64_t k = 0; k < kShare / kLocal; ++k)
    for (int64_t r = 0; r < kWorld; ++r) {
      const auto c = global.slice(r * kShare + k * kLocal, r * kShare + (k + 1) * kLocal);
      q.push_back(c.queries);
      p.push_back(c.positives);
      h.push_back(c.hard_negatives);
    }
  return {cat_tokens(q), cat_tokens(p), cat_tokens(h)};
}

// One strategy's settings on a rank and in the one-process reference.
template <class S>
struct plan {
  const char* name;
  S on_rank;
  S reference;
  int64_t reference_n_local;
  bool reference_interleaved;
};
auto plans() {
  const BankConfig bank{.capacity = kCapacity};
  return std::make_tuple(
      plan<FullBatch<>>{"FullBatch", FullBatch<>({.encode_chunk = kLocal}), FullBatch<>({.encode_chunk = kLocal}),
                        kLocal, false},
      plan<GradAccum<>>{"GradAccum", GradAccum<>(), GradAccum<>({.encode_chunk = kLocal}), kWorld * kLocal, true},
      plan<GradCache<>>{"GradCache", GradCache<>(), GradCache<>(), kLocal, false},
      plan<ContAccum<>>{"ContAccum", ContAccum<>(bank), ContAccum<>(bank, {.encode_chunk = kLocal}),
                        kWorld * kLocal, true},
      plan<ContAccumOverGradCache<>>{"ContAccumOverGradCache", ContAccumOverGradCache<>(bank),
                                     ContAccumOverGradCache<>(bank), kLocal, false});
}

template <class T>
StateDict state_of(const T& trainer, const std::vector<double>& losses) {
  StateDict s;
  trainer.save_state(s);
  s.set("test.losses", losses);
  return s;
}

// ---- the worker side ------------------------------------------------------------------

// Exchanges rows whose values say where they come from: v = 1000 rank + 10 row + kind
// (1 query, 2 positive, 3 + j hard negative j); the gradient of sum(w * gathered queries).
void worker_layout(const C10dCollective& c, const fs::path& out) {
  const auto r = static_cast<double>(c.rank());
  auto rows = [&](int64_t n, auto value) {
    auto t = torch::empty({n, 3}, torch::kFloat64);
    for (int64_t i = 0; i < n; ++i) t[i].fill_(value(i));
    return t;
  };
  auto q = rows(kShare, [&](int64_t i) { return 1000 * r + 10 * i + 1; }).requires_grad_(true);
  auto p = rows(kShare, [&](int64_t i) { return 1000 * r + 10 * i + 2; });
  auto h = rows(kShare * kM, [&](int64_t k) { return 1000 * r + 10 * (k / kM) + 3 + k % kM; });
  const LossInputs g = c.exchange({.queries = q, .positives = p, .hard_negatives = h});
  const auto w = torch::arange(g.queries.numel(), torch::kFloat64).view_as(g.queries);
  (g.queries * w).sum().backward();
  StateDict s;
  s.put("queries", g.queries);
  s.put("positives", g.positives);
  s.put("hard_negatives", g.hard_negatives);
  s.put("query_grad", q.grad());
  // ranks that disagree on the shapes: both fail with a sentence, and the group still works
  std::string mismatch;
  try {
    const auto n = c.rank() == 0 ? kShare : kShare - 1;
    (void)c.exchange({.queries = p.slice(0, 0, n), .positives = p.slice(0, 0, n)});
  } catch (const invalid_input& e) {
    mismatch = e.what();
  }
  s.set("mismatch", mismatch);
  s.set("after_mismatch", c.any_rank(c.rank() == 1));
  write_checkpoint(out / "layout", 0, s);
}

template <class S>
void worker_plan(const C10dCollective& c, const plan<S>& pl, const fs::path& out) {
  Trainer<Dual, S, FullFineTune, InfoNCE<>, C10dCollective> t(make_model(), config(kLocal), pl.on_rank, {}, {}, c);
  std::vector<double> losses;
  for (const auto& b : global_batches(kSteps)) losses.push_back(t.step(shard_of(b, c.rank(), c.world_size())).loss);
  for (const auto& p : t.model()->named_parameters()) c.require_identical(p.value(), std::string(pl.name) + " " + p.key());
  write_checkpoint(out / pl.name, kSteps, state_of(t, losses));
}

// A collective that spoils rank 1's part of two attempts: its embeddings on attempt 1,
// its gradients on attempt 2.
struct nan_on_rank_1 {
  C10dCollective inner;
  std::shared_ptr<int64_t> attempt = std::make_shared<int64_t>(-1);
  [[nodiscard]] LossInputs exchange(const LossInputs& in) const {
    if (inner.rank() != 1 || *attempt != 1) return inner.exchange(in);
    auto spoiled = in;
    spoiled.queries = in.queries * std::numeric_limits<double>::quiet_NaN();
    return inner.exchange(spoiled);
  }
  void reduce_gradients(std::vector<torch::Tensor>& params) const {
    if (inner.rank() == 1 && *attempt == 2) params.front().mutable_grad().fill_(std::numeric_limits<double>::infinity());
    inner.reduce_gradients(params);
  }
  void begin_step(int64_t step) const {
    ++*attempt;
    inner.begin_step(step);
  }
  [[nodiscard]] bool any_rank(bool flag) const { return inner.any_rank(flag); }
  [[nodiscard]] int64_t world_size() const { return inner.world_size(); }
  [[nodiscard]] int64_t rank() const { return inner.rank(); }
};

void worker_nan(const C10dCollective& c, const fs::path& out) {
  Trainer<Dual, GradCache<>, FullFineTune, InfoNCE<>, nan_on_rank_1> t(make_model(), config(kLocal), {}, {}, {},
                                                                       nan_on_rank_1{c});
  std::vector<std::string> errors;
  for (const auto& b : global_batches(5)) {
    try {
      t.step(shard_of(b, c.rank(), c.world_size()));
    } catch (const non_finite_loss& e) {
      errors.emplace_back(e.what());
    }
  }
  StateDict s = state_of(t, {});
  s.set("test.errors", errors);
  write_checkpoint(out / "nan", t.steps_done(), s);
}

// fit() on both ranks: 2 steps with a checkpoint each step, then (new trainers, as a new
// process would) resumed to kSteps.
void worker_fit(const C10dCollective& c, const fs::path& shared, const fs::path& out) {
  using T = Trainer<Dual, GradCache<>, FullFineTune, InfoNCE<>, C10dCollective>;
  for (const int64_t steps : {int64_t{2}, kSteps}) {
    T t(make_model(), config(kLocal), {}, {}, {}, c);
    ShardedLoader loader(SyntheticLoader(data_config(), kWorld * kShare), c);
    fit(t, loader, {.steps = steps, .out = shared, .save_every = 1, .resume = true, .progress = false});
    if (steps == kSteps) write_checkpoint(out / "fit-final", t.steps_done(), state_of(t, {}));
  }
}

}  // namespace

// contaccum_tests --dist-worker SCENARIO RANK PORT OUT
int run_dist_worker(int argc, char** argv) {
  if (argc != 6) return 2;
  const std::string scenario = argv[2];
  const int64_t rank = std::stoll(argv[3]);
  const int port = std::stoi(argv[4]);
  const fs::path out = fs::path(argv[5]) / ("rank" + std::to_string(rank));
  fs::create_directories(out);
  torch::set_num_threads(1);
  try {
    if (scenario == "main") {
      C10dCollective c({.rank = rank, .world_size = kWorld, .master_addr = "127.0.0.1", .master_port = port,
                        .timeout = std::chrono::seconds(60)});
      worker_layout(c, out);
      std::apply([&](const auto&... pl) { (worker_plan(c, pl, out), ...); }, plans());
      worker_nan(c, out);
      worker_fit(c, fs::path(argv[5]) / "fit", out);
      return 0;
    }
    if (scenario == "die") {  // rank 1 is killed after one step; rank 0 must notice
      C10dCollective c({.rank = rank, .world_size = kWorld, .master_addr = "127.0.0.1", .master_port = port,
                        .timeout = std::chrono::seconds(5)});
      Trainer<Dual, GradAccum<>, FullFineTune, InfoNCE<>, C10dCollective> t(make_model(), config(kLocal), {}, {}, {},
                                                                              c);
      const auto batches = global_batches(3);
      t.step(shard_of(batches[0], rank, kWorld));
      if (rank == 1) ::raise(SIGKILL);
      const auto t0 = std::chrono::steady_clock::now();
      try {
        t.step(shard_of(batches[1], rank, kWorld));
        t.step(shard_of(batches[2], rank, kWorld));
      } catch (const std::exception& e) {
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::ofstream(out / "error.json") << nlohmann::json{{"message", e.what()}, {"seconds", secs}}.dump();
        std::_Exit(0);  // the group's peer is gone: do not wait on it at exit
      }
      return 1;  // the dead peer went unnoticed
    }
  } catch (const std::exception& e) {
    std::ofstream(out / "failure.txt") << e.what();
    std::fprintf(stderr, "rank %lld: %s\n", static_cast<long long>(rank), e.what());
    return 1;
  }
  return 2;
}

namespace {

// Runs a scenario on two ranks; their exit statuses (-1: killed after `seconds`).
std::vector<int> run_ranks(const std::string& scenario, const fs::path& dir, double seconds) {
  const auto port = std::to_string(contaccum::detail::free_loopback_port("the 2-rank test"));
  std::vector<pid_t> pids;
  for (int r = 0; r < kWorld; ++r) pids.push_back(spawn_self("--dist-worker", {scenario, std::to_string(r), port, dir.string()}));
  std::vector<int> status;
  for (const auto pid : pids) status.push_back(wait_child_for(pid, seconds));
  return status;
}

std::string failure_of(const fs::path& dir, int rank) {
  std::ifstream in(dir / ("rank" + std::to_string(rank)) / "failure.txt");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// ||a - b|| / ||b|| over all the tensors under `prefix` together (as test::relative_error:
// a parameter whose gradient is zero in exact arithmetic, such as a key bias, holds only
// rounding noise, so one tensor alone is no measure).
double max_relative(const StateDict& a, const StateDict& b, const std::string& prefix, int64_t* compared) {
  double num = 0, den = 0;
  for (const auto& [key, t] : b.tensors) {
    if (key.rfind(prefix, 0) != 0) continue;
    INFO(key);
    REQUIRE(a.tensors.contains(key));
    const auto x = a.tensors.at(key).to(torch::kFloat64), y = t.to(torch::kFloat64);
    REQUIRE(x.sizes() == y.sizes());
    num += (x - y).pow(2).sum().item<double>();
    den += y.pow(2).sum().item<double>();
    ++*compared;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

void check_same_bits(const StateDict& a, const StateDict& b, const std::string& prefix) {
  for (const auto& [key, t] : b.tensors) {
    if (key.rfind(prefix, 0) != 0) continue;
    INFO(key << " differs between the ranks");
    CHECK(torch::equal(a.tensors.at(key), t));
  }
}

template <class S>
void check_plan(const plan<S>& pl, const fs::path& dir) {
  INFO(pl.name);
  Trainer<Dual, S> ref(make_model(), config(pl.reference_n_local), pl.reference);
  std::vector<double> losses;
  for (const auto& b : global_batches(kSteps)) losses.push_back(ref.step(pl.reference_interleaved ? interleaved(b) : b).loss);
  const StateDict want = state_of(ref, losses);  // NOLINT
  const std::string name(pl.name);
  const StateDict r0 = read_checkpoint(dir / "rank0" / name).state, r1 = read_checkpoint(dir / "rank1" / name).state;
  int64_t n = 0;
  CHECK(max_relative(r0, want, "model.", &n) <= 1e-10);
  CHECK(max_relative(r0, want, "optimizer.", &n) <= 1e-10);
  CHECK(max_relative(r0, want, "strategy.", &n) <= 1e-10);
  CHECK(n > 20);
  const auto got_losses = r0.values.at("test.losses").get<std::vector<double>>();
  REQUIRE(got_losses.size() == losses.size());
  for (size_t s = 0; s < losses.size(); ++s) CHECK(got_losses[s] == Approx(losses[s]).epsilon(1e-12));
  check_same_bits(r0, r1, "model.");
  check_same_bits(r0, r1, "strategy.");
  CHECK(r0.values.at("test.losses") == r1.values.at("test.losses"));
  if (name.starts_with("ContAccum")) {  // the bank is full and global: both ranks' rows per enqueue
    CHECK(r0.values.at("strategy.bank.positives.size").get<int64_t>() == kCapacity);
    CHECK(r0.values.at("strategy.bank.block_rows") == want.values.at("strategy.bank.block_rows"));
    CHECK(r0.values.at("strategy.bank.queries.head") == want.values.at("strategy.bank.queries.head"));
  }
}

}  // namespace
}  // namespace test

TEST_CASE("Two ranks over c10d/Gloo train exactly as one process on the global step", "[dist]") {
  const auto dir = test::scratch_dir("dist_main");
  const auto status = test::run_ranks("main", dir, 240);
  INFO("rank 0: " << test::failure_of(dir, 0) << "\nrank 1: " << test::failure_of(dir, 1));
  REQUIRE(status == std::vector<int>{0, 0});

  {  // the exchange's layout and backward, on each rank
    for (int r = 0; r < test::kWorld; ++r) {
      const auto s = read_checkpoint(dir / ("rank" + std::to_string(r)) / "layout").state;
      const auto q = s.tensors.at("queries"), p = s.tensors.at("positives"), h = s.tensors.at("hard_negatives");
      REQUIRE(q.size(0) == test::kWorld * test::kShare);
      REQUIRE(h.size(0) == test::kWorld * test::kShare * test::kM);
      for (int64_t src = 0; src < test::kWorld; ++src)
        for (int64_t i = 0; i < test::kShare; ++i) {
          const int64_t row = src * test::kShare + i;  // global query row
          const double base = 1000.0 * src + 10.0 * i;
          INFO("rank " << r << ": global row " << row);
          CHECK(q[row][0].item<double>() == base + 1);
          CHECK(p[row][0].item<double>() == base + 2);  // its own positive, in its own column
          for (int64_t j = 0; j < test::kM; ++j) CHECK(h[row * test::kM + j][0].item<double>() == base + 3 + j);
        }
      const auto mismatch = s.values.at("mismatch").get<std::string>();
      CHECK_THAT(mismatch, Catch::Contains("every rank must run the same steps"));
      CHECK_THAT(mismatch, Catch::Contains(r == 0 ? "but rank 1" : "but rank 0"));
      CHECK(s.values.at("after_mismatch").get<bool>());  // an agreement still works afterwards
      // d/dq_local of sum(w * Q): this rank's rows of w
      const auto w = torch::arange(q.numel(), torch::kFloat64).view_as(q);
      CHECK(torch::equal(s.tensors.at("query_grad"), w.slice(0, r * test::kShare, (r + 1) * test::kShare)));
    }
  }

  std::apply([&](const auto&... pl) { (test::check_plan(pl, dir), ...); }, test::plans());

  {  // a NaN on rank 1 only: both ranks skip those steps, naming rank 1, and go on
    const auto r0 = read_checkpoint(dir / "rank0" / "nan").state, r1 = read_checkpoint(dir / "rank1" / "nan").state;
    const auto e0 = r0.values.at("test.errors").get<std::vector<std::string>>();
    REQUIRE(e0.size() == 2);
    CHECK_THAT(e0[0], Catch::Contains("embeddings from rank 1 are not finite"));
    CHECK_THAT(e0[1], Catch::Contains("gradients of rank 1 are not finite"));
    CHECK(r1.values.at("test.errors") == r0.values.at("test.errors"));
    CHECK(r0.values.at("trainer.step").get<int64_t>() == 3);
    test::check_same_bits(r0, r1, "model.");
    // the three good steps are the one-process run on batches 0, 3 and 4
    Trainer<test::Dual, GradCache<>> ref(test::make_model(), test::config(test::kLocal));
    const auto b = test::global_batches(5);
    for (int i : {0, 3, 4}) ref.step(b[i]);
    int64_t n = 0;
    CHECK(test::max_relative(r0, test::state_of(ref, {}), "model.", &n) <= 1e-10);
  }

  {  // fit on two ranks, resumed: rank 0 wrote everything; the run equals GradCache's above
    const auto fit_dir = dir / "fit";  // both ranks' run folder
    CHECK(fs::exists(fit_dir / "checkpoints" / "latest"));
    std::ifstream log(fit_dir / "log.jsonl");
    int64_t lines = 0;
    for (std::string line; std::getline(log, line);) lines += nlohmann::json::parse(line).at("event") == "step";
    CHECK(lines == test::kSteps);
    const auto a = read_checkpoint(dir / "rank0" / "fit-final").state, b = read_checkpoint(dir / "rank1" / "fit-final").state;
    const auto plain = read_checkpoint(dir / "rank0" / "GradCache").state;
    test::check_same_bits(a, b, "model.");
    test::check_same_bits(a, plain, "model.");
  }
}

TEST_CASE("A killed rank makes the survivor fail within the timeout, naming the peer", "[dist]") {
  const auto dir = test::scratch_dir("dist_die");
  const auto t0 = std::chrono::steady_clock::now();
  const auto status = test::run_ranks("die", dir, 60);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("rank 0: " << test::failure_of(dir, 0));
  CHECK(status[1] == 128 + SIGKILL);
  REQUIRE(status[0] == 0);
  std::ifstream in(dir / "rank0" / "error.json");
  const auto j = nlohmann::json::parse(in);
  CHECK_THAT(j.at("message").get<std::string>(), Catch::Contains("peer rank 1"));
  CHECK(j.at("seconds").get<double>() <= 5.0 + 2.0);  // the 5 s timeout, and some slack
  CHECK(secs < 60);
}
