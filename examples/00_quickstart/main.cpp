// Quickstart: assemble a trainer type from policies and train a small BERT dual encoder
// with ContAccum on generated query/passage pairs; compare with GradAccum on held-out pairs.
//
//   ./build/examples/quickstart [steps]
#include <contaccum/contaccum.hpp>

#include <cstdio>
#include <iostream>
#include <thread>

namespace ca = contaccum;

// The trainer type: encoder x pooling x towers, strategy with its bank, loss.
using Model = ca::DualEncoder<ca::Bert, ca::ClsPooling, ca::SeparateTowers>;
using ContAccumTrainer = ca::Trainer<Model, ca::ContAccum<ca::DualBank>, ca::FullFineTune, ca::InfoNCE<ca::DotProduct>>;
using GradAccumTrainer = ca::Trainer<Model, ca::GradAccum<>, ca::FullFineTune, ca::InfoNCE<ca::DotProduct>>;

static ca::BertConfig encoder_config() {
  return {.vocab_size = 2000, .hidden_size = 64, .num_hidden_layers = 2, .num_attention_heads = 4,
          .intermediate_size = 256, .max_position_embeddings = 64};
}

// Top-1 accuracy of retrieving each query's positive among all passages of a held-out set.
template <class M>
double top1(M& model, const ca::PairBatch& eval) {
  torch::NoGradGuard no_grad;
  model->eval();
  auto q = model->encode_queries(eval.queries);      // (N, H)
  auto p = model->encode_passages(eval.positives);   // (N, H)
  auto best = torch::matmul(q, p.t()).argmax(1);     // (N)
  return (best == torch::arange(eval.size())).to(torch::kDouble).mean().template item<double>();
}

template <class T, class S>
double train(const char* label, S strategy, int steps, const ca::PairBatch& eval) {
  torch::manual_seed(0);
  T trainer(Model(encoder_config()),
            {.micro_batch_size = 8, .learning_rate = 5e-4, .warmup_steps = steps / 10, .total_steps = steps},
            std::move(strategy));
  ca::SyntheticPairs data({.vocab_size = 2000, .passage_length = 32, .query_length = 8, .hard_negatives = 1, .seed = 1});
  const double before = top1(trainer.model(), eval);
  for (int i = 0; i < steps; ++i) {
    const auto s = trainer.step(data.next(64));  // N_total = 64 = 8 micro-batches of 8
    if (i % 10 == 0 || i + 1 == steps)
      std::printf("[%s] step %3d/%d  loss %.4f  negatives/query %.0f  GradNormRatio %.2f  %.2fs/step  peak %.1f MiB\n",
                  label, i + 1, steps, s.loss, s.negatives_per_query, s.grad_norm_ratio, s.seconds,
                  static_cast<double>(s.peak_memory_bytes) / (1 << 20));
  }
  const double after = top1(trainer.model(), eval);
  std::printf("[%s] held-out top-1: %.3f -> %.3f\n", label, before, after);
  return after;
}

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 60;
  torch::set_num_threads(std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
  ca::SyntheticPairs held_out({.vocab_size = 2000, .passage_length = 32, .query_length = 8, .hard_negatives = 0, .seed = 99});
  const auto eval = held_out.next(256);
  const double cont = train<ContAccumTrainer>("ContAccum", ca::ContAccum<ca::DualBank>({.capacity = 512}), steps, eval);
  const double grad = train<GradAccumTrainer>("GradAccum", ca::GradAccum<>(), steps, eval);
  std::printf("\nheld-out top-1 after %d steps (N_local 8, N_total 64):  ContAccum %.3f   GradAccum %.3f\n", steps,
              cont, grad);
  return 0;
}
