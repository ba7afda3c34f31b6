// Hugging Face GPT-NeoX checkpoints: a folder written by transformers' save_pretrained loads
// into our GptNeox and gives GPTNeoXForCausalLM's hidden states, logits and causal-LM loss
// (tests/reference/gpt_neox_reference.py), with right and left padding, parallel and
// sequential residuals, full and partial rotary; a folder written by save_gpt_neox loads in
// transformers and gives ours; config spellings resolve as transformers resolves them; a
// checkpoint or config that does not fit is rejected with every problem named. Padding
// never produces NaN, dropout is honoured in training mode, attention is causal.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"
#include "support/reference_cases.hpp"

#include <contaccum/checkpoint/load_gpt_neox.hpp>
#include <contaccum/config_io.hpp>
#include <contaccum/encoders/dual_encoder.hpp>
#include <contaccum/pooling/last_token.hpp>
#include <contaccum/pooling/mean.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

using namespace contaccum;
using json = nlohmann::json;
namespace fs = std::filesystem;

static_assert(Encoder<GptNeox>);

namespace {

fs::path scratch_dir() { return test::scratch_dir("contaccum_gpt_neox_parity"); }

void run_reference(const std::string& args) { REQUIRE(test::run_python_reference("gpt_neox_reference.py", args)); }

// The transformers models and their outputs, made once per test run.
const json& reference_cases() { return test::reference_cases("gpt_neox_reference.py", scratch_dir() / "hf"); }

// transformers' answers for the models and configs of `spec` (the script's check mode).
json run_check(const json& spec) {
  const auto in = scratch_dir() / "check.in.json", out = scratch_dir() / "check.out.json";
  std::ofstream(in, std::ios::trunc) << spec.dump();
  run_reference("check " + in.string() + " " + out.string());
  return json::parse(std::ifstream(out));
}

struct Batch {
  torch::Tensor ids, mask;  // (B, T)
};

Batch batch_of(const json& b) { return {test::ids_of(b, "ids"), test::ids_of(b, "mask")}; }

using test::max_error_on_real_tokens;
using test::values_of;
using test::write_config;

struct Outputs {
  torch::Tensor hidden, logits;  // (B, T, H), (B, T, V)
  double loss;
};

Outputs run_model(GptNeox& model, const Batch& b) {
  torch::NoGradGuard no_grad;
  auto hidden = model(b.ids, b.mask);
  return {hidden, model->lm_logits(hidden), model->causal_lm_loss(b.ids, b.mask).item<double>()};
}


GptNeoxConfig tiny_neox(double attention_dropout = 0.0, double hidden_dropout = 0.0) {
  return {.vocab_size = 50, .hidden_size = 32, .num_hidden_layers = 2, .num_attention_heads = 4,
          .intermediate_size = 48, .rotary_pct = 0.5, .max_position_embeddings = 64,
          .attention_dropout = attention_dropout, .hidden_dropout = hidden_dropout};
}

// Left padding, and one row that is all padding: (B, T) ids and mask.
Batch left_padded_batch() {
  auto mask = torch::tensor({0, 0, 0, 1, 1, 1, 1, 1,  //
                             1, 1, 1, 1, 1, 1, 1, 1,  //
                             0, 0, 0, 0, 0, 0, 0, 1,  //
                             0, 0, 0, 0, 0, 0, 0, 0},
                            torch::kLong)
                  .view({4, 8});
  auto ids = torch::randint(2, 50, {4, 8}, torch::kLong) * mask + (1 - mask);  // pad id 1
  return {ids, mask};
}

}  // namespace

