// Adapters: LoRA's forward and gradients equal PEFT's on the same base weights and adapter
// (tests/reference/peft_reference.py), adapters round-trip through PEFT's file layout,
// merge/unmerge restores the base weights and a merged export reloads in transformers;
// trainable-parameter counts for Pythia-70m's shape equal PEFT's and a hand count;
// BlockFreeze keeps no graph below its first trainable block (grads, memory, time);
// BiasOnly trains exactly the biases; the Trainer trains exactly what an adapter (a
// user-defined one too) leaves trainable; bad settings are rejected with the field named;
// FLOPs per token per method as the compute-optimal recipe counts them, for Pythia shapes.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"
#include "support/layer_norm_only.hpp"

#include <contaccum/adapters/bias_only.hpp>
#include <contaccum/adapters/block_freeze.hpp>
#include <contaccum/adapters/count.hpp>
#include <contaccum/adapters/lora.hpp>
#include <contaccum/checkpoint/load_bert.hpp>
#include <contaccum/checkpoint/load_gpt_neox.hpp>
#include <contaccum/checkpoint/peft_adapter.hpp>
#include <contaccum/compute/flops.hpp>
#include <contaccum/compute/memory.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

using namespace contaccum;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path scratch_dir() { return test::scratch_dir("contaccum_adapters"); }

// PEFT's models, adapters and answers, made once per test run.
const fs::path& reference_dir() {
  static const fs::path dir = [] {
    auto d = scratch_dir() / "peft";
    fs::remove_all(d);
    fs::create_directories(d);
    REQUIRE(test::run_python_reference("peft_reference.py", "make " + d.string()));
    return d;
  }();
  return dir;
}

// Hidden states transformers (+ PEFT) computes for each task (the script's check mode).
std::map<std::string, torch::Tensor> run_check(const json& tasks) {
  const auto in = scratch_dir() / "check.in.json", out = scratch_dir() / "check.out.safetensors";
  std::ofstream(in, std::ios::trunc) << json{{"tasks", tasks}}.dump();
  REQUIRE(test::run_python_reference("peft_reference.py", "check " + in.string() + " " + out.string()));
  return load_safetensors(out);
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

// Last hidden states on real tokens only (padded positions are implementation-defined).
torch::Tensor real_tokens(const torch::Tensor& hidden, const torch::Tensor& mask) {
  return hidden.index({mask.to(torch::kBool)});  // (real tokens, H)
}

template <class E>
torch::Tensor hidden_of(E& encoder, const std::map<std::string, torch::Tensor>& batch) {
  return encoder->forward(batch.at("ids"), batch.at("mask"));
}

std::map<std::string, torch::Tensor> named_map(const torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters()) out.emplace(p.key(), p.value());
  return out;
}

std::set<std::string> trainable_names(const torch::nn::Module& m) {
  std::set<std::string> out;
  for (const auto& p : m.named_parameters())
    if (p.value().requires_grad()) out.insert(p.key());
  return out;
}

// Parameters backward reached (a key bias gets a gradient that is 0 up to rounding:
// softmax ignores a shift shared by all keys).
std::set<std::string> names_with_grad(const torch::nn::Module& m) {
  std::set<std::string> out;
  for (const auto& p : m.named_parameters())
    if (p.value().grad().defined()) out.insert(p.key());
  return out;
}

GptNeoxConfig pythia_70m() {
  return {.vocab_size = 50304, .hidden_size = 512, .num_hidden_layers = 6, .num_attention_heads = 8,
          .intermediate_size = 2048, .rotary_pct = 0.25, .max_position_embeddings = 2048};
}

GptNeoxConfig small_neox(int64_t layers = 4) {
  return {.vocab_size = 211, .hidden_size = 64, .num_hidden_layers = layers, .num_attention_heads = 4,
          .intermediate_size = 256, .max_position_embeddings = 128};
}

const std::string pythia_lora_targets = "query_key_value|dense|dense_h_to_4h|dense_4h_to_h";

