// contaccum's side of the training-step comparison with sentence-transformers
// (scripts/bench.sh --train; the other side is benchmarks/train_step_reference.py):
// all-MiniLM-L6-v2 (mean pooling, normalised, one tower), cosine InfoNCE at scale 20 (what
// MultipleNegativesRankingLoss computes), AdamW lr 2e-5, gradient norm clipped to 1,
// dropout on, 128 tokens at most per text. Each timed step includes tokenizing its pairs.
//   bench_train_step PAIRS MODEL_DIR MODE STEPS WARMUP THREADS [PRECISION [LAYOUT]]
// MODE "mnrl": FullBatch at batch 32 (one forward); "cached": GradCache at N_total 64,
// N_local 16 (CachedMultipleNegativesRankingLoss with mini_batch_size 16). Prints one JSON
// object with the per-step seconds (warm-up steps excluded). LAYOUT "padded" (default) runs
// the encoder on the padded (B, T) batch as transformers does; "unpadded" sets
// Bert::set_unpadded, which runs the per-token work on the real tokens only.
#include <contaccum/contaccum.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace ca = contaccum;
using Model = ca::DualEncoder<ca::Bert, ca::Normalized<ca::MeanPooling>, ca::SharedTower>;
using Loss = ca::InfoNCE<ca::Cosine>;

namespace {

template <class S>
std::vector<double> run(const std::vector<ca::TextPair>& pairs, const std::string& model_dir, S strategy,
                        int64_t batch, int64_t n_local, int steps, int warmup, ca::Precision precision, bool unpadded) {
  torch::manual_seed(0);
  const auto tok = ca::tokenizers::load_tokenizer(model_dir);
  Model model(ca::load_bert(model_dir));
  model->query_encoder->set_unpadded(unpadded);  // one tower: query_encoder is passage_encoder
  ca::Trainer<Model, S, ca::FullFineTune, Loss> trainer(
      model,
      {.micro_batch_size = n_local, .learning_rate = 2e-5, .max_grad_norm = 1.0, .precision = precision},
      std::move(strategy), {}, Loss{ca::Cosine{0.05}});
  const ca::TokenizeConfig tc{.query_max_length = 128, .passage_max_length = 128};
  std::vector<double> seconds;
  const auto n = static_cast<int64_t>(pairs.size());
  for (int step = 0; step < warmup + steps; ++step) {
    const int64_t first = (step * batch) % (n - batch + 1);
    const std::span<const ca::TextPair> rows(pairs.data() + first, static_cast<size_t>(batch));
    const auto t0 = std::chrono::steady_clock::now();
    const auto b = ca::tokenize_pairs(tok, rows, tc);
    (void)trainer.step(b);
    if (step >= warmup) seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return seconds;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 7) throw std::runtime_error("usage: bench_train_step PAIRS MODEL_DIR MODE STEPS WARMUP THREADS [PRECISION]");
  const std::string pairs_file = argv[1], model_dir = argv[2], mode = argv[3];
  const int steps = std::stoi(argv[4]), warmup = std::stoi(argv[5]);
  const auto precision = argc > 7 ? ca::parse_precision(argv[7], "PRECISION") : ca::Precision::fp32;
  const std::string layout = argc > 8 ? argv[8] : "padded";
  if (layout != "padded" && layout != "unpadded") throw std::runtime_error("unknown LAYOUT " + layout + " (padded or unpadded)");
  const bool unpadded = layout == "unpadded";
  torch::set_num_threads(std::stoi(argv[6]));
  std::vector<ca::TextPair> pairs;
  std::ifstream in(pairs_file);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    ca::TextPair p;
    p.query_id = std::to_string(pairs.size());
    p.query = j.at("query").get<std::string>();
    p.positive.text = j.at("positive").get<std::string>();
    pairs.push_back(std::move(p));
  }
  if (pairs.size() < 64) throw std::runtime_error(pairs_file + ": fewer than 64 pairs");
  std::vector<double> seconds;
  int64_t batch = 0;
  if (mode == "mnrl") {
    batch = 32;
    seconds = run(pairs, model_dir, ca::FullBatch<>(), batch, batch, steps, warmup, precision, unpadded);
  } else if (mode == "cached") {
    batch = 64;
    seconds = run(pairs, model_dir, ca::GradCache<>(), batch, 16, steps, warmup, precision, unpadded);
  } else {
    throw std::runtime_error("unknown MODE " + mode + " (mnrl or cached)");
  }
  std::cout << nlohmann::json{{"side", "contaccum"}, {"mode", mode}, {"batch", batch},
                              {"precision", std::string(ca::to_string(precision))}, {"layout", layout},
                              {"seconds", seconds}}
                   .dump()
            << std::endl;
} catch (const std::exception& e) {
  std::cerr << "bench_train_step: " << e.what() << "\n";
  return 1;
}
