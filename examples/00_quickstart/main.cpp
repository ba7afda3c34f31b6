// Quickstart: assemble trainer types from policies, then fine-tune one pretrained small
// BERT dual encoder with three accumulation strategies at the same memory budget
// (N_local = 8) and compare them on held-out pairs.
//
//   ./build/examples/quickstart [--steps N] [--pretrain-steps N] [--quick]
//
// --steps: fine-tuning steps per strategy (default 40); --pretrain-steps: the stand-in
// pretraining's steps (default 40); --quick: 5 and 10, a few seconds (ctest runs it so).
// It ends with checks it prints as "ok" or "NOT ..." (exit status 1 then).
//
// Data: generated query/passage pairs (a query is a shuffled subset of its passage's
// tokens; each query has one hard negative that shares half of its positive).
// "Pretraining" is a short GradCache run from random init, standing in for the
// pretrained checkpoint a real user starts from (ContAccum is a fine-tuning method).
#include <contaccum/contaccum.hpp>

#include "../common/args.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <iostream>
#include <sstream>
#include <thread>

namespace ca = contaccum;

// The model type: encoder x pooling reader x tower policy.
using Model = ca::DualEncoder<ca::Bert, ca::MeanPooling, ca::SeparateTowers>;
// Trainer types: model x strategy (x adapter x loss, defaulted to FullFineTune and InfoNCE<DotProduct>).
template <class Strategy>
using TrainerWith = ca::Trainer<Model, Strategy, ca::FullFineTune, ca::InfoNCE<ca::DotProduct>>;

namespace {

constexpr int64_t vocab = 500;

ca::BertConfig encoder_config() {
  return {.vocab_size = vocab, .hidden_size = 64, .num_hidden_layers = 2, .num_attention_heads = 4,
          .intermediate_size = 256, .max_position_embeddings = 64};
}
ca::SyntheticPairs pairs(uint64_t seed, int64_t hard_negatives = 1) {
  return ca::SyntheticPairs(
      {.vocab_size = vocab, .passage_length = 32, .query_length = 8, .hard_negatives = hard_negatives, .seed = seed});
}

// Top-1 accuracy: each held-out query against all held-out passages.
double top1(Model& model, const ca::PairBatch& eval) {
  torch::NoGradGuard no_grad;
  model->eval();
  auto q = model->encode_queries(eval.queries);     // (N, H)
  auto p = model->encode_passages(eval.positives);  // (N, H)
  auto best = torch::matmul(q, p.t()).argmax(1);    // (N)
  return (best == torch::arange(eval.size())).to(torch::kDouble).mean().item<double>();
}

struct Result {
  const char* name;
  double loss, negatives, ratio, seconds, peak_mib, accuracy;
  bool finite;  // every step's loss
};

template <class Strategy>
Result fine_tune(const char* name, Strategy strategy, const std::string& pretrained, int steps,
                 const ca::PairBatch& eval) {
  torch::manual_seed(1);
  Model model(encoder_config());
  std::istringstream in(pretrained);
  torch::load(model, in);
  TrainerWith<Strategy> trainer(model,
                                {.micro_batch_size = 8, .learning_rate = 5e-4, .warmup_steps = steps / 10,
                                 .total_steps = steps},
                                std::move(strategy));
  auto data = pairs(1);
  Result r{name, 0, 0, 0, 0, 0, 0, true};
  for (int i = 0; i < steps; ++i) {
    const auto s = trainer.step(data.next(64));  // N_total = 64: K = 8 micro-batches of 8
    if ((i + 1) % 10 == 0 || i + 1 == steps)
      std::printf("  [%s] step %3d/%d  loss %.3f  negatives/query %4.0f  GradNormRatio %.2f  %.2fs/step\n", name,
                  i + 1, steps, s.loss, s.negatives_per_query, s.grad_norm_ratio, s.seconds);
    r.loss = s.loss;
    r.finite = r.finite && std::isfinite(s.loss);
    r.negatives = s.negatives_per_query;
    r.ratio = s.grad_norm_ratio;
    r.seconds += s.seconds / steps;
    r.peak_mib = std::max(r.peak_mib, static_cast<double>(s.peak_memory_bytes) / (1 << 20));
  }
  r.accuracy = top1(model, eval);
  return r;
}

}  // namespace