TEST_CASE("GptNeox loaded from a transformers checkpoint gives GPTNeoXForCausalLM's outputs", "[gpt_neox][python]") {
  const auto& cases = reference_cases();
  REQUIRE(cases.size() == 3);
  for (const auto& [name, c] : cases.items()) {
    auto model = load_gpt_neox(c["dir"].get<std::string>());
    CHECK_FALSE(model->is_training());
    for (const char* side : {"right", "left"}) {
      INFO(name << ", " << side << " padding");
      const auto& ref = c[side];
      const auto b = batch_of(ref);
      const auto ours = run_model(model, b);
      const auto hidden = values_of(ref, "hidden"), logits = values_of(ref, "logits");
      REQUIRE(ours.hidden.sizes() == hidden.sizes());
      REQUIRE(ours.logits.sizes() == logits.sizes());
      const double hidden_err = max_error_on_real_tokens(ours.hidden, hidden, b.mask);
      const double logits_err = max_error_on_real_tokens(ours.logits, logits, b.mask);
      const double loss_err = std::abs(ours.loss - ref["loss"].get<double>());
      CHECK(hidden_err <= 1e-5);
      CHECK(logits_err <= 1e-5);
      CHECK(loss_err <= 1e-5);
      // Negative control: padding is really there and the states are not trivially equal.
      CHECK(b.mask.sum().item<int64_t>() < b.mask.numel());
      CHECK(max_error_on_real_tokens(ours.hidden, hidden.roll(1, 1), b.mask) > 1e-2);
      CHECK(torch::isfinite(ours.hidden).all().item<bool>());  // padded positions too
    }
  }
  const auto& seq = cases["sequential_rot100"];
  CHECK(seq["sharded"].get<bool>());  // saved as shards + index by transformers
  const auto cfg = load_gpt_neox_config(fs::path(seq["dir"].get<std::string>()) / "config.json");
  CHECK(cfg.hidden_size == 48);
  CHECK(cfg.num_hidden_layers == 3);
  CHECK(cfg.intermediate_size == 80);
  CHECK(cfg.vocab_size == 101);
  CHECK(cfg.rotary_pct == 1.0);
  CHECK(cfg.rotary_emb_base == 500.0);
  CHECK_FALSE(cfg.use_parallel_residual);
  const auto tied = load_gpt_neox(cases["tied_gelu_new"]["dir"].get<std::string>());
  CHECK(tied->config().tie_word_embeddings);
  CHECK_FALSE(tied->config().attention_bias);
  CHECK(tied->config().hidden_act == "gelu_new");
  CHECK(tied->rotary_dims() == 8);
  CHECK(tied->named_parameters().find("embed_out.weight") == nullptr);
}

TEST_CASE("save_gpt_neox writes a folder that transformers loads to the same outputs", "[gpt_neox][python]") {
  const auto& cases = reference_cases();
  json spec = {{"models", json::array()}};
  std::vector<std::pair<GptNeox, Batch>> models;
  for (const char* name : {"parallel_rot25", "tied_gelu_new"}) {
    const auto& c = cases[name];
    auto model = load_gpt_neox(c["dir"].get<std::string>());
    const auto out = scratch_dir() / (std::string("saved_") + name);
    fs::remove_all(out);
    save_gpt_neox(model, out);
    CHECK(fs::exists(out / "config.json"));
    CHECK(fs::exists(out / "model.safetensors"));
    const auto& ref = c["left"];
    spec["models"].push_back({{"dir", out.string()}, {"shape", ref["shape"]}, {"ids", ref["ids"]},
                              {"mask", ref["mask"]}, {"labels", ref["labels"]}});
    models.emplace_back(model, batch_of(ref));

    // And back: our own folder reloads to the same config and the same parameters.
    auto again = load_gpt_neox(out);
    CHECK(same_config(again->config(), model->config()));
    const auto before = model->named_parameters();
    for (const auto& p : again->named_parameters()) {
      INFO(p.key());
      CHECK(torch::equal(p.value(), before[p.key()]));
    }
  }
  const auto result = run_check(spec);
  REQUIRE(result["models"].size() == models.size());
  for (size_t i = 0; i < models.size(); ++i) {
    const auto& theirs = result["models"][i];
    INFO(spec["models"][i]["dir"].get<std::string>());
    auto& [model, b] = models[i];
    const auto ours = run_model(model, b);
    CHECK(max_error_on_real_tokens(ours.hidden, values_of(theirs, "hidden"), b.mask) <= 1e-5);
    CHECK(max_error_on_real_tokens(ours.logits, values_of(theirs, "logits"), b.mask) <= 1e-5);
    CHECK(std::abs(ours.loss - theirs["loss"].get<double>()) <= 1e-5);
    CHECK(theirs["missing_keys"].empty());
    CHECK(theirs["unexpected_keys"].empty());
    const auto& cfg = theirs["config"];
    CHECK(cfg["rotary_pct"].get<double>() == model->config().rotary_pct);
    CHECK(cfg["rotary_emb_base"].get<double>() == model->config().rotary_emb_base);
    CHECK(cfg["tie_word_embeddings"].get<bool>() == model->config().tie_word_embeddings);
    CHECK(cfg["hidden_act"].get<std::string>() == model->config().hidden_act);
  }
}

