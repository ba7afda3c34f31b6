// Llama / Qwen2 checkpoints: folders written by transformers' save_pretrained (grouped- and
// multi-query attention, biases, an explicit head_dim, a ...ForCausalLM with its "model."
// prefix) load into our Llama and give transformers' hidden states with right and left
// padding (tests/reference/llama_reference.py); folders written by save_llama load in
// transformers whole; configs we cannot run are refused by name; GradCache's exactness and
// activation recompute hold for the new family too.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"
#include "support/reference_cases.hpp"

#include <contaccum/checkpoint/load_llama.hpp>
#include <contaccum/config_io.hpp>
#include <contaccum/encoders/dual_encoder.hpp>
#include <contaccum/pooling/last_token.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

using namespace contaccum;
using json = nlohmann::json;
namespace fs = std::filesystem;

static_assert(Encoder<Llama>);

namespace {

fs::path scratch_dir() { return test::scratch_dir("contaccum_llama_parity"); }

const json& reference_cases() { return test::reference_cases("llama_reference.py", scratch_dir() / "hf"); }

struct Batch {
  torch::Tensor ids, mask;  // (B, T)
};

Batch batch_of(const json& c) { return {test::ids_of(c, "ids"), test::ids_of(c, "mask")}; }

torch::Tensor run_llama(Llama& model, const Batch& b) {
  torch::NoGradGuard no_grad;
  return model(b.ids, b.mask);  // (B, T, H)
}

LlamaConfig tiny_llama(std::string type = "qwen2", double attention_dropout = 0.0) {
  return {.vocab_size = 50, .hidden_size = 32, .intermediate_size = 48, .num_hidden_layers = 2,
          .num_attention_heads = 4, .num_key_value_heads = 2, .max_position_embeddings = 64,
          .attention_dropout = attention_dropout, .model_type = std::move(type)};
}

}  // namespace

TEST_CASE("Llama and Qwen2 loaded from transformers checkpoints give their hidden states", "[llama][python]") {
  const auto& cases = reference_cases();
  REQUIRE(cases.size() == 4);
  for (const auto& [name, c] : cases.items()) {
    INFO(name << " (" << c["class"].get<std::string>() << (c["left"].get<bool>() ? ", left padding)" : ", right padding)"));
    auto model = load_llama(c["dir"].get<std::string>());
    CHECK_FALSE(model->is_training());
    const auto b = batch_of(c);
    const auto ours = run_llama(model, b);
    const auto theirs = test::values_of(c, "hidden");
    REQUIRE(ours.sizes() == theirs.sizes());
    CHECK(test::max_error_on_real_tokens(ours, theirs, b.mask) <= 1e-5);
    CHECK(test::max_error_on_real_tokens(ours, theirs.roll(1, 1), b.mask) > 1e-2);  // not trivially equal
    CHECK(b.mask.sum().item<int64_t>() < b.mask.numel());
  }
  const auto cfg = load_llama_config(fs::path(cases["llama_bias_head_dim"]["dir"].get<std::string>()) / "config.json");
  CHECK(cfg.head_dim == 16);
  CHECK(cfg.rope_theta == 500000.0);  // from rope_parameters
  CHECK(cfg.attention_bias);
  CHECK(load_llama_config(fs::path(cases["qwen2_mqa"]["dir"].get<std::string>()) / "config.json").num_key_value_heads == 1);
}

TEST_CASE("save_llama writes folders that transformers loads whole, to the same hidden states", "[llama][python]") {
  for (const char* name : {"qwen2_causal_lm", "llama_bias_head_dim"}) {
    INFO(name);
    const auto& c = reference_cases()[name];
    auto model = load_llama(c["dir"].get<std::string>());
    const auto out = scratch_dir() / (std::string("saved_") + name);
    fs::remove_all(out);
    save_llama(model, out);
    const auto b = batch_of(c);
    json spec = {{"batch", b.ids.size(0)}, {"length", b.ids.size(1)}, {"ids", c["ids"]}, {"mask", c["mask"]}};
    const auto in = scratch_dir() / "saved.in.json", result = scratch_dir() / "saved.out.json";
    std::ofstream(in, std::ios::trunc) << spec.dump();
    REQUIRE(test::run_python_reference("llama_reference.py", "run " + out.string() + " " + in.string() + " " + result.string()));
    const auto ref = json::parse(std::ifstream(result));
    CHECK(ref["class"] == (model->config().model_type == "qwen2" ? "Qwen2Model" : "LlamaModel"));
    CHECK(test::max_error_on_real_tokens(run_llama(model, b), test::values_of(ref, "hidden"), b.mask) <= 1e-5);
    CHECK(ref["missing_keys"].empty());
    CHECK(ref["unexpected_keys"].empty());
    auto again = load_llama(out);
    CHECK(same_config(again->config(), model->config()));
  }
}

