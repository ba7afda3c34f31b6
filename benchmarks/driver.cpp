// The second training core's figures, side by side in one run (steps alternate A B A B
// so drift hits every strategy alike):
//   D. ContAccum over GradCache vs GradCache vs GradAccum at the same N_total and N_local
//      (the bank filled before timing); goal: the bank nearly free on top of GradCache.
//   T. Micro-batches by token budget vs by row count, GradCache on real pairs (the
//      default dataset's lengths, tokenized by the default model's WordPiece): step time
//      and peak memory of each.
//
//   ./build/benchmarks/bench_driver [--quick] [--data DIR] [--model DIR] [--out FILE]
// (scripts/bench.sh --driver runs it and writes out/bench_driver.md, quoted in docs/benchmarks.md)
#include "race.hpp"

#include <contaccum/contaccum.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace ca = contaccum;
namespace fs = std::filesystem;
using Model = ca::DualEncoder<ca::Bert, ca::ClsPooling>;

namespace {

using bench::median;
using bench::paired_ratio;
using bench::race;
using bench::Runner;

template <class S>
Runner make_runner(std::string name, const ca::BertConfig& bert, int64_t n_local, S strategy,
                   std::function<void(S&)> prefill = {}) {
  return bench::make_runner(std::move(name), bert, {.micro_batch_size = n_local, .learning_rate = 1e-5},
                            std::move(strategy), prefill);
}

std::string row(const Runner& r, const Runner& base) {
  char line[256];
  std::snprintf(line, sizeof line, "| %s | %.3f | %.3f | %.1f | %ld | %ld |\n", r.name.c_str(), median(r.seconds),
                paired_ratio(r, base), r.peak / 1048576.0, r.micro_batches, r.fallbacks);
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  fs::path data = "data/debian-beir", model_dir = "models/all-MiniLM-L6-v2";
  std::string out = "out/bench_driver.md";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) {
      if (i + 1 >= argc) throw ca::invalid_input(std::string("bench_driver: ") + flag + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--quick") quick = true;
    else if (a == "--data") data = value("--data");
    else if (a == "--model") model_dir = value("--model");
    else if (a == "--out") out = value("--out");
    else throw ca::invalid_input("bench_driver: unknown argument '" + a + "' (--quick, --data, --model, --out)");
  }
  torch::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  // The shape of all-MiniLM-L6-v2 (the default model); --quick: a tiny smoke run.
  const ca::BertConfig bert = quick ? ca::BertConfig{.vocab_size = 30522, .hidden_size = 64, .num_hidden_layers = 2,
                                                     .num_attention_heads = 4, .intermediate_size = 128,
                                                     .max_position_embeddings = 512}
                                    : ca::BertConfig{.vocab_size = 30522, .hidden_size = 384, .num_hidden_layers = 6,
                                                     .num_attention_heads = 12, .intermediate_size = 1536,
                                                     .max_position_embeddings = 512};
  const int64_t n_local = quick ? 4 : 8, n_total = quick ? 16 : 64, memory = quick ? 64 : 1024,
                repeats = quick ? 1 : 6;
  std::ostringstream md;
  md << "Produced by `./build/benchmarks/bench_driver" << (quick ? " --quick" : "") << "` (" 
     << std::thread::hardware_concurrency() << " CPU threads, LibTorch " << TORCH_VERSION
     << ", float32, dropout 0.1, two untied BERT towers of hidden " << bert.hidden_size << ", "
     << bert.num_hidden_layers << " layers, CLS pooling, dot product). Time: median wall time of an optimizer step "
     << "after one warm-up step, the strategies of a table stepping alternately on the same batches; a ratio is "
        "the median over repeats of the two strategies' times on the same batch; peak: the "
        "largest tensor memory during a step (MemoryMeter), weights and optimizer state included.\n\n";

  {  // D: synthetic pairs, queries 32 and passages 128 tokens, one hard negative.
    ca::SyntheticPairs pairs({.vocab_size = 8192, .passage_length = 128, .query_length = 32, .hard_negatives = 1,
                              .seed = 3});
    std::fprintf(stderr, "D. ContAccum over GradCache (N_memory %ld) vs GradCache vs GradAccum, N_total %ld\n", memory,
                 n_total);
    const int64_t h = bert.hidden_size;
    auto grad = make_runner("GradAccum", bert, n_local, ca::GradAccum<>());
    auto cache = make_runner("GradCache", bert, n_local, ca::GradCache<>());
    auto cont = make_runner("ContAccum", bert, n_local, ca::ContAccum<>({.capacity = memory}),
                            std::function<void(ca::ContAccum<>&)>([&](ca::ContAccum<>& s) {
                              s.bank().set_block_rows(n_local);
                              for (int64_t i = 0; i < memory; i += n_local)
                                s.bank().enqueue(torch::randn({n_local, h}), torch::randn({n_local, h}),
                                                 torch::randn({n_local, h}));
                            }));
    using Over = ca::ContAccumOverGradCache<>;
    auto over = make_runner("ContAccum over GradCache", bert, n_local, Over({.capacity = memory}),
                            std::function<void(Over&)>([&](Over& s) {
                              s.bank().set_block_rows(n_total);
                              for (int64_t i = 0; i < memory; i += n_total)
                                s.bank().enqueue(torch::randn({n_total, h}), torch::randn({n_total, h}),
                                                 torch::randn({n_total, h}));
                            }));
    race({&grad, &cache, &cont, &over}, [&] { return pairs.next(n_total); }, repeats);
    md << "## D. ContAccum over GradCache, N_local " << n_local << ", N_total " << n_total << ", N_memory " << memory
       << "\n\n| strategy | s/step | ratio to GradCache | peak MiB | K | score-cache fallbacks |\n|---|---|---|---|---|---|\n"
       << row(grad, cache) << row(cache, cache) << row(cont, cache) << row(over, cache);
    char line[256];
    std::snprintf(line, sizeof line,
                  "\nContAccum over GradCache / GradCache: **%.3f** (goal <= 1.05); / GradAccum: %.3f.\n\n",
                  paired_ratio(over, cache), paired_ratio(over, grad));
    md << line;
  }

  {  // T: real pairs from the default dataset, tokenized as the main job does.
    const auto split = ca::read_beir(data, "train");
    auto examples = ca::beir_training_examples(split);
    const auto tok = ca::tokenizers::WordPiece::from_pretrained(model_dir);
    const ca::TokenizeConfig tc{.query_max_length = 32, .passage_max_length = 128};
    ca::PairLoader<ca::tokenizers::WordPiece> loader(ca::PairSampler(std::move(examples), {.seed = 5, .hard_negatives_per_query = 0}), tok,
                                                     {.batch_size = n_total, .tokenize = tc});
    std::vector<ca::PairBatch> batches;
    for (int64_t i = 0; i <= repeats; ++i) batches.push_back(loader.next());
    // The budget: the real tokens a row-count forward holds on average, so both cuts do
    // the same number of real tokens per forward on average; padding is what differs.
    double tokens = 0;
    for (const auto& b : batches)
      for (auto t : ca::detail::tokens_per_pair(b)) tokens += static_cast<double>(t);
    const auto per_pair = tokens / static_cast<double>(batches.size() * n_total);
    const auto budget = static_cast<int64_t>(per_pair * static_cast<double>(n_local));
    std::fprintf(stderr, "T. token budget %ld vs %ld rows per forward (%.1f real tokens per pair)\n", budget, n_local,
                 per_pair);
    auto rows = make_runner("GradCache, " + std::to_string(n_local) + " rows per forward", bert, n_local,
                            ca::GradCache<>());
    auto by_tokens = make_runner("GradCache, " + std::to_string(budget) + " tokens per forward", bert, n_local,
                                 ca::Accumulate<ca::CachedReplay, ca::Step>({.encode_chunk = 4 * n_local,
                                                                             .max_tokens = budget}));
    std::size_t next = 0;
    race({&rows, &by_tokens}, [&] { return batches[next++ % batches.size()]; }, repeats);
    md << "## T. Micro-batches by token budget, GradCache on the default dataset (N_total " << n_total
       << ", queries cut at 32 tokens, passages at 128; " << per_pair << " real tokens per pair)\n\n"
       << "| forwards cut by | s/step | ratio to rows | peak MiB | K | score-cache fallbacks |\n|---|---|---|---|---|---|\n"
       << row(rows, rows) << row(by_tokens, rows) << "\n";
  }
  fs::create_directories(fs::path(out).parent_path().empty() ? fs::path(".") : fs::path(out).parent_path());
  std::ofstream(out) << md.str();
  std::fputs(md.str().c_str(), stdout);
  return 0;
}
