// Hugging Face BERT checkpoints: a folder written by transformers' save_pretrained loads into
// our Bert and gives transformers' hidden states (tests/reference/bert_reference.py); a
// folder written by save_bert loads in transformers and gives ours; old names load; a
// checkpoint or config that does not fit is rejected with every problem named.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"
#include "support/reference_cases.hpp"

#include <contaccum/checkpoint/load_bert.hpp>
#include <contaccum/config_io.hpp>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

using namespace contaccum;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path scratch_dir() { return test::scratch_dir("contaccum_bert_parity"); }

void run_reference(const std::string& args) { REQUIRE(test::run_python_reference("bert_reference.py", args)); }

// The transformers models and their outputs, made once per test run.
const json& reference_cases() { return test::reference_cases("bert_reference.py", scratch_dir() / "hf"); }

struct Batch {
  torch::Tensor ids, mask, types;  // (B, T)
};

Batch batch_of(const json& c) { return {test::ids_of(c, "ids"), test::ids_of(c, "mask"), test::ids_of(c, "types")}; }

// (B, T, H) hidden states from JSON.
torch::Tensor hidden_of(const json& c) { return test::values_of(c, "hidden"); }

using test::max_error_on_real_tokens;
using test::write_config;

torch::Tensor run_bert(Bert& model, const Batch& b) {
  torch::NoGradGuard no_grad;
  return model(b.ids, b.mask, b.types);  // (B, T, H)
}


}  // namespace

TEST_CASE("Bert loaded from a transformers checkpoint gives BertModel's hidden states", "[checkpoint][python]") {
  const auto& cases = reference_cases();
  REQUIRE(cases.size() == 2);
  for (const auto& [name, c] : cases.items()) {
    INFO(name);
    auto model = load_bert(c["dir"].get<std::string>());
    CHECK_FALSE(model->is_training());
    const auto b = batch_of(c);
    const auto ours = run_bert(model, b);
    const auto theirs = hidden_of(c);
    REQUIRE(ours.sizes() == theirs.sizes());
    const double err = max_error_on_real_tokens(ours, theirs, b.mask);
    CHECK(err <= 1e-5);
    // Negative control: padding is really there and the states are not trivially equal.
    CHECK(b.mask.sum().item<int64_t>() < b.mask.numel());
    CHECK(max_error_on_real_tokens(ours, theirs.roll(1, 1), b.mask) > 1e-2);
  }
  const auto& c48 = cases["h48_l3"];
  CHECK(c48["sharded"].get<bool>());  // saved as shards + index by transformers
  const auto cfg = load_bert_config(fs::path(c48["dir"].get<std::string>()) / "config.json");
  CHECK(cfg.hidden_size == 48);
  CHECK(cfg.num_hidden_layers == 3);
  CHECK(cfg.intermediate_size == 37);
  CHECK(cfg.vocab_size == 99);
  CHECK(cfg.max_position_embeddings == 64);
}

TEST_CASE("save_bert writes a folder that transformers loads to the same hidden states", "[checkpoint][python]") {
  const auto& c = reference_cases()["h32_l2"];
  auto model = load_bert(c["dir"].get<std::string>());
  const auto out = scratch_dir() / "saved_by_contaccum";
  fs::remove_all(out);
  save_bert(model, out);
  CHECK(fs::exists(out / "config.json"));
  CHECK(fs::exists(out / "model.safetensors"));

  const auto b = batch_of(c);
  json spec = {{"batch", b.ids.size(0)}, {"length", b.ids.size(1)}, {"ids", c["ids"]}, {"mask", c["mask"]},
               {"types", c["types"]}};
  const auto in = scratch_dir() / "saved.in.json", result = scratch_dir() / "saved.out.json";
  std::ofstream(in, std::ios::trunc) << spec.dump();
  run_reference("run " + out.string() + " " + in.string() + " " + result.string());
  const auto ref = json::parse(std::ifstream(result));

  const auto ours = run_bert(model, b);
  const double err = max_error_on_real_tokens(ours, hidden_of(ref), b.mask);
  CHECK(err <= 1e-5);
  CHECK(ref["unexpected_keys"].empty());
  for (const auto& k : ref["missing_keys"]) CHECK(k.get<std::string>().starts_with("pooler."));  // no pooler

  // And back: our own folder reloads to the same config and the same parameters.
  auto again = load_bert(out);
  CHECK(same_config(again->config(), model->config()));
  const auto before = model->named_parameters();
  for (const auto& p : again->named_parameters()) {
    INFO(p.key());
    CHECK(torch::equal(p.value(), before[p.key()]));
  }
}