TEST_CASE("A Llama checkpoint that does not fit lists every problem; nothing is copied", "[llama][python]") {
  const fs::path dir = reference_cases()["qwen2_causal_lm"]["dir"].get<std::string>();
  auto tensors = load_checkpoint(dir);
  tensors.erase("model.layers.1.self_attn.k_proj.bias");
  tensors["model.layers.0.mlp.up_proj.weight"] = torch::zeros({47, 32});
  Llama model(load_llama_config(dir / "config.json"));
  const auto before = model->embed_tokens->weight.clone();
  CHECK_THROWS_WITH(load_llama_weights(model, tensors),
                    Catch::Contains("1 missing tensors") && Catch::Contains("layers.1.self_attn.k_proj.bias") &&
                        Catch::Contains("layers.0.mlp.up_proj.weight: expected [48, 32], got [47, 32]"));
  CHECK(torch::equal(model->embed_tokens->weight, before));
}

TEST_CASE("Llama config.json: settings the encoder does not implement are refused by name", "[llama]") {
  const auto dir = scratch_dir() / "configs";
  const auto config = dir / "config.json";
  const json base = {{"model_type", "qwen2"}, {"hidden_size", 32}, {"num_attention_heads", 4},
                     {"num_key_value_heads", 2}, {"intermediate_size", 48}, {"vocab_size", 50}};
  auto with = [&](const json& extra) {
    json j = base;
    j.update(extra);
    return j;
  };
  SECTION("another family") {
    test::write_config(dir, with({{"model_type", "mistral"}}));
    CHECK_THROWS_WITH(load_llama_config(config), Catch::Contains("model_type \"mistral\" is not supported"));
  }
  SECTION("rope scaling") {
    test::write_config(dir, with({{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}}}));
    CHECK_THROWS_WITH(load_llama_config(config), Catch::Contains("rope_scaling.rope_type \"yarn\" is not supported"));
  }
  SECTION("sliding-window layers") {
    test::write_config(dir, with({{"use_sliding_window", true}}));
    CHECK_THROWS_WITH(load_llama_config(config), Catch::Contains("use_sliding_window = true is not supported"));
  }
  SECTION("heads that do not group") {
    test::write_config(dir, with({{"num_key_value_heads", 3}}));
    CHECK_THROWS_WITH(load_llama_config(config), Catch::Contains("num_attention_heads 4 is not a multiple of num_key_value_heads 3"));
  }
  SECTION("another activation") {
    test::write_config(dir, with({{"hidden_act", "gelu"}}));
    CHECK_THROWS_WITH(load_llama_config(config), Catch::Contains("hidden_act \"gelu\" is not supported"));
  }
  SECTION("written configs read back equal") {
    test::write_config(dir, base);
    const auto cfg = load_llama_config(config);
    CHECK(cfg.num_key_value_heads == 2);
    CHECK(cfg.max_position_embeddings == 32768);  // Qwen2Config's default
    test::write_config(dir, llama_config_to_json(cfg));
    CHECK(same_config(load_llama_config(config), cfg));
  }
}