TEST_CASE("A GPTNeoXModel checkpoint (no prefix, no head) loads only when the head is optional", "[gpt_neox][python]") {
  const auto& c = reference_cases()["parallel_rot25"];
  const fs::path body = c["body_dir"].get<std::string>();
  CHECK_THROWS_AS(load_gpt_neox(body), invalid_input);
  CHECK_THROWS_WITH(load_gpt_neox(body), Catch::Contains("1 missing tensors") &&
                                             Catch::Contains("embed_out.weight") &&
                                             Catch::Contains("GptNeoxHead::optional") &&
                                             !Catch::Contains("gpt_neox.layers"));

  GptNeox model(load_gpt_neox_config(body / "config.json"));
  const auto head = model->embed_out->weight.clone();
  load_gpt_neox_weights(model, load_checkpoint(body), "body", GptNeoxHead::optional);
  model->eval();
  CHECK(torch::equal(model->embed_out->weight, head));  // kept its initial values
  const auto b = batch_of(c["right"]);
  CHECK(max_error_on_real_tokens(run_model(model, b).hidden, values_of(c["right"], "hidden"), b.mask) <= 1e-5);
}

TEST_CASE("lm_head.weight, old buffers, other heads and other dtypes load", "[gpt_neox][python]") {
  const fs::path dir = reference_cases()["parallel_rot25"]["dir"].get<std::string>();
  auto reference = load_gpt_neox(dir);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [key, t] : load_checkpoint(dir)) {
    const auto name = key == "embed_out.weight" ? std::string("lm_head.weight") : key;  // transformers 5's name
    tensors.emplace(name, t.to(torch::kHalf).to(torch::kFloat).to(torch::kDouble));    // dtype converted
  }
  tensors.emplace("gpt_neox.layers.0.attention.bias", torch::ones({1, 1, 64, 64}, torch::kBool).tril());
  tensors.emplace("gpt_neox.layers.0.attention.masked_bias", torch::tensor(-1e9));
  tensors.emplace("gpt_neox.layers.1.attention.rotary_emb.inv_freq", torch::rand({2}));
  tensors.emplace("gpt_neox.rotary_emb.inv_freq", torch::rand({2}));
  tensors.emplace("score.weight", torch::randn({2, 64}));

  GptNeox model(load_gpt_neox_config(dir / "config.json"));
  load_gpt_neox_weights(model, tensors);
  const auto want = reference->named_parameters();
  for (const auto& p : model->named_parameters()) {
    INFO(p.key());
    CHECK(p.value().scalar_type() == torch::kFloat);
    CHECK(torch::equal(p.value(), want[p.key()].to(torch::kHalf).to(torch::kFloat)));
  }
  // Both spellings of the head at once are ambiguous.
  tensors.emplace("embed_out.weight", tensors.at("lm_head.weight"));
  CHECK_THROWS_WITH(load_gpt_neox_weights(model, tensors),
                    Catch::Contains("tensors given twice") && Catch::Contains("lm_head.weight"));
}

