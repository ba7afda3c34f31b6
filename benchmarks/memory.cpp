// Predicted vs measured peak memory of one training step (compute/memory_model.hpp against
// MemoryMeter), across methods, model shapes and micro-batch sizes, as a markdown table;
// with --strategies across the five strategies instead (full fine-tuning).
//
//   ./build/benchmarks/bench_memory [--quick | --strategies] [--out docs/budgets_table.md]
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
  double blind = -1;  // MiB: the prediction of one micro-batch of N_local pairs, blind to the strategy
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

// One row per strategy (full fine-tuning): the peak of the first step after the bank has
// filled (the third step without a bank) against the steady-state prediction.
template <class Model, class S, class Config>
Row measure_strategy(const std::string& model_name, const Config& config, S strategy, const std::string& label,
                     int64_t n, int64_t k, int64_t capacity, const Lengths& len, bool recompute = false) {
  const auto before = ca::MemoryMeter::current_bytes();
  torch::manual_seed(0);
  ca::SyntheticPairs data({.vocab_size = config.vocab_size, .passage_length = len.passage,
                           .query_length = len.query, .hard_negatives = len.hard_negatives, .seed = 11});
  Model model(config);
  if (recompute) {
    model->query_encoder->set_gradient_checkpointing(true);
    model->passage_encoder->set_gradient_checkpointing(true);
  }
  ca::Trainer<Model, S> trainer(model, {.micro_batch_size = n, .learning_rate = 1e-4}, std::move(strategy));
  const auto s1 = trainer.step(data.next(n * k)).peak_memory_bytes - before;
  const auto warm = std::max<int64_t>(1, (capacity + n * k - 1) / (n * k));
  for (int64_t i = 0; i < warm; ++i) (void)trainer.step(data.next(n * k));
  const auto s3 = trainer.step(data.next(n * k)).peak_memory_bytes - before;
  ca::StepMemoryShape shape{.micro_batch_size = n, .query_length = len.query, .passage_length = len.passage,
                            .hard_negatives = len.hard_negatives, .shared_tower = Model::Impl::shared,
                            .pooling = ca::pooling_retention<typename Model::Impl::pooler_type>,
                            .strategy = ca::memory_strategy<S>, .micro_batches = k, .bank_capacity = capacity,
                            .recompute = recompute};
  const auto steady = ca::predict_step_memory(config, ca::FullFineTune{}, shape);
  shape.first_step = true;
  const auto first_step = ca::predict_step_memory(config, ca::FullFineTune{}, shape);
  const auto blind = ca::predict_step_memory(config, ca::FullFineTune{},
                                             {.micro_batch_size = n, .query_length = len.query,
                                              .passage_length = len.passage, .hard_negatives = len.hard_negatives,
                                              .shared_tower = shape.shared_tower, .pooling = shape.pooling});
  return {model_name, label, n, mib(steady.peak), mib(s3), mib(first_step.peak), mib(s1),
          std::string(steady.peak_phase), mib(blind.peak)};
}

