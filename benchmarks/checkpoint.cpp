// What a checkpoint costs: write and load time and size for all-MiniLM-L6-v2 under ContAccum
// with an 8192-vector bank (full, score cache on), against the training step it protects,
// and what `--save-every N` adds per step. Measured in one run: steps, then saves and loads
// alternating.
//
//   ./build/benchmarks/bench_checkpoint [--model DIR] [--bank N] [--repeats N] [--out FILE]
// (scripts/bench.sh --checkpoint runs it and writes out/bench_checkpoint.md, quoted in
// docs/checkpoints.md)
#include <contaccum/contaccum.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace ca = contaccum;
namespace fs = std::filesystem;
using Model = ca::DualEncoder<ca::Bert, ca::Normalized<ca::MeanPooling>, ca::SharedTower>;
using Loss = ca::InfoNCE<ca::Cosine>;
using Job = ca::Trainer<Model, ca::ContAccum<ca::DualBank>, ca::FullFineTune, Loss>;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

int64_t folder_bytes(const fs::path& dir) {
  int64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) n += static_cast<int64_t>(e.file_size());
  return n;
}

}  // namespace

int main(int argc, char** argv) try {
  fs::path model_dir = "models/all-MiniLM-L6-v2", out_file, work = "out/bench_checkpoint";
  int64_t bank = 8192, repeats = 3, n_local = 16, n_total = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--model") model_dir = argv[i + 1];
    else if (a == "--bank") bank = std::stoll(argv[i + 1]);
    else if (a == "--repeats") repeats = std::stoll(argv[i + 1]);
    else if (a == "--out") out_file = argv[i + 1];
    else throw std::runtime_error("unknown option " + a);
  }
  torch::manual_seed(0);
  Model model(ca::load_bert(model_dir));
  Job trainer(model, {.micro_batch_size = n_local, .learning_rate = 2e-5, .total_steps = 100},
              ca::ContAccum<ca::DualBank>({.capacity = bank}), {}, Loss{ca::Cosine{0.05}});
  ca::SyntheticLoader loader({.vocab_size = 30522, .passage_length = 128, .query_length = 32, .hard_negatives = 0,
                              .seed = 1},
                             n_total);
  std::fprintf(stderr, "warm-up step, then filling the %lld-vector bank\n", static_cast<long long>(bank));
  trainer.step(loader.next());
  {  // fill the bank with unit rows, block by block, as training would (score cache kept up to date)
    auto& b = trainer.strategy().bank();
    const int64_t width = b.positives().size(1);
    for (int64_t filled = 0; filled < bank; filled += n_local) {
      auto q = torch::nn::functional::normalize(torch::randn({n_local, width}),
                                                torch::nn::functional::NormalizeFuncOptions().dim(1));
      auto p = torch::nn::functional::normalize(torch::randn({n_local, width}),
                                                torch::nn::functional::NormalizeFuncOptions().dim(1));
      b.enqueue(q, p, torch::Tensor{});
    }
  }
  std::vector<double> step_s, save_s, load_s, state_s;
  for (int64_t r = 0; r < repeats; ++r) {
    std::fprintf(stderr, "round %lld/%lld: step, save, load\n", static_cast<long long>(r + 1),
                 static_cast<long long>(repeats));
    step_s.push_back(trainer.step(loader.next()).seconds);
    fs::remove_all(work);
    ca::CheckpointFolder folder(work, {.keep_last = 1});
    double t = now();
    ca::StateDict s;
    trainer.save_state(s);
    loader.save_state(s, "loader.");
    state_s.push_back(now() - t);
    folder.save(trainer.steps_done(), s);
    save_s.push_back(now() - t);
    t = now();
    const auto c = ca::read_checkpoint(*folder.latest());
    trainer.load_state(c.reader());
    loader.load_state(c.reader(), "loader.");
    load_s.push_back(now() - t);
  }
  const auto dir = *ca::CheckpointFolder(work).latest();
  std::ostringstream md;
  const double step = median(step_s), save = median(save_s), load = median(load_s);
  md << "| what | median of " << repeats << " | vs one step |\n|---|---:|---:|\n";
  md << "| training step (N_total " << n_total << ", N_local " << n_local << ", bank " << bank << ") | "
     << step << " s | 1 |\n";
  md << "| save: collect the state | " << median(state_s) << " s | " << median(state_s) / step << " |\n";
  md << "| save: collect + write (fsync, rename) | " << save << " s | " << save / step << " |\n";
  md << "| load: read, verify checksums, restore | " << load << " s | " << load / step << " |\n";
  md << "\n| file | bytes |\n|---|---:|\n";
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "state.safetensors", "trainer_state.json"})
    md << "| " << f << " | " << fs::file_size(dir / f) << " |\n";
  md << "| whole checkpoint | " << folder_bytes(dir) << " |\n";
  md << "\nCost of `--save-every N` per step: save / (N x step) = ";
  for (int n : {1, 10, 20, 100}) md << (n > 1 ? ", " : "") << "N=" << n << ": " << 100.0 * save / (n * step) << "%";
  md << "\n";
  std::printf("%s", md.str().c_str());
  if (!out_file.empty()) std::ofstream(out_file) << md.str();
  fs::remove_all(work);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_checkpoint: %s\n", e.what());
  return 1;
}