TEST_CASE("A GPT-NeoX checkpoint that does not fit lists every missing tensor and shape mismatch", "[gpt_neox][python]") {
  const fs::path dir = reference_cases()["parallel_rot25"]["dir"].get<std::string>();
  auto tensors = load_checkpoint(dir);
  tensors.erase("gpt_neox.layers.1.mlp.dense_4h_to_h.weight");
  tensors.erase("gpt_neox.final_layer_norm.bias");
  tensors["gpt_neox.layers.0.attention.query_key_value.weight"] = torch::zeros({191, 64});
  tensors["embed_out.weight"] = torch::zeros({100, 64});

  const auto bad = scratch_dir() / "does_not_fit";
  fs::remove_all(bad);
  fs::create_directories(bad);
  fs::copy_file(dir / "config.json", bad / "config.json");
  save_safetensors(bad / "model.safetensors", tensors, {{"format", "pt"}});
  CHECK_THROWS_AS(load_gpt_neox(bad), invalid_input);
  CHECK_THROWS_WITH(load_gpt_neox(bad),
                    Catch::Contains(bad.string()) && Catch::Contains("2 missing tensors") &&
                        Catch::Contains("gpt_neox.layers.1.mlp.dense_4h_to_h.weight") &&
                        Catch::Contains("gpt_neox.final_layer_norm.bias") && Catch::Contains("2 shape mismatches") &&
                        Catch::Contains("gpt_neox.layers.0.attention.query_key_value.weight: expected [192, 64], "
                                        "got [191, 64]") &&
                        Catch::Contains("embed_out.weight: expected [101, 64], got [100, 64]"));

  // Nothing is copied when the checkpoint does not fit.
  GptNeox model(load_gpt_neox_config(dir / "config.json"));
  const auto before = model->gpt_neox->embed_in->weight.clone();
  CHECK_THROWS_AS(load_gpt_neox_weights(model, tensors), invalid_input);
  CHECK(torch::equal(model->gpt_neox->embed_in->weight, before));

  // A config with fewer layers than the checkpoint: the extra layer is named.
  auto cfg = load_gpt_neox_config(dir / "config.json");
  cfg.num_hidden_layers = 1;
  GptNeox shallow(cfg);
  CHECK_THROWS_WITH(load_gpt_neox_weights(shallow, load_checkpoint(dir)),
                    Catch::Contains("unexpected tensors") &&
                        Catch::Contains("gpt_neox.layers.1.attention.query_key_value.weight"));
}

TEST_CASE("GPT-NeoX config.json: unknown model types and unsupported settings are rejected by name", "[gpt_neox]") {
  const auto dir = scratch_dir() / "configs";
  const auto config = dir / "config.json";
  const json base = {{"model_type", "gpt_neox"}, {"hidden_size", 32}, {"num_attention_heads", 4}};
  auto with = [&](const json& extra) {
    json j = base;
    j.update(extra);
    write_config(dir, j);
  };
  SECTION("unknown model_type") {
    with({{"model_type", "bert"}});
    CHECK_THROWS_WITH(load_gpt_neox_config(config),
                      Catch::Contains("model_type \"bert\" is not supported") && Catch::Contains(config.string()));
  }
  SECTION("unknown architecture") {
    with({{"architectures", json::array({"LlamaForCausalLM"})}});
    CHECK_THROWS_WITH(load_gpt_neox_config(config), Catch::Contains("architecture \"LlamaForCausalLM\""));
  }
  SECTION("odd rotary dims") {
    with({{"hidden_size", 24}, {"num_attention_heads", 2}, {"rotary_pct", 0.25}});  // 12 * 0.25 = 3
    CHECK_THROWS_WITH(load_gpt_neox_config(config), Catch::Contains("rotary dims 3") && Catch::Contains("odd"));
  }
  SECTION("heads that do not divide the width") {
    with({{"hidden_size", 30}});
    CHECK_THROWS_WITH(load_gpt_neox_config(config), Catch::Contains("hidden_size 30 is not a multiple"));
  }
  SECTION("RoPE scaling") {
    with({{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}});
    CHECK_THROWS_WITH(load_gpt_neox_config(config), Catch::Contains("rope_scaling"));
    with({{"rope_parameters", {{"rope_type", "dynamic"}, {"factor", 2.0}}}});
    CHECK_THROWS_WITH(load_gpt_neox_config(config),
                      Catch::Contains("rope_parameters.rope_type \"dynamic\" is not supported"));
  }
  SECTION("another activation") {
    with({{"hidden_act", "silu"}});
    CHECK_THROWS_WITH(load_gpt_neox_config(config), Catch::Contains("hidden_act \"silu\" is not supported"));
  }
  SECTION("a top-level rope_theta that transformers 5 would ignore and that disagrees") {
    with({{"rotary_emb_base", 10000}, {"rope_theta", 500}});
    CHECK_THROWS_WITH(load_gpt_neox_config(config), Catch::Contains("top-level \"rope_theta\" 500 disagrees"));
  }
  SECTION("fields of the wrong type") {
    with({{"use_parallel_residual", "yes"}});
    CHECK_THROWS_WITH(load_gpt_neox_config(config), Catch::Contains("\"use_parallel_residual\" must be true or false"));
    with({{"eos_token_id", json::array({0, 1})}});
    CHECK_THROWS_WITH(load_gpt_neox_config(config), Catch::Contains("\"eos_token_id\" must be one integer"));
  }
  SECTION("the module checks its config too") {
    auto cfg = tiny_neox();
    cfg.rotary_pct = 0.2;  // 8 * 0.2 = 1.6 -> 1 dim
    CHECK_THROWS_AS(GptNeox(cfg), invalid_input);
    CHECK_THROWS_WITH(GptNeox(cfg), Catch::Contains("GptNeoxConfig: rotary dims 1"));
    cfg = tiny_neox();
    cfg.num_attention_heads = 5;
    CHECK_THROWS_WITH(GptNeox(cfg), Catch::Contains("GptNeoxConfig: hidden_size 32 is not a multiple"));
  }
}