// Runs LoRA on case `kind` the way PEFT ran it and compares outputs and A/B gradients.
template <class E>
void check_lora_against_peft(E encoder, const std::string& kind) {
  const auto dir = reference_dir() / kind;
  const auto lora = load_peft_adapter(encoder, dir / "adapter");
  const auto expected = load_safetensors(dir / "expected.safetensors");
  encoder->eval();
  auto hidden = hidden_of(encoder, expected);  // (B, T, H)
  const auto& mask = expected.at("mask");
  const double out_err = max_abs(real_tokens(hidden, mask), real_tokens(expected.at("hidden"), mask));
  (hidden * expected.at("weight")).sum().backward();

  double grad_err = 0, grad_scale = 0;
  int64_t compared = 0;
  for (const auto& p : encoder->named_parameters()) {
    const auto it = expected.find("grad." + p.key());
    if (it == expected.end()) {
      INFO(p.key() << " is not an adapter parameter: it must be frozen and get no gradient");
      CHECK_FALSE(p.value().requires_grad());
      CHECK_FALSE(p.value().grad().defined());
      continue;
    }
    REQUIRE(p.value().grad().defined());
    grad_err = std::max(grad_err, max_abs(p.value().grad(), it->second));
    grad_scale = std::max(grad_scale, it->second.abs().max().template item<double>());
    ++compared;
  }
  const auto peft_grads = std::count_if(expected.begin(), expected.end(),
                                        [](const auto& e) { return e.first.starts_with("grad."); });
  WARN("LoRA vs PEFT (" << kind << ", r = " << lora.rank << ", " << compared / 2
                        << " layers): max |hidden error| = " << out_err << ", max |grad error| = " << grad_err
                        << " (largest grad " << grad_scale << ", relative " << grad_err / grad_scale << ")");
  CHECK(compared == peft_grads);
  CHECK(out_err <= 1e-5);
  CHECK(grad_err <= 1e-5);
  CHECK(grad_scale > 0.1);  // non-trivial gradients, O(1) so that 1e-5 is a float32-sized tolerance
}