constexpr const char* usage = "quickstart [--steps N] [--pretrain-steps N] [--quick]";

int main(int argc, char** argv) try {
  if (example::wants_help(argc, argv)) {
    std::cout << "usage: " << usage << "\n  trains a tiny dual encoder on synthetic pairs with GradAccum, GradCache and "
              << "ContAccum at one memory budget and prints a table\n";
    return 0;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows line by line in a log file too
  example::Args args(argc, argv, 1, {"--quick"});
  ca::detail::require(args.positional.empty(), "quickstart takes no positional argument, got '",
                      args.positional.empty() ? "" : args.positional.front(), "'\nusage: ", usage);
  const bool quick = args.flag("--quick");
  const int steps = static_cast<int>(args.integer("--steps", quick ? 10 : 40));
  const int pretrain_steps = static_cast<int>(args.integer("--pretrain-steps", quick ? 5 : 40));
  args.check_all_used(usage);
  torch::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const auto eval = pairs(99, 0).next(256);

  std::printf("pretraining a 2-layer BERT dual encoder (%d GradCache steps of 64 pairs)...\n", pretrain_steps);
  torch::manual_seed(0);
  Model base(encoder_config());
  {
    TrainerWith<ca::GradCache<>> pre(base, {.micro_batch_size = 8, .learning_rate = 2e-3, .warmup_steps = 5});
    auto data = pairs(7);
    for (int i = 0; i < pretrain_steps; ++i) pre.step(data.next(64));
  }
  std::ostringstream blob;
  torch::save(base, blob);
  const double start = top1(base, eval);
  std::printf("pretrained: held-out top-1 %.3f\n\nfine-tuning, N_local = 8, N_total = 64:\n", start);

  const Result results[] = {
      fine_tune("GradAccum", ca::GradAccum<>(), blob.str(), steps, eval),
      fine_tune("GradCache", ca::GradCache<>(), blob.str(), steps, eval),
      fine_tune("ContAccum", ca::ContAccum<ca::DualBank>({.capacity = 64}), blob.str(), steps, eval),
  };
  std::printf("\n| strategy  | negatives/query | GradNormRatio | s/step | peak MiB | held-out top-1 (from %.3f) |\n",
              start);
  std::printf("|-----------|-----------------|---------------|--------|----------|-----------------------------|\n");
  for (const auto& r : results)
    std::printf("| %-9s | %15.0f | %13.2f | %6.3f | %8.1f | %27.3f |\n", r.name, r.negatives, r.ratio, r.seconds,
                r.peak_mib, r.accuracy);

  // What holds at any length of run: GradCache scores the whole N_total batch and ContAccum
  // adds its memory bank to each micro-batch, so both see more negatives per query than
  // GradAccum at the same N_local; and no loss is NaN or Inf.
  const auto& [accum, cache, cont] = results;
  const bool more_negatives = cache.negatives > accum.negatives && cont.negatives > accum.negatives;
  const bool finite = accum.finite && cache.finite && cont.finite;
  std::printf("\nchecks:\n");
  std::printf("  GradCache and ContAccum see more negatives per query than GradAccum (%.0f, %.0f > %.0f): %s\n",
              cache.negatives, cont.negatives, accum.negatives, more_negatives ? "ok" : "NOT so");
  std::printf("  every strategy's loss stayed finite: %s\n", finite ? "ok" : "NOT so");
  return more_negatives && finite ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "\nerror: " << e.what() << "\n";
  return 1;
}