TEST_CASE("GPT-NeoX config spellings resolve as transformers resolves them", "[gpt_neox][python]") {
  const auto root = scratch_dir() / "spellings";
  fs::remove_all(root);
  // Pythia-70m's config.json as published (transformers 4.24, old rotary keys).
  const json pythia = {{"architectures", json::array({"GPTNeoXForCausalLM"})},
                       {"bos_token_id", 0},
                       {"eos_token_id", 0},
                       {"hidden_act", "gelu"},
                       {"hidden_size", 512},
                       {"initializer_range", 0.02},
                       {"intermediate_size", 2048},
                       {"layer_norm_eps", 1e-05},
                       {"max_position_embeddings", 2048},
                       {"model_type", "gpt_neox"},
                       {"num_attention_heads", 8},
                       {"num_hidden_layers", 6},
                       {"rotary_emb_base", 10000},
                       {"rotary_pct", 0.25},
                       {"tie_word_embeddings", false},
                       {"torch_dtype", "float16"},
                       {"transformers_version", "4.24.0"},
                       {"use_cache", true},
                       {"use_parallel_residual", true},
                       {"vocab_size", 50304}};
  auto variant = [&](std::initializer_list<const char*> drop, const json& extra) {
    json j = pythia;
    for (const char* key : drop) j.erase(key);
    j.update(extra);
    return j;
  };
  const json rope_new = {{"rope_type", "default"}, {"partial_rotary_factor", 0.5}, {"rope_theta", 500}};
  const std::map<std::string, json> configs = {
      {"old_keys", pythia},
      {"new_keys", variant({"rotary_pct", "rotary_emb_base"}, {{"rope_parameters", rope_new}})},
      {"both_new_wins", variant({}, {{"rope_parameters", rope_new}})},
      {"mixed",
       variant({"rotary_pct"}, {{"rotary_emb_base", 700}, {"rope_parameters", {{"partial_rotary_factor", 1.0}}}})},
      {"four_keys_of_4x", variant({}, {{"rope_theta", 10000}, {"partial_rotary_factor", 0.25}})},
      {"defaults", variant({"rotary_pct", "rotary_emb_base", "eos_token_id"}, json::object())},
      {"null_pad", variant({}, {{"pad_token_id", nullptr}, {"attention_bias", false}, {"hidden_act", "relu"}})},
  };
  json spec = {{"configs", json::array()}};
  std::vector<GptNeoxConfig> ours;
  for (const auto& [name, j] : configs) {
    write_config(root / name, j);
    spec["configs"].push_back((root / name).string());
    ours.push_back(load_gpt_neox_config(root / name / "config.json"));
  }
  // What we write is read back equal, and transformers reads the same values from it.
  auto custom = tiny_neox();
  custom.rotary_emb_base = 1234.5;
  custom.use_parallel_residual = false;
  custom.pad_token_id = 1;
  fs::create_directories(root / "written");
  save_gpt_neox_config(custom, root / "written" / "config.json");
  CHECK(same_config(load_gpt_neox_config(root / "written" / "config.json"), custom));
  spec["configs"].push_back((root / "written").string());
  ours.push_back(custom);

  const auto result = run_check(spec);
  REQUIRE(result["configs"].size() == ours.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    const auto& theirs = result["configs"][i];
    const auto& c = ours[i];
    INFO(spec["configs"][i].get<std::string>() << ": transformers resolved " << theirs.dump());
    CHECK(theirs["rope_type"] == "default");
    CHECK(theirs["rotary_pct"].get<double>() == c.rotary_pct);
    CHECK(theirs["rotary_emb_base"].get<double>() == c.rotary_emb_base);
    CHECK(theirs["hidden_size"].get<int64_t>() == c.hidden_size);
    CHECK(theirs["num_hidden_layers"].get<int64_t>() == c.num_hidden_layers);
    CHECK(theirs["num_attention_heads"].get<int64_t>() == c.num_attention_heads);
    CHECK(theirs["intermediate_size"].get<int64_t>() == c.intermediate_size);
    CHECK(theirs["vocab_size"].get<int64_t>() == c.vocab_size);
    CHECK(theirs["use_parallel_residual"].get<bool>() == c.use_parallel_residual);
    CHECK(theirs["attention_bias"].get<bool>() == c.attention_bias);
    CHECK(theirs["tie_word_embeddings"].get<bool>() == c.tie_word_embeddings);
    CHECK(theirs["hidden_act"].get<std::string>() == c.hidden_act);
    CHECK(theirs["layer_norm_eps"].get<double>() == c.layer_norm_eps);
    CHECK(theirs["max_position_embeddings"].get<int64_t>() == c.max_position_embeddings);
    for (auto [key, id] : {std::pair{"bos_token_id", c.bos_token_id}, std::pair{"eos_token_id", c.eos_token_id},
                           std::pair{"pad_token_id", c.pad_token_id}}) {
      INFO(key);
      CHECK((theirs[key].is_null() ? -1 : theirs[key].get<int64_t>()) == id);
    }
  }

  // The old spelling of a real checkpoint's config loads to the same hidden states.
  const auto& c = reference_cases()["parallel_rot25"];
  const fs::path src = c["dir"].get<std::string>();
  auto old_style = json::parse(std::ifstream(src / "config.json"));
  old_style.erase("rope_parameters");
  old_style["rotary_pct"] = 0.25;
  old_style["rotary_emb_base"] = 10000;
  const auto copy = root / "old_style_checkpoint";
  write_config(copy, old_style);
  fs::copy_file(src / "model.safetensors", copy / "model.safetensors");
  auto model = load_gpt_neox(copy);
  const auto b = batch_of(c["left"]);
  CHECK(max_error_on_real_tokens(run_model(model, b).hidden, values_of(c["left"], "hidden"), b.mask) <= 1e-5);
}

