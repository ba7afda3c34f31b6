// Predicted vs measured peak memory of one training step (compute/memory_model.hpp against
// MemoryMeter), across methods, model shapes and micro-batch sizes, as a markdown table.
//
//   ./build/benchmarks/bench_memory [--quick] [--out docs/budgets_table.md]
//
// Each row trains a random-initialised model for two steps (Trainer, GradAccum with one
// micro-batch of N_local pairs, AdamW) and compares the second step's
// StepStats::peak_memory_bytes with predict_step_memory; the first step (no AdamW state
// before its update) is reported too.
#include <contaccum/compute/memory_model.hpp>
#include <contaccum/contaccum.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace ca = contaccum;

namespace {

struct Lengths {
  int64_t query, passage, hard_negatives;
};

struct Row {
  std::string model, method;
  int64_t n_local;
  double predicted, measured, predicted_first, measured_first;  // MiB
  std::string phase;
};

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

template <class Model, class A, class Config>
Row measure(const std::string& model_name, const Config& config, A adapter, const std::string& method, int64_t n,
            const Lengths& len) {
  const auto before = ca::MemoryMeter::current_bytes();  // anything else alive in the process
  torch::manual_seed(0);
  ca::SyntheticPairs data({.vocab_size = config.vocab_size, .passage_length = len.passage,
                           .query_length = len.query, .hard_negatives = len.hard_negatives, .seed = 11});
  const auto first = data.next(n), second = data.next(n);
  ca::Trainer<Model, ca::GradAccum<>, A> trainer(Model(config), {.micro_batch_size = n, .learning_rate = 1e-4},
                                                 ca::GradAccum<>(), adapter);
  const auto s1 = trainer.step(first).peak_memory_bytes - before;
  const auto s2 = trainer.step(second).peak_memory_bytes - before;
  ca::StepMemoryShape shape{.micro_batch_size = n, .query_length = len.query, .passage_length = len.passage,
                            .hard_negatives = len.hard_negatives, .shared_tower = Model::Impl::shared,
                            .pooling = ca::pooling_retention<typename Model::Impl::pooler_type>};
  const auto steady = ca::predict_step_memory(config, adapter, shape);
  shape.first_step = true;
  const auto first_step = ca::predict_step_memory(config, adapter, shape);
  return {model_name, method, n, mib(steady.peak), mib(s2), mib(first_step.peak), mib(s1),
          std::string(steady.peak_phase)};
}

template <class Model, class Config>
void every_method(std::vector<Row>& rows, const std::string& name, const Config& config, const std::string& lora_targets,
                  int64_t block_k, const std::vector<int64_t>& n_locals, const Lengths& len) {
  const auto start = std::chrono::steady_clock::now();
  for (const auto n : n_locals) {
    rows.push_back(measure<Model>(name, config, ca::FullFineTune{}, "full", n, len));
    rows.push_back(measure<Model>(name, config, ca::BlockFreeze{.trainable_blocks = block_k},
                                  "block k=" + std::to_string(block_k), n, len));
    rows.push_back(measure<Model>(name, config, ca::LoRA{.rank = 8, .alpha = 16, .target_modules = lora_targets},
                                  "LoRA r=8", n, len));
    rows.push_back(measure<Model>(name, config, ca::BiasOnly{}, "bias-only", n, len));
    std::cerr << "[bench_memory] " << name << " N_local " << n << " done, "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--out" && i + 1 < argc) out = argv[++i];
    else {
      std::cerr << "usage: bench_memory [--quick] [--out FILE]\n";
      return 2;
    }
  }
  if (!ca::MemoryMeter::install()) {
    std::cerr << "bench_memory: cannot install the counting CPU allocator\n";
    return 1;
  }
  const std::string neox_targets = "query_key_value|dense|dense_h_to_4h|dense_4h_to_h";
  const std::string bert_targets = ca::LoRA{}.target_modules;
  std::vector<Row> rows;
  if (quick) {
    every_method<ca::DualEncoder<ca::Bert, ca::ClsPooling>>(
        rows, "BERT 2 x 32", ca::BertConfig{.vocab_size = 200, .hidden_size = 32, .num_hidden_layers = 2,
                                            .num_attention_heads = 4, .intermediate_size = 64,
                                            .max_position_embeddings = 64},
        bert_targets, 1, {4}, {8, 16, 1});
  } else {
    // Sizes chosen so the whole run takes under two minutes on two busy CPU cores.
    // BERT (post-LN, dropout 0.1: the attention is written out), ClsPooling, two towers (DPR).
    every_method<ca::DualEncoder<ca::Bert, ca::ClsPooling>>(
        rows, "BERT 2 x 128, vocab 4096 (two towers, CLS)",
        ca::BertConfig{.vocab_size = 4096, .hidden_size = 128, .num_hidden_layers = 2, .num_attention_heads = 4,
                       .intermediate_size = 512, .max_position_embeddings = 128},
        bert_targets, 1, {4, 16}, {16, 64, 1});
    // Pythia shapes as the compute-optimal recipe trains them: one shared tower, mean
    // pooling, in-batch negatives only, at most 75 tokens.
    every_method<ca::DualEncoder<ca::GptNeox, ca::MeanPooling, ca::SharedTower>>(
        rows, "Pythia-14m shape (6 x 128), shared tower, mean",
        ca::GptNeoxConfig{.vocab_size = 50304, .hidden_size = 128, .num_hidden_layers = 6, .num_attention_heads = 4,
                          .intermediate_size = 512, .max_position_embeddings = 2048},
        neox_targets, 2, {8}, {32, 75, 0});
    every_method<ca::DualEncoder<ca::GptNeox, ca::MeanPooling, ca::SharedTower>>(
        rows, "Pythia-31m shape (6 x 256), shared tower, mean",
        ca::GptNeoxConfig{.vocab_size = 50304, .hidden_size = 256, .num_hidden_layers = 6, .num_attention_heads = 8,
                          .intermediate_size = 1024, .max_position_embeddings = 2048},
        neox_targets, 2, {4}, {32, 75, 0});
  }

  std::ostringstream md;
  md << "| model | method | N_local | predicted MiB | measured MiB | error | peak in | first step: predicted / measured MiB |\n"
     << "|---|---|---:|---:|---:|---:|---|---:|\n";
  double worst = 0;
  for (const auto& r : rows) {
    const double err = 100.0 * (r.predicted - r.measured) / r.measured;
    worst = std::max(worst, std::abs(err));
    char line[512];
    std::snprintf(line, sizeof line, "| %s | %s | %lld | %.1f | %.1f | %+.1f%% | %s | %.1f / %.1f |\n", r.model.c_str(),
                  r.method.c_str(), static_cast<long long>(r.n_local), r.predicted, r.measured, err, r.phase.c_str(),
                  r.predicted_first, r.measured_first);
    md << line;
  }
  md << "\nLargest |error|: " << std::round(worst * 10) / 10 << "%. Float32 on the CPU, LibTorch " << TORCH_VERSION
     << ", " << std::thread::hardware_concurrency() << " CPU threads; `bench_memory" << (quick ? " --quick" : "")
     << "`.\n";
  std::cout << md.str();
  if (!out.empty()) std::ofstream(out) << md.str();
  return 0;
}