template <class Model, class Config>
void every_strategy(std::vector<Row>& rows, const std::string& name, const Config& config, int64_t n, int64_t k,
                    int64_t cap, const Lengths& len) {
  const auto kk = std::to_string(k), nn = std::to_string(n * k), cc = std::to_string(cap);
  rows.push_back(measure_strategy<Model>(name, config, ca::FullBatch<>(), "FullBatch N=" + nn, n * k, 1, 0, len));
  rows.push_back(measure_strategy<Model>(name, config, ca::GradAccum<>(), "GradAccum K=" + kk, n, k, 0, len));
  rows.push_back(measure_strategy<Model>(name, config, ca::GradCache<>(), "GradCache K=" + kk, n, k, 0, len));
  rows.push_back(measure_strategy<Model>(name, config, ca::ContAccum<>({.capacity = cap}),
                                         "ContAccum K=" + kk + ", N_memory " + cc, n, k, cap, len));
  rows.push_back(measure_strategy<Model>(name, config, ca::ContAccumOverGradCache<>({.capacity = cap}),
                                         "ContAccum over GradCache K=" + kk + ", N_memory " + cc, n, k, cap, len));
  rows.push_back(measure_strategy<Model>(name, config, ca::GradAccum<>(), "GradAccum K=" + kk + ", recompute", n, k, 0,
                                         len, true));
  rows.push_back(measure_strategy<Model>(name, config, ca::GradCache<>(), "GradCache K=" + kk + ", recompute", n, k, 0,
                                         len, true));
  rows.push_back(measure_strategy<Model>(name, config, ca::ContAccum<>({.capacity = cap}),
                                         "ContAccum K=" + kk + ", N_memory " + cc + ", recompute", n, k, cap, len, true));
  std::cerr << "[bench_memory] " << name << " strategies done\n";
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
  bool quick = false, strategies = false;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--strategies") strategies = true;
    else if (a == "--out" && i + 1 < argc) out = argv[++i];
    else {
      std::cerr << "usage: bench_memory [--quick | --strategies] [--out FILE]\n";
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
  if (strategies) {
    const ca::BertConfig bert{.vocab_size = 4096, .hidden_size = 128, .num_hidden_layers = 2, .num_attention_heads = 4,
                              .intermediate_size = 512, .max_position_embeddings = 128};
    every_strategy<ca::DualEncoder<ca::Bert, ca::ClsPooling>>(rows, "BERT 2 x 128 (two towers, CLS)", bert, 4, 4, 32,
                                                              {16, 64, 1});
    const ca::BertConfig small{.vocab_size = 512, .hidden_size = 64, .num_hidden_layers = 2, .num_attention_heads = 4,
                               .intermediate_size = 256, .max_position_embeddings = 128};
    every_strategy<ca::DualEncoder<ca::Bert, ca::ClsPooling>>(rows, "BERT 2 x 64, vocab 512 (two towers, CLS)", small,
                                                              8, 8, 2048, {16, 64, 1});
    every_strategy<ca::DualEncoder<ca::GptNeox, ca::MeanPooling, ca::SharedTower>>(
        rows, "GPT-NeoX 6 x 128, vocab 1024, shared tower, mean",
        ca::GptNeoxConfig{.vocab_size = 1024, .hidden_size = 128, .num_hidden_layers = 6, .num_attention_heads = 4,
                          .intermediate_size = 512, .max_position_embeddings = 2048},
        8, 8, 2048, {32, 75, 0});
  } else if (quick) {
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
  md << "| model | " << (strategies ? "strategy" : "method")
     << " | N_local | predicted MiB | measured MiB | error | peak in | first step: predicted / measured MiB |"
     << (strategies ? " one micro-batch, strategy-blind |\n" : "\n")
     << "|---|---|---:|---:|---:|---:|---|---:|" << (strategies ? "---:|\n" : "\n");
  double worst = 0;
  for (const auto& r : rows) {
    const double err = 100.0 * (r.predicted - r.measured) / r.measured;
    worst = std::max(worst, std::abs(err));
    char line[512];
    std::snprintf(line, sizeof line, "| %s | %s | %lld | %.1f | %.1f | %+.1f%% | %s | %.1f / %.1f |", r.model.c_str(),
                  r.method.c_str(), static_cast<long long>(r.n_local), r.predicted, r.measured, err, r.phase.c_str(),
                  r.predicted_first, r.measured_first);
    md << line;
    if (r.blind >= 0) {
      std::snprintf(line, sizeof line, " %.1f (%+.1f%%) |", r.blind, 100.0 * (r.blind - r.measured) / r.measured);
      md << line;
    }
    md << "\n";
  }
  md << "\nLargest |error|: " << std::round(worst * 10) / 10 << "%. Float32 on the CPU, LibTorch " << TORCH_VERSION
     << ", " << std::thread::hardware_concurrency() << " CPU threads; `bench_memory" << (quick ? " --quick" : "")
     << (strategies ? " --strategies" : "")
     << "`.\n";
  std::cout << md.str();
  if (!out.empty()) std::ofstream(out) << md.str();
  return 0;
}