TEST_CASE("GptNeox: left padding and all-padding rows give no NaN, in outputs or gradients", "[gpt_neox]") {
  torch::manual_seed(3);
  for (const double p : {0.0, 0.2}) {
    INFO("dropout " << p);
    GptNeox model(tiny_neox(p, p));
    model->train(p > 0);
    const auto b = left_padded_batch();
    auto hidden = model(b.ids, b.mask);  // (4, 8, 32)
    CHECK(torch::isfinite(hidden).all().item<bool>());
    auto pooled = MeanPooling{}(hidden, b.mask) + LastTokenPooling{}(hidden, b.mask);  // (4, 32)
    (pooled.pow(2).sum() + model->causal_lm_loss(b.ids, b.mask)).backward();
    for (const auto& param : model->named_parameters()) {
      INFO(param.key());
      REQUIRE(param.value().grad().defined());
      CHECK(torch::isfinite(param.value().grad()).all().item<bool>());
    }
  }
  // A batch with no real next-token pair has loss 0, not NaN.
  GptNeox model(tiny_neox());
  const auto ids = torch::randint(2, 50, {2, 5}, torch::kLong);
  CHECK(model->causal_lm_loss(ids, torch::zeros({2, 5}, torch::kLong)).item<double>() == 0.0);
  CHECK(model->causal_lm_loss(ids.narrow(1, 0, 1), torch::ones({2, 1}, torch::kLong)).item<double>() == 0.0);
}