TEST_CASE("Llama: real tokens see neither padding nor later tokens; no NaN with left padding", "[llama]") {
  torch::manual_seed(3);
  Llama model(tiny_llama());
  model->eval();
  const auto ids = torch::randint(1, 50, {2, 7}, torch::kLong);
  auto mask = torch::ones({2, 7}, torch::kLong);
  mask[1].narrow(0, 0, 3).zero_();  // row 1: three left pads
  const auto h = run_llama(model, {ids, mask});
  CHECK(torch::isfinite(h).all().item<bool>());
  // Changing a later token, or a padded one, leaves earlier real states unchanged.
  auto later = ids.clone();
  later[0][5] = (later[0][5].item<int64_t>() % 49) + 1;
  later[1][1] = (later[1][1].item<int64_t>() % 49) + 1;
  const auto h2 = run_llama(model, {later, mask});
  CHECK(torch::allclose(h[0].narrow(0, 0, 5), h2[0].narrow(0, 0, 5)));
  CHECK_FALSE(torch::allclose(h[0][5], h2[0][5]));
  CHECK(torch::allclose(h[1].narrow(0, 3, 4), h2[1].narrow(0, 3, 4)));
}

TEST_CASE("Llama under GradCache equals FullBatch, and recompute changes no gradient", "[llama][strategy]") {
  // Float64, attention dropout on: GradCache's replay (and the recompute inside it) must
  // draw the forward's masks again.
  using Model = DualEncoder<Llama, Normalized<LastTokenPooling>, SharedTower>;
  torch::manual_seed(5);
  Model model(tiny_llama("llama", 0.1));
  model->to(torch::kDouble);
  const auto ids = torch::randint(1, 50, {8, 9}, torch::kLong);
  auto mask = torch::ones({8, 9}, torch::kLong);
  for (int64_t r = 0; r < 8; ++r) mask[r].narrow(0, 9 - (r % 4), r % 4).zero_();  // right padding, varied
  const PairBatch batch{TokenBatch{ids.narrow(0, 0, 4), mask.narrow(0, 0, 4)},
                        TokenBatch{ids.narrow(0, 4, 4), mask.narrow(0, 4, 4)}, TokenBatch{}};
  const InfoNCE<Cosine> loss{.similarity = {.temperature = 0.05}};
  auto gradients = [&](auto strategy, bool recompute) {
    model->query_encoder->set_gradient_checkpointing(recompute);
    auto params = model->parameters();
    test::zero_grads(params);
    model->train();
    torch::manual_seed(6);
    (void)strategy.accumulate(model, loss, batch, StepContext{0, 2});
    strategy.finish_step(true);
    return test::grads_of(params);
  };
  const auto full = gradients(FullBatch<>({.encode_chunk = 2}), false);
  CHECK(test::relative_error(gradients(GradCache<>(), false), full) <= 1e-10);
  CHECK(test::relative_error(gradients(GradCache<>(), true), full) <= 1e-10);
  // Control: dropout is on, so other masks (one forward for all) give another gradient.
  CHECK(test::relative_error(gradients(FullBatch<>(), false), full) > 1e-3);
}

TEST_CASE("LoRA on Llama: PEFT's q_proj|v_proj targets, merged back without changing the function", "[llama][adapters]") {
  torch::manual_seed(7);
  Llama model(tiny_llama());
  model->eval();
  const auto ids = torch::randint(1, 50, {2, 6}, torch::kLong);
  const auto mask = torch::ones({2, 6}, torch::kLong);
  LoRA{.rank = 4, .alpha = 8, .target_modules = "q_proj|v_proj"}.prepare(model);
  int64_t trainable = 0;
  for (const auto& p : model->named_parameters())
    if (p.value().requires_grad()) {
      CHECK(p.key().find("lora_") != std::string::npos);
      CHECK((p.key().find("q_proj") != std::string::npos || p.key().find("v_proj") != std::string::npos));
      trainable += p.value().numel();
    }
  // 2 layers x (q: 4 (32 + 32) + v: 4 (32 + 16)) parameters of A and B.
  CHECK(trainable == 2 * (4 * (32 + 32) + 4 * (32 + 16)));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters())
      if (p.requires_grad()) p.add_(0.05 * torch::randn_like(p));
  }
  const auto adapted = run_llama(model, {ids, mask});
  CHECK(merge_lora(model) == 4);
  CHECK((run_llama(model, {ids, mask}) - adapted).abs().max().item<float>() <= 1e-5);
}
