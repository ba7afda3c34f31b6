// The strategy benchmark of scripts/gpu_check.sh: BERT-base towers on one CUDA device at the
// ContAccum paper's setting, the strategies compared stepping alternately on the same batches.
//
//   ./build-gpu/benchmarks/bench_gpu_strategies [--precision bf16|fp32] [--repeats 3] [--out FILE]
//
//   A. ContAccum (N_memory 8192, bank filled) vs GradAccum: N_local 8, K 16 (N_total 128)
//   B. GradCache vs GradAccum at N_total 512 (N_local 8, K 64)
// and the model FLOP utilisation (MFU) of each, against the matrix-product rate measured on
// the same device in the same precision:
//   model FLOPs of a step = sum over its sequences of  6 N s + 12 L d s^2
// (N the encoder's non-embedding parameters, L its layers, d its width, s a sequence's
// length: the forward and backward of the weights and of attention's two products, as the
// PaLM paper counts them; GradCache's second forward is overhead, not model FLOPs).
#include "race.hpp"

#include <contaccum/contaccum.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace ca = contaccum;

namespace {

using bench::median;
using bench::Runner;

constexpr int64_t kQueryLength = 32, kPassageLength = 128, kHardNegatives = 1, kLocal = 8;

ca::BertConfig bert_base() {
  return {.vocab_size = 30522, .hidden_size = 768, .num_hidden_layers = 12, .num_attention_heads = 12,
          .intermediate_size = 3072, .max_position_embeddings = 512};
}

// Model FLOPs of one optimizer step over n_total pairs (both towers, formula above).
double step_flops(const ca::BertConfig& c, int64_t n_total) {
  const double n = static_cast<double>(ca::non_embedding_parameters(c));
  const double l = static_cast<double>(c.num_hidden_layers), d = static_cast<double>(c.hidden_size);
  auto per_sequence = [&](double s) { return 6 * n * s + 12 * l * d * s * s; };
  return static_cast<double>(n_total) * (per_sequence(kQueryLength) +
                                         (1 + kHardNegatives) * per_sequence(kPassageLength));
}

// The device's matrix-product rate in `dtype`: 8192^3 products, median of 10 after 3 warm-ups.
double gemm_flops_per_second(const torch::Device& device, torch::ScalarType dtype) {
  const int64_t n = 8192;
  auto a = torch::randn({n, n}, torch::TensorOptions().device(device).dtype(dtype));
  auto b = torch::randn({n, n}, torch::TensorOptions().device(device).dtype(dtype));
  std::vector<double> t;
  for (int i = 0; i < 13; ++i) {
    torch::cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    auto c = torch::matmul(a, b);
    torch::cuda::synchronize();
    if (i >= 3) t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * n * n * n / median(t);
}

template <class S>
Runner make_runner(const std::string& name, const torch::Device& device, ca::Precision precision, S strategy,
                   int64_t prefill = 0) {
  return bench::make_runner(name, bert_base(),
                            {.micro_batch_size = kLocal, .learning_rate = 1e-5, .precision = precision},
                            std::move(strategy), std::function<void(S&)>([&](S& s) {
                              bench::fill_bank(s, prefill, kLocal, kHardNegatives, bert_base().hidden_size, device);
                            }),
                            device);
}

void race(std::vector<Runner*> runners, ca::SyntheticPairs& data, int64_t n_total, int64_t repeats) {
  bench::race(runners, [&] { return data.next(n_total); }, repeats);
}

}  // namespace

int main(int argc, char** argv) {
  auto precision = ca::Precision::bf16;
  int64_t repeats = 3;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--precision" && i + 1 < argc) precision = ca::parse_precision(argv[++i], "--precision");
    else if (a == "--repeats" && i + 1 < argc) repeats = std::max(1, std::stoi(argv[++i]));
    else if (a == "--out" && i + 1 < argc) out = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_gpu_strategies [--precision bf16|fp32] [--repeats 3] [--out FILE]\n"
                           "unknown argument: %s\n", a.c_str());
      return 2;
    }
  }
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "bench_gpu_strategies: no CUDA device (or a CPU-only LibTorch): run it on the GPU machine "
                         "through scripts/gpu_check.sh\n");
    return 2;
  }
  const torch::Device device(torch::kCUDA, 0);
  const auto dtype = precision == ca::Precision::fp32 ? torch::kFloat : torch::kBFloat16;
  const double gemm = gemm_flops_per_second(device, dtype);
  std::fprintf(stderr, "measured %s matrix-product rate: %.1f TFLOP/s\n", std::string(ca::to_string(precision)).c_str(),
               gemm / 1e12);
  auto data = ca::SyntheticPairs({.vocab_size = bert_base().vocab_size, .passage_length = kPassageLength,
                                  .query_length = kQueryLength, .hard_negatives = kHardNegatives, .seed = 3});

  const int64_t small_total = kLocal * 16, big_total = 512, memory = 8192;
  std::fprintf(stderr, "A. ContAccum (N_memory %ld) vs GradAccum, N_total %ld\n", memory, small_total);
  auto grad_a = make_runner("GradAccum", device, precision, ca::GradAccum<>());
  auto cont = make_runner("ContAccum", device, precision, ca::ContAccum<>({.capacity = memory}), memory);
  race({&grad_a, &cont}, data, small_total, repeats);
  std::fprintf(stderr, "B. GradCache vs GradAccum, N_total %ld\n", big_total);
  auto grad_b = make_runner("GradAccum", device, precision, ca::GradAccum<>());
  auto cache = make_runner("GradCache", device, precision, ca::GradCache<>());
  race({&grad_b, &cache}, data, big_total, repeats);

  std::ostringstream md;
  char line[512];
  md << "| comparison | N_total | strategy | s/step | ratio to GradAccum | paper | peak MiB | MFU |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  auto row = [&](const char* cmp, int64_t n_total, const Runner& r, const Runner& base, const char* paper) {
    const double t = median(r.seconds), tb = median(base.seconds);
    std::snprintf(line, sizeof line, "| %s | %ld | %s | %.3f | %.3f | %s | %.0f | %.1f%% |\n", cmp, n_total,
                  r.name.c_str(), t, t / tb, paper, r.peak / 1048576.0,
                  100.0 * step_flops(bert_base(), n_total) / t / gemm);
    md << line;
  };
  row("A", small_total, grad_a, grad_a, "");
  row("A", small_total, cont, grad_a, "1.26");
  row("B", big_total, grad_b, grad_b, "");
  row("B", big_total, cache, grad_b, "1.93");
  std::snprintf(line, sizeof line,
                "\n%s, BERT-base towers (untied, CLS pooling, dot product, dropout 0.1), queries %ld and passages "
                "%ld tokens, %ld hard negative per query, N_local %ld; median of %ld steps after one warm-up. MFU "
                "against the %s 8192^3 matrix-product rate measured here: %.1f TFLOP/s. LibTorch %s.\n",
                "One CUDA device", kQueryLength, kPassageLength, kHardNegatives, kLocal,
                repeats, std::string(ca::to_string(precision)).c_str(), gemm / 1e12, TORCH_VERSION);
  md << line;
  std::printf("%s", md.str().c_str());
  if (!out.empty()) std::ofstream(out) << md.str();
  return 0;
}