TEST_CASE("GptNeox: real tokens see neither padding nor later tokens", "[gpt_neox]") {
  torch::manual_seed(4);
  GptNeox model(tiny_neox());
  model->eval();
  torch::NoGradGuard no_grad;
  const auto b = left_padded_batch();
  const auto h = model(b.ids, b.mask);
  // Other pad ids: real tokens unchanged.
  auto other_pads = b.ids * b.mask + 7 * (1 - b.mask);
  CHECK(max_error_on_real_tokens(model(other_pads, b.mask), h, b.mask) <= 1e-6);
  // Another token at position 5: positions before it unchanged, from it on changed.
  auto changed = b.ids.clone();
  changed.index_put_({torch::indexing::Slice(), 5}, (changed.index({torch::indexing::Slice(), 5}) + 1) % 50);
  const auto h2 = model(changed, b.mask);
  const auto before = torch::indexing::Slice(0, 5), after = torch::indexing::Slice(5, 8);
  CHECK((h2.index({1, before}) - h.index({1, before})).abs().max().item<double>() <= 1e-6);
  CHECK((h2.index({1, after}) - h.index({1, after})).abs().max().item<double>() > 1e-3);
}

TEST_CASE("GptNeox honours attention_dropout and hidden_dropout in training mode only", "[gpt_neox]") {
  torch::manual_seed(5);
  const auto b = left_padded_batch();
  const auto real = b.mask;
  auto differs = [&](const GptNeoxConfig& cfg) {
    GptNeox model(cfg);
    model->train();
    auto a = model(b.ids, b.mask), c = model(b.ids, b.mask);
    model->eval();
    auto e1 = model(b.ids, b.mask), e2 = model(b.ids, b.mask);
    CHECK(torch::equal(e1, e2));  // eval is deterministic
    return max_error_on_real_tokens(a, c, real) > 1e-4;
  };
  CHECK(differs(tiny_neox(0.3, 0.0)));
  CHECK(differs(tiny_neox(0.0, 0.3)));
  CHECK_FALSE(differs(tiny_neox(0.0, 0.0)));

  // The written-out attention used while training (p > 0) equals the fused one: with a
  // negligible p, training mode gives eval's states.
  GptNeox model(tiny_neox(1e-12, 0.0));
  model->eval();
  const auto fused = model(b.ids, b.mask);
  model->train();
  const auto manual = model(b.ids, b.mask);
  CHECK(max_error_on_real_tokens(manual, fused, real) <= 1e-5);
  CHECK(torch::isfinite(manual).all().item<bool>());
}

TEST_CASE("GptNeox is an Encoder: a shared-tower DualEncoder reads its last real token", "[gpt_neox]") {
  torch::manual_seed(6);
  DualEncoder<GptNeox, LastTokenPooling, SharedTower> model(tiny_neox());
  const auto b = left_padded_batch();
  const auto q = model->encode_queries({b.ids, b.mask});
  CHECK(q.sizes() == torch::IntArrayRef({4, 32}));
  CHECK(torch::isfinite(q).all().item<bool>());
  CHECK(model->hidden_size() == 32);
}