TEST_CASE("Old checkpoint names load: a bert. prefix, LayerNorm gamma/beta and heads", "[checkpoint][python]") {
  const auto& c = reference_cases()["h32_l2"];
  const fs::path dir = c["dir"].get<std::string>();
  auto reference = load_bert(dir);
  std::map<std::string, torch::Tensor> renamed;
  for (const auto& [key, t] : load_checkpoint(dir)) {
    std::string name = key;
    if (name.ends_with("LayerNorm.weight")) name.replace(name.size() - 6, 6, "gamma");
    else if (name.ends_with("LayerNorm.bias")) name.replace(name.size() - 4, 4, "beta");
    renamed.emplace("bert." + name, t.to(torch::kHalf).to(torch::kFloat).to(torch::kDouble));  // dtype converted
  }
  renamed.emplace("bert.pooler.dense.weight", torch::randn({32, 32}));
  renamed.emplace("bert.embeddings.position_ids", torch::arange(64).unsqueeze(0));
  renamed.emplace("cls.predictions.bias", torch::randn({99}));
  renamed.emplace("cls.predictions.transform.dense.weight", torch::randn({32, 32}));

  Bert model(load_bert_config(dir / "config.json"));
  load_bert_weights(model, renamed);
  const auto want = reference->named_parameters();
  for (const auto& p : model->named_parameters()) {
    INFO(p.key());
    CHECK(p.value().scalar_type() == torch::kFloat);
    CHECK(torch::equal(p.value(), want[p.key()].to(torch::kHalf).to(torch::kFloat)));
  }
}

TEST_CASE("A checkpoint that does not fit lists every missing tensor and shape mismatch", "[checkpoint][python]") {
  const auto& c = reference_cases()["h32_l2"];
  const fs::path dir = c["dir"].get<std::string>();
  auto tensors = load_checkpoint(dir);
  tensors.erase("encoder.layer.1.output.dense.weight");
  tensors.erase("embeddings.LayerNorm.bias");
  tensors["encoder.layer.0.intermediate.dense.weight"] = torch::zeros({36, 32});
  tensors["embeddings.word_embeddings.weight"] = torch::zeros({98, 32});

  const auto bad = scratch_dir() / "does_not_fit";
  fs::remove_all(bad);
  fs::create_directories(bad);
  fs::copy_file(dir / "config.json", bad / "config.json");
  save_safetensors(bad / "model.safetensors", tensors, {{"format", "pt"}});
  CHECK_THROWS_AS(load_bert(bad), invalid_input);
  CHECK_THROWS_WITH(load_bert(bad), Catch::Contains(bad.string()) && Catch::Contains("2 missing tensors") &&
                                        Catch::Contains("encoder.layer.1.output.dense.weight") &&
                                        Catch::Contains("embeddings.LayerNorm.bias") &&
                                        Catch::Contains("2 shape mismatches") &&
                                        Catch::Contains("encoder.layer.0.intermediate.dense.weight: expected [37, 32], "
                                                        "got [36, 32]") &&
                                        Catch::Contains("embeddings.word_embeddings.weight: expected [99, 32], got [98, "
                                                        "32]"));

  // Nothing is copied when the checkpoint does not fit.
  Bert model(load_bert_config(dir / "config.json"));
  const auto before = model->embeddings->word_embeddings->weight.clone();
  CHECK_THROWS_AS(load_bert_weights(model, tensors), invalid_input);
  CHECK(torch::equal(model->embeddings->word_embeddings->weight, before));

  // A config with fewer layers than the checkpoint: the extra layer is named.
  auto cfg = load_bert_config(dir / "config.json");
  cfg.num_hidden_layers = 1;
  Bert shallow(cfg);
  CHECK_THROWS_WITH(load_bert_weights(shallow, load_checkpoint(dir)),
                    Catch::Contains("unexpected tensors") && Catch::Contains("encoder.layer.1.attention.self.query.weight"));
}

