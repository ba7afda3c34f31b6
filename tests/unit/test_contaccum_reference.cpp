// ContAccum over several optimizer steps equals an independent Python implementation of
// the official algorithm (tests/reference/contaccum_reference.py), fed the same
// embeddings: the loss of every step and the gradients w.r.t. every current embedding.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace contaccum;
using json = nlohmann::json;

namespace {

std::vector<double> flat(const torch::Tensor& t) {
  auto c = t.detach().contiguous().to(torch::kDouble);
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}
torch::Tensor tensor(const json& j, int64_t width) {
  auto v = j.get<std::vector<double>>();
  return torch::tensor(v, torch::kFloat64).view({-1, width});
}

struct Case {
  const char* name;
  BankConfig bank;
  int64_t m;
};

void check_against_reference(const Case& c) {
  const int64_t n_local = 4, k = 3, steps = 3, width = 6, n_total = n_local * k;
  REQUIRE(c.bank.capacity % n_local == 0);  // the reference counts micro-batches
  torch::manual_seed(40);
  test::LookupBiEncoder model(200, width);
  ContAccum<DualBank> strategy(c.bank);
  InfoNCE<> loss;

  json spec = {{"n_local", n_local}, {"k", k}, {"m", c.m}, {"width", width},
               {"bank_microbatches", c.bank.capacity / n_local}, {"query_bank", c.bank.query_bank},
               {"hard_negative_bank", c.bank.hard_negative_bank},
               {"persist_across_steps", c.bank.persist_across_steps}, {"steps", json::array()}};
  struct Ours { double loss; torch::Tensor gq, gp, gh; };
  std::vector<Ours> ours;
  auto params = model->parameters();
  for (int64_t s = 0; s < steps; ++s) {
    const auto qf = s * n_total, pf = s * n_total * (1 + c.m);
    const auto batch = test::lookup_batch(qf, pf, n_total, c.m);
    test::zero_grads(params);
    const auto acc = strategy.accumulate(model, loss, batch, StepContext{s, n_local});
    strategy.finish_step(true);
    auto q = model->queries.slice(0, qf, qf + n_total);
    auto p = model->passages.slice(0, pf, pf + n_total);
    auto h = model->passages.slice(0, pf + n_total, pf + n_total * (1 + c.m));
    spec["steps"].push_back({{"q", flat(q)}, {"p", flat(p)}, {"h", flat(h)}});
    ours.push_back({acc.loss, model->queries.grad().slice(0, qf, qf + n_total).clone(),
                     model->passages.grad().slice(0, pf, pf + n_total).clone(),
                     model->passages.grad().slice(0, pf + n_total, pf + n_total * (1 + c.m)).clone()});
  }

  const auto dir = test::scratch_dir("contaccum_reference");
  const auto in = dir / (std::string(c.name) + ".in.json"), out = dir / (std::string(c.name) + ".out.json");
  std::ofstream(in) << spec.dump();
  REQUIRE(test::run_python_reference("contaccum_reference.py", in.string() + " " + out.string()));
  const auto ref = json::parse(std::ifstream(out));
  REQUIRE(ref["steps"].size() == static_cast<size_t>(steps));

  for (int64_t s = 0; s < steps; ++s) {
    const auto& r = ref["steps"][s];
    INFO(c.name << " step " << s);
    CHECK(std::abs(ours[s].loss - r["loss"].get<double>()) <= 1e-6 * std::max(1.0, std::abs(ours[s].loss)));
    std::vector<torch::Tensor> mine{ours[s].gq, ours[s].gp}, theirs{tensor(r["gq"], width), tensor(r["gp"], width)};
    if (c.m > 0) {
      mine.push_back(ours[s].gh);
      theirs.push_back(tensor(r["gh"], width));
    }
    const double err = test::relative_error(mine, theirs);
    INFO("relative gradient error " << err);
    CHECK(err <= 1e-6);
  }
  // Negative control: the banks changed the result (GradAccum would differ from the reference).
  if (c.bank.capacity > 0) CHECK(std::abs(ours.back().loss - ref["steps"][0]["loss"].get<double>()) > 0);
}

}  // namespace

TEST_CASE("ContAccum equals the reference algorithm over several steps", "[contaccum][reference][python]") {
  const Case cases[] = {
      {"dual_bank", {.capacity = 8}, 1},
      {"dual_bank_wraps_within_step", {.capacity = 4}, 1},
      {"two_hard_negatives", {.capacity = 8}, 2},
      {"no_hard_negatives", {.capacity = 12}, 0},
      {"without_query_bank", {.capacity = 8, .query_bank = false}, 1},
      {"without_past_encoder", {.capacity = 8, .persist_across_steps = false}, 1},
      {"no_hard_negative_bank", {.capacity = 8, .hard_negative_bank = false}, 1},
      {"streamed_bank_scores", {.capacity = 8, .cache_scores = false}, 1},
  };
  for (const auto& c : cases) {
    SECTION(c.name) { check_against_reference(c); }
  }
}