// Forward + backward of a mean-pooled toy loss; returns seconds.
template <class E>
double forward_backward(E& encoder, const torch::Tensor& ids, const torch::Tensor& mask) {
  const auto t0 = std::chrono::steady_clock::now();
  auto h = encoder->forward(ids, mask);  // (B, T, H)
  h.pow(2).mean().backward();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("LoRA forward and gradients equal PEFT's on BERT and GPT-NeoX", "[adapters][lora][peft][python]") {
  check_lora_against_peft(load_bert(reference_dir() / "bert" / "base"), "bert");
  check_lora_against_peft(load_gpt_neox(reference_dir() / "gpt_neox" / "base"), "gpt_neox");
}

TEST_CASE("LoRA adapters and merged models load in PEFT and transformers with our outputs",
          "[adapters][lora][peft][checkpoint][python]") {
  json tasks = json::array();
  std::map<std::string, torch::Tensor> ours;
  auto add = [&](auto encoder, const std::string& kind) {
    const auto ref = reference_dir() / kind;
    const auto out = scratch_dir() / ("export_" + kind);
    fs::remove_all(out);
    const auto expected = load_safetensors(ref / "expected.safetensors");
    load_peft_adapter(encoder, ref / "adapter");
    {
      // Train the adapter a little so the round trip carries values PEFT did not write.
      torch::NoGradGuard g;
      for (auto& p : encoder->parameters())
        if (p.requires_grad()) p.add_(0.01 * torch::randn_like(p));
    }
    encoder->eval();
    torch::NoGradGuard g;
    ours[kind] = hidden_of(encoder, expected);
    save_peft_adapter(encoder, out / "adapter");
    tasks.push_back({{"name", kind + "_adapter"}, {"kind", kind}, {"model", (ref / "base").string()},
                     {"adapter", (out / "adapter").string()}, {"batch", (ref / "expected.safetensors").string()}});
    CHECK(merge_lora(encoder) > 0);
    CHECK(max_abs(hidden_of(encoder, expected), ours[kind]) <= 1e-5);  // merging keeps the function
    if constexpr (std::is_same_v<decltype(encoder), Bert>) save_bert(encoder, out / "merged");
    else save_gpt_neox(encoder, out / "merged");
    tasks.push_back({{"name", kind + "_merged"}, {"kind", kind}, {"model", (out / "merged").string()},
                     {"adapter", nullptr}, {"batch", (ref / "expected.safetensors").string()}});
    // The merged folder holds the base model's names only.
    const auto saved = load_safetensors(out / "merged" / "model.safetensors");
    CHECK(std::none_of(saved.begin(), saved.end(),
                       [](const auto& e) { return e.first.find("lora_") != std::string::npos; }));
  };
  add(load_bert(reference_dir() / "bert" / "base"), "bert");
  add(load_gpt_neox(reference_dir() / "gpt_neox" / "base"), "gpt_neox");

  const auto theirs = run_check(tasks);
  for (const std::string kind : {"bert", "gpt_neox"}) {
    const auto mask = load_safetensors(reference_dir() / kind / "expected.safetensors").at("mask");
    for (const std::string how : {"_adapter", "_merged"}) {
      const double err = max_abs(real_tokens(theirs.at(kind + how), mask), real_tokens(ours.at(kind), mask));
      INFO(kind << how << ": max |ours - transformers/PEFT| = " << err);
      CHECK(err <= 1e-5);
    }
  }
}

TEST_CASE("LoRA merge then unmerge restores the base weights", "[adapters][lora]") {
  torch::manual_seed(5);
  GptNeox lm(small_neox(2));
  std::map<std::string, torch::Tensor> before;
  for (const auto& [name, p] : named_map(*lm)) before.emplace(name, p.detach().clone());
  LoRA{.rank = 4, .alpha = 8, .target_modules = pythia_lora_targets}.prepare(lm);
  {
    torch::NoGradGuard g;  // B starts at zero: give it values so merging changes W
    for (auto& p : lm->named_parameters())
      if (p.key().ends_with("lora_B.weight")) p.value().normal_(0.0, 0.5);
  }
  auto ids = torch::randint(2, 211, {2, 9}, torch::kLong);
  auto mask = torch::ones_like(ids);
  lm->eval();
  torch::NoGradGuard g;
  const auto unmerged_out = lm(ids, mask);
  CHECK(merge_lora(lm) == 8);
  CHECK(merge_lora(lm) == 0);  // idempotent
  const auto w = lm->gpt_neox->layers[0]->as<contaccum::detail::GptNeoxLayer>()->attention->query_key_value->weight;
  CHECK(max_abs(w, before.at("gpt_neox.layers.0.attention.query_key_value.weight")) > 1e-3);
  CHECK(max_abs(lm(ids, mask), unmerged_out) <= 1e-5);
  CHECK(unmerge_lora(lm) == 8);
  double err = 0;
  for (const auto& [name, p] : before) err = std::max(err, max_abs(named_map(*lm).at(name), p));
  INFO("max |W after merge+unmerge - W| = " << err);
  CHECK(err <= 1e-6);
  CHECK(max_abs(lm(ids, mask), unmerged_out) <= 1e-5);
}

TEST_CASE("Trainable-parameter counts for Pythia-70m's shape equal PEFT's and a hand count",
          "[adapters][count][peft][python]") {
  const auto counts_dir = scratch_dir() / "counts";
  fs::create_directories(counts_dir);
  REQUIRE(test::run_python_reference("peft_reference.py", "counts " + counts_dir.string()));
  const auto counts = json::parse(std::ifstream(counts_dir / "counts.json"));
  const auto c = pythia_70m();
  const int64_t d = c.hidden_size, layers = c.num_hidden_layers, v = c.vocab_size, inner = c.intermediate_size;
  // Hand counts. A block: qkv d x 3d + 3d, dense d x d + d, MLP 2 x 4d^2 + 5d, two LayerNorms
  // 4d = 12 d^2 + 13 d; non-embedding N = L (12 d^2 + 13 d) + 2d (final LayerNorm).
  const int64_t block = 12 * d * d + 13 * d, non_embedding = layers * block + 2 * d;
  const int64_t full = non_embedding + 2 * v * d;                       // + embed_in + embed_out
  const int64_t biases = layers * (3 * d + d + inner + d + 2 * d) + d;  // linear + LayerNorm biases
  auto lora_count = [&](int64_t r) { return layers * r * ((d + 3 * d) + (d + d) + (d + inner) + (inner + d)); };
  CHECK(non_embedding == 18915328);
  CHECK(full == 70426624);

  auto fresh = [&] {
    torch::manual_seed(0);
    return GptNeox(c);
  };
  auto lm = fresh();
  CHECK(count_parameters(lm) == full);
  CHECK(count_parameters(lm) == counts["total"].get<int64_t>());
  FullFineTune{}.prepare(lm);
  CHECK(count_trainable(lm) == full);
  BiasOnly{}.prepare(lm);
  CHECK(count_trainable(lm) == biases);
  CHECK(count_trainable(lm) == counts["bias_only"].get<int64_t>());
  for (int64_t k : {int64_t{1}, int64_t{2}, layers}) {
    BlockFreeze{.trainable_blocks = k}.prepare(lm);
    INFO("BlockFreeze k = " << k);
    CHECK(count_trainable(lm) == k * block + 2 * d);
    CHECK(count_trainable(lm) == counts["block_freeze_" + std::to_string(k)].get<int64_t>());
  }
  lm->set_first_trainable_layer(std::nullopt);
  for (int64_t r : {int64_t{8}, int64_t{128}}) {
    auto m = fresh();
    LoRA{.rank = r, .alpha = 2.0 * static_cast<double>(r), .target_modules = pythia_lora_targets}.prepare(m);
    INFO("LoRA r = " << r);
    CHECK(count_trainable(m) == lora_count(r));
    CHECK(count_trainable(m) == counts["lora_" + std::to_string(r)].get<int64_t>());
    CHECK(count_parameters(m) == counts["lora_" + std::to_string(r) + "_total"].get<int64_t>());
  }
  WARN("Pythia-70m trainable parameters: full " << full << ", block freezing k=1 " << block + 2 * d << " (k=2 "
                                                << 2 * block + 2 * d << "), bias-only " << biases << ", LoRA r=8 "
                                                << lora_count(8) << " (r=128 " << lora_count(128) << ")");
}

TEST_CASE("Adapters work on both tower policies of a DualEncoder", "[adapters]") {
  using Separate = DualEncoder<GptNeox, MeanPooling>;
  using Shared = DualEncoder<GptNeox, MeanPooling, SharedTower>;
  torch::manual_seed(3);
  Separate separate(small_neox(2));
  Shared shared(small_neox(2));
  GptNeox single(small_neox(2));
  const LoRA lora{.rank = 2, .target_modules = "query_key_value"};
  lora.prepare(separate);
  lora.prepare(shared);
  lora.prepare(single);
  CHECK(count_trainable(separate) == 2 * count_trainable(single));
  CHECK(count_trainable(shared) == count_trainable(single));
  CHECK(trainable_names(*shared).contains("encoder.gpt_neox.layers.1.attention.query_key_value.lora_A.weight"));
  CHECK(trainable_names(*separate).contains(
      "passage_encoder.gpt_neox.layers.0.attention.query_key_value.lora_B.weight"));

  Shared frozen(small_neox(3));
  BlockFreeze{.trainable_blocks = 1}.prepare(frozen);
  CHECK(frozen->query_encoder->first_trainable_layer() == 2);
  Separate frozen2(small_neox(3));
  BlockFreeze{.trainable_blocks = 2}.prepare(frozen2);
  CHECK(frozen2->passage_encoder->first_trainable_layer() == 1);
  CHECK(count_trainable(frozen2) == 2 * count_trainable(frozen2->query_encoder));
}

TEST_CASE("The Trainer trains only what the adapter leaves trainable", "[adapters][trainer]") {
  using Model = DualEncoder<Bert, MeanPooling, SharedTower>;
  auto run = [](auto adapter) {
    torch::manual_seed(4);
    Model model(test::tiny_bert(0.0));
    std::map<std::string, torch::Tensor> before;
    for (const auto& p : model->named_parameters()) before.emplace(p.key(), p.value().detach().clone());
    Trainer<Model, GradAccum<>, decltype(adapter)> trainer(
        std::move(model), {.micro_batch_size = 4, .learning_rate = 1e-3}, GradAccum<>(), adapter);
    auto data = test::tiny_data(1, 7);
    for (int i = 0; i < 2; ++i) CHECK(std::isfinite(trainer.step(data.next(8)).loss));
    std::set<std::string> changed;
    for (const auto& p : trainer.model()->named_parameters()) {
      auto it = before.find(p.key());
      if (it == before.end() || max_abs(p.value(), it->second) > 0) changed.insert(p.key());
    }
    return std::pair{changed, trainable_names(*trainer.model())};
  };
  SECTION("LoRA") {
    auto [changed, trainable] = run(LoRA{.rank = 2, .target_modules = "query|value"});
    CHECK(trainable.size() == 2 * 2 * 2);  // 2 layers x {query, value} x {A, B}
    CHECK(changed == trainable);
  }
  SECTION("BiasOnly") {
    auto [changed, trainable] = run(BiasOnly{});
    for (const auto& name : trainable) CHECK(name.ends_with("bias"));
    for (const auto& name : changed) CHECK(trainable.contains(name));
    // Every bias moves except perhaps the key biases, whose gradient is 0 up to rounding.
    for (const auto& name : trainable)
      if (name.find("attention.self.key.bias") == std::string::npos) CHECK(changed.contains(name));
  }
  SECTION("BlockFreeze") {
    auto [changed, trainable] = run(BlockFreeze{.trainable_blocks = 1});
    for (const auto& name : changed) CHECK(name.starts_with("encoder.encoder.layer.1."));
    CHECK(changed == trainable);
  }
  SECTION("a user-defined adapter (LayerNormOnly, declared outside contaccum)") {
    auto [changed, trainable] = run(user_adapters::LayerNormOnly{});
    CHECK(trainable.size() == 2 * (1 + 2 * 2));  // the embeddings' LayerNorm and two per layer
    for (const auto& name : trainable) CHECK(name.find(".LayerNorm.") != std::string::npos);
    CHECK(changed == trainable);
  }
}

TEST_CASE("BiasOnly trains exactly the biases, LayerNorm biases included", "[adapters][bias_only]") {
  torch::manual_seed(6);
  for (int which = 0; which < 2; ++which) {
    std::shared_ptr<torch::nn::Module> module;
    torch::Tensor h;
    auto ids = torch::randint(2, 100, {2, 7}, torch::kLong);
    auto mask = torch::ones_like(ids);
    if (which == 0) {
      Bert bert(test::tiny_bert(0.0));
      BiasOnly{}.prepare(bert);
      h = bert(ids, mask);
      module = bert.ptr();
    } else {
      GptNeox lm(small_neox(2));
      BiasOnly{}.prepare(lm);
      h = lm(ids, mask);
      module = lm.ptr();
    }
    h.pow(2).sum().backward();
    std::set<std::string> biases;
    for (const auto& p : module->named_parameters())
      if (p.key().ends_with("bias")) biases.insert(p.key());
    CHECK(std::any_of(biases.begin(), biases.end(), [](const std::string& n) {
      return n.find("LayerNorm") != std::string::npos || n.find("layernorm") != std::string::npos;
    }));
    CHECK(trainable_names(*module) == biases);
    CHECK(names_with_grad(*module) == biases);
  }
}

TEST_CASE("BlockFreeze: frozen blocks get no gradient, the rest gets full fine-tuning's",
          "[adapters][block_freeze]") {
  torch::manual_seed(8);
  auto ids = torch::randint(2, 211, {3, 11}, torch::kLong);
  auto mask = torch::ones_like(ids);
  mask.index_put_({2, torch::indexing::Slice(6)}, 0);
  GptNeox full(small_neox(4));
  GptNeox cut(small_neox(4));
  {
    torch::NoGradGuard g;
    for (auto& [name, p] : named_map(*cut)) p.copy_(named_map(*full).at(name));
  }
  full->eval();
  cut->eval();
  BlockFreeze{.trainable_blocks = 2}.prepare(cut);
  auto out_full = full(ids, mask), out_cut = cut(ids, mask);
  CHECK(max_abs(out_full, out_cut) == 0.0);  // the hook does not change the function
  out_full.pow(2).mean().backward();
  out_cut.pow(2).mean().backward();
  std::set<std::string> expected_trainable;
  for (const auto& p : cut->named_parameters()) {
    const auto& n = p.key();
    const bool trains = n.starts_with("gpt_neox.layers.2.") || n.starts_with("gpt_neox.layers.3.") ||
                        n.starts_with("gpt_neox.final_layer_norm.");
    if (trains) expected_trainable.insert(n);
    INFO(n);
    CHECK(p.value().grad().defined() == trains);
    if (trains) CHECK(max_abs(p.value().grad(), named_map(*full).at(n).grad()) <= 1e-6);
  }
  CHECK(trainable_names(*cut) == expected_trainable);
}

TEST_CASE("BlockFreeze lowers peak training memory and backward time", "[adapters][block_freeze][memory]") {
  REQUIRE(MemoryMeter::install());
  torch::manual_seed(9);
  const auto config = GptNeoxConfig{.vocab_size = 1000, .hidden_size = 128, .num_hidden_layers = 6,
                                    .num_attention_heads = 4, .intermediate_size = 512, .max_position_embeddings = 128};
  auto ids = torch::randint(2, 1000, {8, 64}, torch::kLong);
  auto mask = torch::ones_like(ids);
  struct Run {
    int64_t peak_bytes;
    double seconds;
  };
  auto measure = [&](auto adapter) {
    GptNeox lm(config);
    lm->train();
    adapter.prepare(lm);
    forward_backward(lm, ids, mask);  // warm-up (allocator, kernels)
    std::vector<double> times;
    int64_t peak = 0;
    for (int i = 0; i < 5; ++i) {
      lm->zero_grad(true);
      const auto base = MemoryMeter::current_bytes();
      MemoryMeter::reset_peak();
      times.push_back(forward_backward(lm, ids, mask));
      peak = std::max(peak, MemoryMeter::peak_bytes() - base);
    }
    std::sort(times.begin(), times.end());
    return Run{peak, times[times.size() / 2]};
  };
  const auto full = measure(FullFineTune{});
  const auto k2 = measure(BlockFreeze{.trainable_blocks = 2});
  const auto k1 = measure(BlockFreeze{.trainable_blocks = 1});
  WARN("GptNeox 6 x 128, batch 8 x 64, forward+backward: full fine-tuning peak "
       << full.peak_bytes / 1e6 << " MB, " << full.seconds * 1e3 << " ms; BlockFreeze k=2 " << k2.peak_bytes / 1e6
       << " MB, " << k2.seconds * 1e3 << " ms; k=1 " << k1.peak_bytes / 1e6 << " MB, " << k1.seconds * 1e3 << " ms");
  CHECK(k2.peak_bytes < 0.6 * static_cast<double>(full.peak_bytes));
  CHECK(k1.peak_bytes < k2.peak_bytes);
}

TEST_CASE("Adapters reject bad settings with the field named", "[adapters][errors][python]") {
  GptNeox lm(small_neox(2));
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const invalid_input& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  using Catch::Matchers::Contains;
  const auto none = message([&] { LoRA{.target_modules = "q_proj|v_proj"}.prepare(lm); });
  CHECK_THAT(none, Contains("q_proj|v_proj") && Contains("matches none of the 9 linear layers") &&
                       Contains("gpt_neox.layers.N.attention.query_key_value") &&
                       Contains("gpt_neox.layers.N.mlp.dense_4h_to_h") && Contains("embed_out"));
  CHECK(count_trainable(lm) == count_parameters(lm));  // a failed prepare changes nothing
  CHECK_THAT(message([&] { LoRA{.rank = 0}.prepare(lm); }), Contains("LoRA: rank must be positive, got 0"));
  CHECK_THAT(message([&] { LoRA{.rank = -3}.prepare(lm); }), Contains("rank must be positive, got -3"));
  CHECK_THAT(message([&] { LoRA{.alpha = 0}.prepare(lm); }), Contains("alpha must be positive"));
  CHECK_THAT(message([&] { LoRA{.dropout = 1.0}.prepare(lm); }), Contains("dropout must be in [0, 1)"));
  CHECK_THAT(message([&] { LoRA{.target_modules = "query(["}.prepare(lm); }),
             Contains("LoRA.target_modules \"query([\" is not a valid regular expression"));
  CHECK_THAT(message([&] { BlockFreeze{.trainable_blocks = 3}.prepare(lm); }),
             Contains("BlockFreeze: trainable_blocks (k) = 3 is outside [0, 2]: the encoder has 2 blocks"));
  CHECK_THAT(message([&] { BlockFreeze{.trainable_blocks = -1}.prepare(lm); }), Contains("trainable_blocks (k) = -1"));
  Bert bert(test::tiny_bert());
  CHECK_THAT(message([&] { BlockFreeze{.trainable_blocks = 5}.prepare(bert); }),
             Contains("outside [0, 2]: the encoder has 2 blocks"));

  LoRA{.rank = 2, .target_modules = "dense"}.prepare(lm);
  CHECK_THAT(message([&] { LoRA{.rank = 2, .target_modules = "dense"}.prepare(lm); }),
             Contains("gpt_neox.layers.0.attention.dense already carries an adapter branch"));
  const auto dir = scratch_dir() / "unmerged";
  CHECK_THAT(message([&] { save_gpt_neox(lm, dir); }),
             Contains("save_gpt_neox: layer gpt_neox.layers.0.attention.dense carries an unmerged adapter branch"));
  CHECK_FALSE(fs::exists(dir));

  // An adapter whose rank does not fit the saved tensors is rejected before the model changes.
  const auto adapter = scratch_dir() / "bad_adapter";
  fs::remove_all(adapter);
  fs::create_directories(adapter);
  fs::copy(reference_dir() / "bert" / "adapter", adapter,
           fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  auto config = json::parse(std::ifstream(adapter / "adapter_config.json"));
  config["r"] = 3;
  std::ofstream(adapter / "adapter_config.json", std::ios::trunc) << config.dump();
  auto base = load_bert(reference_dir() / "bert" / "base");
  CHECK_THAT(message([&] { load_peft_adapter(base, adapter); }),
             Contains("shape mismatches") &&
                 Contains("encoder.layer.0.attention.self.query.lora_A.weight: expected [3, 32], got [4, 32]"));
  CHECK(contaccum::detail::lora_layers(*base).empty());
  config["r"] = 4;
  config["use_dora"] = true;
  std::ofstream(adapter / "adapter_config.json", std::ios::trunc) << config.dump();
  CHECK_THAT(message([&] { load_peft_adapter(base, adapter); }), Contains("\"use_dora\": true is not supported"));
}

TEST_CASE("FLOPs per token follow the compute-optimal recipe's formulas for Pythia shapes",
          "[adapters][flops]") {
  // N = L (12 d^2 + 13 d) + 2d, computed by hand for the Pythia family (DESIGN §3 shapes).
  struct Shape {
    const char* name;
    int64_t layers, d, heads, n;
  };
  for (const auto& s : {Shape{"14m", 6, 128, 4, 1189888}, Shape{"31m", 6, 256, 8, 4739072},
                        Shape{"70m", 6, 512, 8, 18915328}, Shape{"160m", 12, 768, 12, 85056000},
                        Shape{"410m", 24, 1024, 16, 302311424}, Shape{"1b", 16, 2048, 8, 805736448},
                        Shape{"1.4b", 24, 2048, 16, 1208602624}, Shape{"2.8b", 32, 2560, 32, 2517652480}}) {
    INFO("pythia-" << s.name);
    const GptNeoxConfig c{.vocab_size = 50304, .hidden_size = s.d, .num_hidden_layers = s.layers,
                          .num_attention_heads = s.heads, .intermediate_size = 4 * s.d};
    CHECK(non_embedding_parameters(c) == s.n);
    CHECK(flops_per_token<FullFineTune>(static_cast<double>(s.n), 0) == 6.0 * static_cast<double>(s.n));
  }
  // Pythia-70m by hand: N = 18915328; N_t: block k=1 3153408, LoRA r=8 393216, bias 34304.
  CHECK(flops_per_token<FullFineTune>(18915328, 18915328) == 113491968.0);
  CHECK(flops_per_token<BlockFreeze>(18915328, 3153408) == 50444288.0);
  CHECK(flops_per_token<LoRA>(18915328, 393216) == 76447744.0);
  CHECK(flops_per_token<BiasOnly>(18915328, 34304) == 75729920.0);
  // Pythia-160m by hand: block k=2 N_t = 2 x 7087872 + 1536; LoRA r=128 N_t = 12 x 16 x 768 x 128.
  CHECK(flops_per_token<BlockFreeze>(85056000, 14177280) == 226821120.0);
  CHECK(flops_per_token<LoRA>(85056000, 18874368) == 377972736.0);

  // The same numbers counted on prepared models (embeddings and LM head left out of N).
  auto lm = [] {
    torch::manual_seed(0);
    return GptNeox(pythia_70m());
  };
  auto full = lm();
  CHECK(count_non_embedding(full) == 18915328);
  CHECK(flops_per_token(FullFineTune{}, full) == 113491968.0);
  auto frozen = lm();
  BlockFreeze block{.trainable_blocks = 1};
  block.prepare(frozen);
  CHECK(flops_per_token(block, frozen) == 50444288.0);
  auto lora_model = lm();
  LoRA lora{.rank = 8, .target_modules = pythia_lora_targets};
  lora.prepare(lora_model);
  CHECK(count_non_embedding(lora_model) == 18915328);  // the base model's N
  CHECK(flops_per_token(lora, lora_model) == 76447744.0);
  auto biases = lm();
  BiasOnly{}.prepare(biases);
  CHECK(flops_per_token(BiasOnly{}, biases) == 75729920.0);
  Bert bert(test::tiny_bert());
  CHECK(count_non_embedding(bert) == non_embedding_parameters(test::tiny_bert()));

  // A budget buys whole optimizer steps of pairs; too small a budget names the minimum.
  CHECK(pairs_for_budget(1e15, 113491968.0, 78.0, 1024) == 112640);  // 110 steps
  CHECK(pairs_for_budget(1e15, 113491968.0) == 112964);
  try {
    (void)pairs_for_budget(1e12, 113491968.0, 78.0, 1024);
    FAIL("no error");
  } catch (const invalid_input& e) {
    CHECK_THAT(e.what(), Catch::Matchers::Contains("too small for one optimizer step of 1024 pairs") &&
                             Catch::Matchers::Contains("the minimum is 9.06483e+12 FLOPs"));
  }
}