TEST_CASE("config.json: unknown model types and unsupported settings are rejected by name", "[checkpoint]") {
  const auto dir = scratch_dir() / "configs";
  const auto config = dir / "config.json";
  SECTION("unknown model_type") {
    write_config(dir, {{"model_type", "gpt_neox"}, {"hidden_size", 32}});
    CHECK_THROWS_WITH(load_bert(dir), Catch::Contains("model_type \"gpt_neox\" is not supported") &&
                                          Catch::Contains(config.string()));
  }
  SECTION("unknown architecture") {
    write_config(dir, {{"architectures", json::array({"RobertaModel"})}});
    CHECK_THROWS_WITH(load_bert_config(config), Catch::Contains("architecture \"RobertaModel\""));
  }
  SECTION("another activation") {
    write_config(dir, {{"model_type", "bert"}, {"hidden_act", "relu"}});
    CHECK_THROWS_WITH(load_bert_config(config), Catch::Contains("hidden_act \"relu\" is not supported"));
  }
  SECTION("relative position embeddings") {
    write_config(dir, {{"model_type", "bert"}, {"position_embedding_type", "relative_key"}});
    CHECK_THROWS_WITH(load_bert_config(config), Catch::Contains("position_embedding_type \"relative_key\""));
  }
  SECTION("a field of the wrong type") {
    write_config(dir, {{"model_type", "bert"}, {"hidden_size", "big"}});
    CHECK_THROWS_WITH(load_bert_config(config), Catch::Contains("\"hidden_size\" must be an integer"));
  }
  SECTION("heads that do not divide the width") {
    write_config(dir, {{"model_type", "bert"}, {"hidden_size", 30}, {"num_attention_heads", 4}});
    CHECK_THROWS_WITH(load_bert_config(config), Catch::Contains("hidden_size 30 is not a multiple"));
  }
  SECTION("missing fields keep BertConfig's defaults; written configs read back equal") {
    write_config(dir, {{"model_type", "bert"}, {"hidden_size", 64}, {"num_attention_heads", 4}, {"layer_norm_eps", 1e-6}});
    const auto cfg = load_bert_config(config);
    CHECK(cfg.hidden_size == 64);
    CHECK(cfg.num_attention_heads == 4);
    CHECK(cfg.layer_norm_eps == 1e-6);
    CHECK(cfg.vocab_size == BertConfig{}.vocab_size);
    CHECK(cfg.num_hidden_layers == BertConfig{}.num_hidden_layers);
    save_bert_config(cfg, config);
    CHECK(same_config(load_bert_config(config), cfg));
  }
}

// RoBERTa and XLM-RoBERTa: the same body with RoBERTa's position ids
// (tests/reference/roberta_reference.py).
namespace {

const json& roberta_cases() { return test::reference_cases("roberta_reference.py", scratch_dir() / "roberta"); }

}  // namespace

TEST_CASE("RoBERTa and XLM-RoBERTa checkpoints give transformers' hidden states", "[checkpoint][python]") {
  const auto& cases = roberta_cases();
  REQUIRE(cases.size() == 3);
  for (const auto& [name, c] : cases.items()) {
    INFO(name << " (" << c["class"].get<std::string>() << ")");
    auto model = load_bert(c["dir"].get<std::string>());
    CHECK(model->config().model_type == (name.starts_with("xlmr") ? "xlm-roberta" : "roberta"));
    CHECK(model->config().pad_token_id == 1);
    const auto b = batch_of(c);
    const auto ours = run_bert(model, b);
    const auto theirs = hidden_of(c);
    REQUIRE(ours.sizes() == theirs.sizes());
    CHECK(max_error_on_real_tokens(ours, theirs, b.mask) <= 1e-5);
    // Negative control: BERT's positions (0, 1, ...) on the same weights are measurably off.
    auto cfg = model->config();
    cfg.model_type = "bert";
    Bert as_bert(cfg);
    {
      torch::NoGradGuard no_grad;
      const auto want = model->named_parameters();
      for (auto& p : as_bert->named_parameters()) p.value().copy_(want[p.key()]);
    }
    as_bert->eval();
    CHECK(max_error_on_real_tokens(run_bert(as_bert, b), theirs, b.mask) > 1e-2);
  }
  // The longest row uses the last position there is; one token more does not fit.
  const auto& c = cases["roberta_h32_l2"];
  auto model = load_bert(c["dir"].get<std::string>());
  CHECK(model->config().max_position_embeddings == 18);
  const auto too_long = torch::full({1, 17}, 5, torch::kLong);
  CHECK_THROWS_WITH(model(too_long, torch::ones_like(too_long)),
                    Catch::Contains("sequence length 17 exceeds max_position_embeddings 18") &&
                        Catch::Contains("2 positions RoBERTa reserves"));
}

