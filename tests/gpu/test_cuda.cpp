// The CUDA checks of scripts/gpu_check.sh: the library's CUDA paths on a real device.
// Built as contaccum_gpu_tests (never by default; ctest's `lint` run checks that it
// compiles). Without a CUDA device every case fails at its first REQUIRE, so a run on the
// wrong machine cannot pass.
//
//   GradCache == FullBatch on CUDA with dropout (the CUDA generators replayed), in float64
//   ContAccum's banks on the GPU, a Trainer on CUDA equal to the same Trainer on the CPU
//   MemoryMeter's CUDA statistics (the caching allocator's counters)
//   bf16 and fp16 autocast on CUDA: gradients within tolerance of fp32, training steps finite
//   fp16 loss scaling with a real overflow: the step is skipped and the scale halves
#define CATCH_CONFIG_MAIN
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"
#include "support/tiny_trainer.hpp"

#include <cmath>
#include <string>
#include <vector>

using namespace contaccum;
using Dual = DualEncoder<Bert, ClsPooling>;

namespace {

const torch::Device cuda(torch::kCUDA, 0);

void require_cuda() {
  INFO("contaccum_gpu_tests needs a CUDA device and a CUDA LibTorch (run it through scripts/gpu_check.sh)");
  REQUIRE(torch::cuda::is_available());
}

// Gradients (moved to the CPU) of every parameter after one accumulate() from CUDA seed `seed`.
template <class S>
std::vector<torch::Tensor> gradients(Dual& model, S strategy, const PairBatch& batch, uint64_t seed,
                                     Precision precision = Precision::fp32, double* loss_out = nullptr) {
  auto params = model->parameters();
  test::zero_grads(params);
  model->train();
  contaccum::detail::rng_state::seed_all(seed);
  InfoNCE<Cosine> loss{Cosine{0.05}};
  auto acc = strategy.accumulate(model, loss, batch,
                                 StepContext{.step = 0, .micro_batch_size = 4, .precision = precision});
  strategy.finish_step(true);
  if (loss_out) *loss_out = acc.loss;
  std::vector<torch::Tensor> out;
  for (const auto& g : test::grads_of(params)) out.push_back(g.cpu());
  return out;
}

template <class S>
test::TinyTrainer<S> trainer_on(const torch::Device& device, torch::ScalarType dtype, TrainerConfig config,
                                double dropout) {
  torch::manual_seed(3);  // the same initial weights on every device
  test::TinyDual model(test::tiny_bert(dropout));
  model->to(device, dtype);
  return test::TinyTrainer<S>(model, config, test::tiny_strategy(static_cast<S*>(nullptr)), {},
                              InfoNCE<Cosine>{Cosine{0.1}});
}

double max_abs_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, (a[i].cpu() - b[i].cpu()).abs().max().item<double>());
  return d;
}

}  // namespace

TEST_CASE("CUDA: GradCache gradients equal FullBatch's with dropout, the CUDA generators replayed (float64)",
          "[cuda][gradcache]") {
  require_cuda();
  torch::manual_seed(11);
  Dual model(test::tiny_bert(0.1));
  model->to(cuda, torch::kFloat64);
  auto data = test::tiny_data(/*m=*/2);
  const auto batch = data.next(12).to(cuda);
  double l_full = 0, l_cache = 0;
  // encode_chunk = N_local: FullBatch draws GradCache's masks, forward for forward.
  const auto full = gradients(model, FullBatch<>({.encode_chunk = 4}), batch, 7, Precision::fp32, &l_full);
  const auto cache = gradients(model, GradCache<>(), batch, 7, Precision::fp32, &l_cache);
  const auto other_masks = gradients(model, GradCache<>(), batch, 8);
  const double err = test::relative_error(cache, full);
  INFO("loss FullBatch " << l_full << " GradCache " << l_cache << ", relative gradient error " << err);
  CHECK(l_cache == Approx(l_full).epsilon(1e-12));
  CHECK(err <= 1e-10);
  // Control: dropout is on and drawn on the device, so another seed gives other gradients.
  CHECK(test::relative_error(other_masks, full) > 1e-3);
}

TEST_CASE("CUDA: ContAccum keeps its banks on the GPU, and a CUDA Trainer equals the CPU Trainer (float64)",
          "[cuda][bank][trainer]") {
  require_cuda();
  // Dropout off: the CPU and CUDA generators draw different masks by design.
  auto on_cpu = trainer_on<ContAccum<DualBank>>(torch::kCPU, torch::kFloat64, test::tiny_trainer_config(), 0.0);
  auto on_gpu = trainer_on<ContAccum<DualBank>>(cuda, torch::kFloat64, test::tiny_trainer_config(), 0.0);
  auto loader = test::tiny_loader();
  for (int64_t s = 0; s < test::tiny_steps; ++s) {
    const auto batch = loader.next();
    const auto a = on_cpu.step(batch), b = on_gpu.step(batch);
    INFO("step " << s << ": loss CPU " << a.loss << " CUDA " << b.loss);
    CHECK(b.loss == Approx(a.loss).epsilon(1e-9));
    CHECK(b.peak_memory_bytes > 0);  // the caching allocator's peak, read per step
  }
  const auto& bank = on_gpu.strategy().bank();
  CHECK(bank.query_ring().storage().device().is_cuda());
  CHECK(bank.positive_ring().storage().device().is_cuda());
  CHECK(bank.queries().size(0) == on_cpu.strategy().bank().queries().size(0));
  CHECK((bank.queries().cpu() - on_cpu.strategy().bank().queries()).abs().max().item<double>() < 1e-9);
  const double d = max_abs_difference(on_gpu.trainable_parameters(), on_cpu.trainable_parameters());
  INFO("largest parameter difference after " << test::tiny_steps << " steps: " << d);
  CHECK(d < 1e-9);
}

