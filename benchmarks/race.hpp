#pragma once
// What the strategy benchmarks share: a Trainer on BERT towers behind one step function,
// runners stepped alternately on the same batches (a "race", so drift in the machine's
// speed hits every runner alike), medians and paired ratios.
#include <contaccum/contaccum.hpp>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace bench {

namespace ca = contaccum;
using BertModel = ca::DualEncoder<ca::Bert, ca::ClsPooling>;

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// One strategy's Trainer behind a uniform interface, and what its timed steps measured.
struct Runner {
  std::string name;
  std::function<ca::StepStats(const ca::PairBatch&)> step;
  std::function<int64_t()> bank_bytes = [] { return int64_t{0}; };   // the bank's rings, if it has one
  std::function<int64_t()> cache_bytes = [] { return int64_t{0}; };  // its score cache
  std::vector<double> seconds;                                       // per timed step
  int64_t peak = 0, fallbacks = 0, micro_batches = 0;
};

// A Trainer of strategy `strategy` on fresh BERT towers (seeded: every runner starts from
// the same weights) on `device`; `prefill` runs on its strategy before the first step.
template <class S>
Runner make_runner(std::string name, const ca::BertConfig& bert, ca::TrainerConfig config, S strategy,
                   const std::function<void(S&)>& prefill = {}, const torch::Device& device = torch::kCPU) {
  torch::manual_seed(0);
  BertModel model(bert);
  model->to(device);
  auto trainer = std::make_shared<ca::Trainer<BertModel, S>>(model, config, std::move(strategy));
  if (prefill) prefill(trainer->strategy());
  Runner r{std::move(name), [trainer](const ca::PairBatch& b) { return trainer->step(b); }};
  if constexpr (requires { trainer->strategy().bank(); }) {
    r.bank_bytes = [trainer] { return trainer->strategy().bank().bytes(); };
    r.cache_bytes = [trainer] { return trainer->strategy().bank().score_cache_bytes(); };
  }
  return r;
}

// Fills a ContAccum bank with `rows` random rows per ring (m hard negatives per query), one
// block of `block` rows at a time, as a long run would have; other strategies are left alone.
template <class S>
void fill_bank(S& strategy, int64_t rows, int64_t block, int64_t m, int64_t width,
               const torch::Device& device = torch::kCPU) {
  if constexpr (requires { strategy.bank(); }) {
    const auto opts = torch::TensorOptions().device(device);
    for (int64_t i = 0; i < rows; i += block)
      strategy.bank().enqueue(torch::randn({block, width}, opts), torch::randn({block, width}, opts),
                              torch::randn({block * m, width}, opts));
  }
}

// `repeats` + 1 rounds; in each, every runner steps on the same batch from `next`. Round 0
// warms up (allocator pools, caches) and is not timed.
inline void race(const std::vector<Runner*>& runners, const std::function<ca::PairBatch()>& next, int64_t repeats) {
  for (int64_t rep = 0; rep <= repeats; ++rep) {
    const auto batch = next();
    for (auto* r : runners) {
      const auto s = r->step(batch);
      std::fprintf(stderr, "  %-34s N_total %4ld  %7.3f s  peak %8.1f MiB  K %3ld  loss %.3f\n", r->name.c_str(),
                   static_cast<long>(batch.size()), s.seconds, s.peak_memory_bytes / 1048576.0,
                   static_cast<long>(s.micro_batches), s.loss);
      r->peak = std::max(r->peak, s.peak_memory_bytes);
      if (rep == 0) continue;
      r->seconds.push_back(s.seconds);
      r->fallbacks += s.score_cache_fallbacks;
      r->micro_batches = s.micro_batches;
    }
  }
}

// The median over rounds of a's step time over b's in the same round: the two stepped back
// to back on the same batch, so load that drifts across rounds cancels.
inline double paired_ratio(const Runner& a, const Runner& b) {
  std::vector<double> r;
  for (std::size_t i = 0; i < std::min(a.seconds.size(), b.seconds.size()); ++i) r.push_back(a.seconds[i] / b.seconds[i]);
  return median(r);
}

}  // namespace bench