TEST_CASE("save_bert writes RoBERTa-family folders that transformers' AutoModel loads whole", "[checkpoint][python]") {
  for (const char* name : {"roberta_h32_l2", "xlmr_mlm_h32_l3"}) {
    INFO(name);
    const auto& c = roberta_cases()[name];
    auto model = load_bert(c["dir"].get<std::string>());  // the MLM case: body under "roberta.", lm_head left
    const auto out = scratch_dir() / (std::string("saved_") + name);
    fs::remove_all(out);
    save_bert(model, out);
    const auto written = json::parse(std::ifstream(out / "config.json"));
    CHECK(written["model_type"] == model->config().model_type);
    CHECK(written["pad_token_id"] == 1);

    const auto b = batch_of(c);
    json spec = {{"batch", b.ids.size(0)}, {"length", b.ids.size(1)}, {"ids", c["ids"]}, {"mask", c["mask"]},
                 {"types", c["types"]}};
    const auto in = scratch_dir() / "roberta.in.json", result = scratch_dir() / "roberta.out.json";
    std::ofstream(in, std::ios::trunc) << spec.dump();
    REQUIRE(test::run_python_reference("roberta_reference.py",
                                       "run " + out.string() + " " + in.string() + " " + result.string()));
    const auto ref = json::parse(std::ifstream(result));
    CHECK(ref["class"] == (model->config().model_type == "roberta" ? "RobertaModel" : "XLMRobertaModel"));
    CHECK(max_error_on_real_tokens(run_bert(model, b), hidden_of(ref), b.mask) <= 1e-5);
    // Nothing newly initialised (the pooler is written) and nothing left over.
    CHECK(ref["missing_keys"].empty());
    CHECK(ref["unexpected_keys"].empty());
    auto again = load_bert(out);
    CHECK(same_config(again->config(), model->config()));
  }
}

TEST_CASE("RoBERTa-family configs: families, architectures and the padding id are checked", "[checkpoint]") {
  const auto dir = scratch_dir() / "roberta_configs";
  const auto config = dir / "config.json";
  SECTION("an XLM-R config without pad_token_id takes RoBERTa's 1") {
    write_config(dir, {{"model_type", "xlm-roberta"}, {"hidden_size", 32}, {"num_attention_heads", 4},
                       {"vocab_size", 50}, {"max_position_embeddings", 34}});
    const auto cfg = load_bert_config(config);
    CHECK(cfg.model_type == "xlm-roberta");
    CHECK(cfg.pad_token_id == 1);
    CHECK(bert_architecture(cfg) == "XLMRobertaModel");
  }
  SECTION("an architecture of another family") {
    write_config(dir, {{"model_type", "roberta"}, {"architectures", json::array({"XLMRobertaModel"})}});
    CHECK_THROWS_WITH(load_bert_config(config),
                      Catch::Contains("architecture \"XLMRobertaModel\" is not a roberta architecture"));
  }
  SECTION("a padding id outside the vocabulary") {
    write_config(dir, {{"model_type", "roberta"}, {"vocab_size", 50}, {"pad_token_id", 50}});
    CHECK_THROWS_WITH(load_bert_config(config), Catch::Contains("pad_token_id 50 is outside the vocabulary"));
  }
  SECTION("no position left after the padding id") {
    write_config(dir, {{"model_type", "roberta"}, {"max_position_embeddings", 2}});
    CHECK_THROWS_WITH(load_bert_config(config), Catch::Contains("max_position_embeddings 2 leaves no position"));
  }
  SECTION("a BertConfig of an unknown family") {
    BertConfig cfg;
    cfg.model_type = "deberta";
    CHECK_THROWS_WITH(Bert(cfg), Catch::Contains("model_type \"deberta\" is not supported"));
  }
}