TEST_CASE("CUDA: MemoryMeter reads the caching allocator's current and peak bytes", "[cuda][memory]") {
  require_cuda();
  torch::cuda::synchronize();
  MemoryMeter::reset_peak(cuda);
  const auto base = MemoryMeter::current_bytes(cuda);
  constexpr int64_t n = 64 << 20;  // 64 Mi floats, 256 MiB
  {
    auto big = torch::empty({n}, torch::TensorOptions().device(cuda).dtype(torch::kFloat));
    CHECK(MemoryMeter::current_bytes(cuda) - base >= n * 4);
    CHECK(MemoryMeter::peak_bytes(cuda) - base >= n * 4);
  }
  CHECK(MemoryMeter::current_bytes(cuda) - base < n * 4);   // freed (the cache keeps it reserved, not allocated)
  CHECK(MemoryMeter::peak_bytes(cuda) - base >= n * 4);     // the peak stays
  MemoryMeter::reset_peak(cuda);
  CHECK(MemoryMeter::peak_bytes(cuda) - base < n * 4);      // until reset
}

TEST_CASE("CUDA: bf16 and fp16 autocast gradients are within their tolerance of fp32", "[cuda][precision]") {
  require_cuda();
  torch::manual_seed(21);
  Dual model(test::tiny_bert(0.0));  // no dropout: every precision sees the same network
  model->to(cuda);
  auto data = test::tiny_data(/*m=*/1);
  const auto batch = data.next(8).to(cuda);
  double l32 = 0;
  const auto g32 = gradients(model, GradCache<>(), batch, 3, Precision::fp32, &l32);
  for (const auto p : {Precision::bf16, Precision::fp16}) {
    double l = 0;
    const auto g = gradients(model, GradCache<>(), batch, 3, p, &l);
    const double err = test::relative_error(g, g32);
    INFO(to_string(p) << ": loss fp32 " << l32 << " reduced " << l << ", relative gradient error " << err);
    CHECK(std::abs(l - l32) <= 0.02 * std::abs(l32));
    CHECK(err <= (p == Precision::bf16 ? 0.05 : 0.01));  // 8 and 11 significant bits
    CHECK(err >= 1e-5);  // autocast really ran (TF32 off: fp32 agrees with itself to ~1e-7)
  }
}

TEST_CASE("CUDA: bf16 and fp16 Trainers take finite steps with fp32 weights, close to fp32's losses",
          "[cuda][precision][trainer]") {
  require_cuda();
  auto config = test::tiny_trainer_config();
  auto fp32 = trainer_on<GradCache<>>(cuda, torch::kFloat, config, 0.0);
  config.precision = Precision::bf16;
  auto bf16 = trainer_on<GradCache<>>(cuda, torch::kFloat, config, 0.0);
  config.precision = Precision::fp16;
  auto fp16 = trainer_on<GradCache<>>(cuda, torch::kFloat, config, 0.0);
  auto loader = test::tiny_loader();
  for (int64_t s = 0; s < test::tiny_steps; ++s) {
    const auto batch = loader.next();
    const auto a = fp32.step(batch), b = bf16.step(batch), h = fp16.step(batch);
    INFO("step " << s << ": loss fp32 " << a.loss << " bf16 " << b.loss << " fp16 " << h.loss << " (scale "
                 << h.loss_scale << (h.overflow ? ", overflow" : "") << ")");
    CHECK(std::isfinite(b.loss));
    CHECK(std::isfinite(h.loss));
    CHECK_FALSE(h.overflow);  // 2^16 times a tiny model's gradients stays inside fp16
    CHECK(std::abs(b.loss - a.loss) <= 0.05 * std::abs(a.loss));
    CHECK(std::abs(h.loss - a.loss) <= 0.02 * std::abs(a.loss));
  }
  for (const auto& p : fp16.trainable_parameters()) CHECK(p.scalar_type() == torch::kFloat);
  for (const auto& p : bf16.trainable_parameters()) CHECK(p.scalar_type() == torch::kFloat);
}

TEST_CASE("CUDA: fp16 loss scaling: a real overflow skips the step and halves the scale; training goes on",
          "[cuda][precision][trainer]") {
  require_cuda();
  auto config = test::tiny_trainer_config();
  config.precision = Precision::fp16;
  config.total_steps = 0;
  config.loss_scale_init = std::ldexp(1.0, 40);  // overflows fp16 (max 65504) in the scaled backward
  auto trainer = trainer_on<GradAccum<>>(cuda, torch::kFloat, config, 0.1);
  auto loader = test::tiny_loader();
  const auto first = trainer.trainable_parameters().front().clone();
  const auto st = trainer.step(loader.next());
  CHECK(st.overflow);
  CHECK(std::isfinite(st.loss));
  CHECK(trainer.loss_scaler().scale() == std::ldexp(1.0, 39));
  CHECK(torch::equal(first, trainer.trainable_parameters().front()));  // nothing updated
  int64_t applied = 0;
  for (int i = 0; i < 40 && applied < 3; ++i)
    if (!trainer.step(loader.next()).overflow) ++applied;
  INFO("scale now " << trainer.loss_scaler().scale());
  CHECK(applied == 3);
  CHECK_FALSE(torch::equal(first, trainer.trainable_parameters().front()));
}
