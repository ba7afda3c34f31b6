// Hardening regressions (issue 16, second part): each case is one input a careless or
// hostile user gave that crashed, hung or gave silent garbage, and now fails at once with an
// error naming the file and the field (or, where the input is legitimate, works).

#include "support/helpers.hpp"
#include "support/tiny_trainer.hpp"

#include <contaccum/contaccum.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>

namespace ca = contaccum;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

void write_text(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << text;
}

// A tiny BERT folder (config.json + model.safetensors) written by save_bert.
fs::path tiny_bert_folder(const std::string& name) {
  const auto dir = test::scratch_dir(name);
  torch::manual_seed(1);
  ca::save_bert(ca::Bert(test::tiny_bert(0.0)), dir);
  return dir;
}

}  // namespace

TEST_CASE("config.json sizes beyond sane limits are refused before allocating, the field named",
          "[hardening][errors]") {
  const auto dir = tiny_bert_folder("hardening_sizes");
  const auto config = ca::detail::read_json_file(dir / "config.json");
  auto with = [&](const char* key, nlohmann::json value) {
    auto j = config;
    j[key] = std::move(value);
    return test::error_of([&] { (void)ca::bert_config_from_json(j, "my/config.json"); });
  };
  CHECK_THAT(with("num_hidden_layers", 1000000), Contains("my/config.json: num_hidden_layers 1000000 is beyond the limit of 1024"));
  CHECK_THAT(with("vocab_size", int64_t{1} << 40), Contains("my/config.json: vocab_size 1099511627776 is beyond the limit"));
  CHECK_THAT(with("max_position_embeddings", int64_t{1} << 30), Contains("max_position_embeddings"));
  CHECK_THAT(with("type_vocab_size", -2), Contains("type_vocab_size must be positive, got -2"));
  // each size within its own bound, together far too many parameters
  auto j = config;
  j["hidden_size"] = 65536;
  j["num_attention_heads"] = 64;
  j["num_hidden_layers"] = 1024;
  CHECK_THAT(test::error_of([&] { (void)ca::bert_config_from_json(j, "my/config.json"); }),
             Contains("my/config.json: the config describes about") && Contains("parameters"));
  // the same bounds hold for GPT-NeoX's config.json
  ca::GptNeoxConfig g{.vocab_size = 64, .hidden_size = 32, .num_hidden_layers = 2000000, .num_attention_heads = 4,
                      .intermediate_size = 64};
  CHECK_THAT(test::error_of([&] { (void)ca::GptNeox(g); }), Contains("GptNeoxConfig: num_hidden_layers 2000000 is beyond"));
}

TEST_CASE("BertConfig and GptNeoxConfig reject out-of-range numbers with the field named", "[hardening][errors]") {
  auto bert_error = [](auto edit) {
    auto c = test::tiny_bert(0.1);
    edit(c);
    return test::error_of([&] { (void)ca::Bert(c); });
  };
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  CHECK_THAT(bert_error([](auto& c) { c.hidden_dropout_prob = 1.5; }),
             Contains("BertConfig: hidden_dropout_prob must be in [0, 1), got 1.5"));
  CHECK_THAT(bert_error([&](auto& c) { c.attention_probs_dropout_prob = nan; }),
             Contains("attention_probs_dropout_prob must be in [0, 1)"));
  CHECK_THAT(bert_error([](auto& c) { c.initializer_range = -0.02; }),
             Contains("BertConfig: initializer_range must be >= 0 and finite, got -0.02"));
  CHECK_THAT(bert_error([](auto& c) { c.layer_norm_eps = 0; }), Contains("layer_norm_eps must be positive and finite, got 0"));
  CHECK_THAT(bert_error([&](auto& c) { c.layer_norm_eps = inf; }), Contains("layer_norm_eps must be positive and finite"));
  CHECK_THAT(bert_error([](auto& c) { c.num_attention_heads = 5; }), Contains("hidden_size 32 is not a multiple of num_attention_heads 5"));

  // through config.json the file is named
  const auto dir = tiny_bert_folder("hardening_numbers");
  auto j = ca::detail::read_json_file(dir / "config.json");
  j["layer_norm_eps"] = -1e-12;
  ca::detail::write_json_file(dir / "config.json", j);
  CHECK_THAT(test::error_of([&] { (void)ca::load_bert(dir); }),
             Contains((dir / "config.json").string() + ": layer_norm_eps must be positive and finite, got -1e-12"));

  ca::GptNeoxConfig g{.vocab_size = 64, .hidden_size = 32, .num_hidden_layers = 1, .num_attention_heads = 4,
                      .intermediate_size = 64};
  g.initializer_range = nan;
  CHECK_THAT(test::error_of([&] { (void)ca::GptNeox(g); }), Contains("GptNeoxConfig: initializer_range must be >= 0"));
  g.initializer_range = 0.02;
  g.layer_norm_eps = inf;
  CHECK_THAT(test::error_of([&] { (void)ca::GptNeox(g); }), Contains("GptNeoxConfig: layer_norm_eps must be positive and finite"));
}

TEST_CASE("NaN or Inf weights are refused on load, each tensor named", "[hardening][errors]") {
  const auto dir = tiny_bert_folder("hardening_nan");
  auto tensors = ca::load_safetensors(dir / "model.safetensors");
  std::string damaged;
  for (auto& [name, t] : tensors) {
    if (name.ends_with("word_embeddings.weight")) {
      damaged = name;
      t = t.clone();
      t[3][5] = std::numeric_limits<float>::quiet_NaN();
      t[7][1] = std::numeric_limits<float>::infinity();
    }
  }
  REQUIRE_FALSE(damaged.empty());
  ca::save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  const auto message = test::error_of([&] { (void)ca::load_bert(dir); });
  CHECK_THAT(message, Contains("holds NaN or Inf weights") && Contains(dir.string()) &&
                          Contains(damaged + ": 2 of 3840 values are NaN or Inf"));
}

TEST_CASE("A folder given where a file is expected is named as a folder", "[hardening][errors]") {
  const auto dir = test::scratch_dir("hardening_folder");
  const auto folder = dir / "not-a-file";
  fs::create_directories(folder);
  const std::string is_folder = "it is a folder, not a file";
  CHECK_THAT(test::error_of([&] { (void)ca::detail::read_json_file(folder, "config file"); }),
             Contains("config file " + folder.string() + " cannot be opened: " + is_folder));
  CHECK_THAT(test::error_of([&] { (void)ca::read_all(ca::tsv_examples(folder)); }),
             Contains("TSV file '" + folder.string() + "': cannot open it: " + is_folder));
  CHECK_THAT(test::error_of([&] { (void)ca::read_all(ca::jsonl_examples(folder)); }), Contains(is_folder));
  CHECK_THAT(test::error_of([&] { (void)ca::read_all(ca::dpr_examples(folder)); }), Contains(is_folder));
  CHECK_THAT(test::error_of([&] { (void)ca::load_safetensors(folder); }), Contains(folder.string()) && Contains(is_folder));
  CHECK_THAT(test::error_of([&] { (void)ca::tokenizers::WordPiece::from_vocab_file(folder); }), Contains(is_folder));
  CHECK_THAT(test::error_of([&] { (void)ca::read_all(ca::tsv_examples(dir / "missing.tsv")); }),
             Contains("cannot open it: no such file"));
}

TEST_CASE("A line that is not UTF-8 is a malformed record naming file, line and column", "[hardening][errors]") {
  const auto dir = test::scratch_dir("hardening_utf8");
  const auto file = dir / "triples.tsv";
  write_text(file, "what is a compiler\tgcc compiles C\tvim edits text\nbad \xff query\tpassage\tnegative\n"
                   "truncated \xe2\x82\tpassage\tnegative\nsurrogate \xed\xa0\x80\tpassage\tnegative\n"
                   "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\tvalid UTF-8\tof 2, 3 and 4 bytes\n");
  CHECK_THAT(test::error_of([&] { (void)ca::read_all(ca::tsv_examples(file)); }),
             Contains("TSV file '" + file.string() + "' line 2, column 5: not valid UTF-8 (byte 0xff)"));
  auto examples = ca::tsv_examples(file, {.on_error = ca::OnError::skip});
  std::vector<ca::TextExample> kept;
  for (auto&& e : examples) kept.push_back(std::move(e));
  CHECK(kept.size() == 2);
  CHECK(examples.stats().skipped == 3);
  CHECK(kept.back().query == "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
}

TEST_CASE("A UTF-8 byte-order mark is accepted at the start of TSV and qrels files", "[hardening][data]") {
  const auto dir = test::scratch_dir("hardening_bom");
  const std::string bom = "\xEF\xBB\xBF";
  write_text(dir / "corpus.jsonl", bom + R"({"_id": "d1", "title": "gcc", "text": "the GNU C compiler"})" "\n" +
                                       R"({"_id": "d2", "title": "vim", "text": "a text editor"})" "\n");
  write_text(dir / "queries.jsonl", bom + R"({"_id": "q1", "text": "c compiler"})" "\n");
  write_text(dir / "qrels" / "test.tsv", bom + "query-id\tcorpus-id\tscore\nq1\td1\t1\n");
  const auto split = ca::read_beir(dir, "test");
  REQUIRE(split.queries.size() == 1);
  CHECK(split.qrels.at("q1").at("d1") == 1);
  CHECK(split.corpus.size() == 2);

  write_text(dir / "triples.tsv", bom + "q\tp\tn\n");
  const auto [examples, stats] = ca::read_all(ca::tsv_examples(dir / "triples.tsv"));
  REQUIRE(examples.size() == 1);
  CHECK(examples[0].query == "q");
}

TEST_CASE("modules.json and pooling configs of the wrong types name the file and the field", "[hardening][errors]") {
  const auto dir = test::scratch_dir("hardening_modules");
  write_text(dir / "1_Pooling" / "config.json", R"({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": true})");
  auto error_with = [&](const std::string& modules) {
    write_text(dir / "modules.json", modules);
    return test::error_of([&] { (void)ca::read_sentence_transformer_config(dir); });
  };
  const auto where = (dir / "modules.json").string();
  CHECK_THAT(error_with(R"([{"idx": 0, "name": "0", "path": "", "type": 5}])"),
             Contains(where + ": \"modules[0].type\" must be a string, got 5"));
  CHECK_THAT(error_with(R"([3])"), Contains(where + ": modules[0] must be an object"));
  CHECK_THAT(error_with(R"([{"path": ["1_Pooling"], "type": "sentence_transformers.models.Pooling"}])"),
             Contains("\"modules[0].path\" must be a string"));
  CHECK_THAT(error_with(R"({"type": "sentence_transformers.models.Pooling"})"), Contains(where + ": must be a list of modules"));

  write_text(dir / "modules.json", R"([{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])");
  write_text(dir / "1_Pooling" / "config.json", R"({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": "yes"})");
  CHECK_THAT(test::error_of([&] { (void)ca::read_sentence_transformer_config(dir); }),
             Contains((dir / "1_Pooling" / "config.json").string() + ": \"pooling_mode_mean_tokens\" must be true or false"));
  write_text(dir / "1_Pooling" / "config.json", R"({"word_embedding_dimension": "32", "pooling_mode": "mean"})");
  CHECK_THAT(test::error_of([&] { (void)ca::read_sentence_transformer_config(dir); }),
             Contains("\"word_embedding_dimension\" must be an integer, got \"32\""));
  write_text(dir / "1_Pooling" / "config.json", R"({"word_embedding_dimension": 32, "pooling_mode": "mean"})");
  CHECK(ca::read_sentence_transformer_config(dir).pooling_mode == "mean");
}

TEST_CASE("A tokenizer with ids past the model's vocabulary is refused when they meet", "[hardening][errors]") {
  const auto dir = test::scratch_dir("hardening_vocab");
  std::string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
  for (int i = 0; i < 195; ++i) vocab += "tok" + std::to_string(i) + "\n";  // 200 ids, the model has 120
  write_text(dir / "vocab.txt", vocab);
  const auto tok = ca::tokenizers::WordPiece::from_vocab_file(dir / "vocab.txt");
  torch::manual_seed(2);
  ca::Bert bert(test::tiny_bert(0.0));
  const std::vector<std::string> texts{"tok1 tok2", "tok190"};
  CHECK_THAT(test::error_of([&] { (void)ca::embed_texts(bert, ca::MeanPooling{}, tok, texts); }),
             Contains("embed_texts: the tokenizer has 200 token ids (0..199, the highest 'tok194') but the model's "
                      "vocab_size is 120"));
  CHECK_THAT(test::error_of([&] { ca::tokenizers::require_fits_model(tok, 120, "models/x"); }), Contains("models/x: "));
  CHECK_NOTHROW(ca::tokenizers::require_fits_model(tok, 200, "models/x"));
}

// Found by the parser fuzz target (tests/fuzz): a post-processor's special id outside the
// vocabulary was accepted and then put into every encoded sequence, and a JSON number beyond
// double's range escaped the readers as a raw nlohmann out_of_range error.
TEST_CASE("Fuzz findings: special ids outside the vocabulary, JSON numbers beyond double", "[hardening][errors]") {
  const auto dir = test::scratch_dir("hardening_fuzz_findings");
  const fs::path seed = fs::path(CONTACCUM_TEST_DIR) / "fuzz" / "corpus" / "tokenizer" / "wordpiece" / "tokenizer.json";
  const auto json = ca::detail::read_json_file(seed);
  auto with = [&](const std::string& name, auto edit) {
    auto j = json;
    edit(j);
    write_text(dir / name / "tokenizer.json", j.dump());
    return test::error_of([&] { (void)ca::tokenizers::load_tokenizer(dir / name); });
  };
  const auto vocab = ca::tokenizers::load_tokenizer(seed.parent_path()).vocab_size();
  for (const int64_t bad : {int64_t{-2}, int64_t{2147483648}}) {
    CHECK_THAT(with("sep" + std::to_string(bad), [&](nlohmann::json& j) {
                 j["post_processor"]["special_tokens"]["[SEP]"]["ids"][0] = bad;
               }),
               Contains("tokenizer.json: post_processor's special token id " + std::to_string(bad) +
                        " is not an id of the vocabulary (" + std::to_string(vocab) + " ids)"));
  }
  CHECK_THAT(with("bert_processing", [](nlohmann::json& j) {
               j["post_processor"] = {{"type", "BertProcessing"}, {"cls", {"[CLS]", 2}}, {"sep", {"[SEP]", 70000}}};
             }),
             Contains("post_processor's special token id 70000 is not an id of the vocabulary"));

  const auto file = dir / "pairs.jsonl";
  write_text(file, "{\"query\": \"q\", \"pos\": \"p\"}\n{\"query\": \"q\", \"pos\": \"p\", \"score\": 1e3081}\n");
  CHECK_THAT(test::error_of([&] { (void)ca::read_all(ca::jsonl_examples(file)); }),
             Contains("JSONL file '" + file.string() + "' line 2") && Contains("not valid JSON: number overflow"));
  CHECK(ca::read_all(ca::jsonl_examples(file, {.on_error = ca::OnError::skip})).records.size() == 1);
}

TEST_CASE("The embedding cache is used only when whole: key, rows, dtype, checksum", "[hardening][search]") {
  const auto dir = test::scratch_dir("hardening_embedding_cache");
  const auto file = dir / "index.safetensors";
  torch::manual_seed(3);
  const auto rows = torch::nn::functional::normalize(torch::randn({7, 5}),
                                                     torch::nn::functional::NormalizeFuncOptions().dim(1));  // (7, 5)
  CHECK(ca::load_embedding_cache(file, "k", 7).why_not == "none cached yet");
  ca::save_embedding_cache(file, rows, "k");
  const auto back = ca::load_embedding_cache(file, "k", 7);
  REQUIRE(back);
  CHECK(torch::equal(back.embeddings, rows));
  CHECK_THAT(ca::load_embedding_cache(file, "other", 7).why_not, Contains("another model, corpus or limit"));
  CHECK_THAT(ca::load_embedding_cache(file, "k", 8).why_not, Contains("it holds 7 rows for 8 passages"));
  CHECK_THROWS_WITH(ca::save_embedding_cache(file, rows.to(torch::kDouble), "k"), Contains("float32"));

  // one flipped bit in the last row: same shape, same header, caught by the checksum
  auto bytes = ca::detail::read_file_bytes(file);
  bytes[bytes.size() - 3] = static_cast<char>(bytes[bytes.size() - 3] ^ 0x10);
  write_text(file, bytes);
  CHECK_THAT(ca::load_embedding_cache(file, "k", 7).why_not, Contains("its checksum does not match its rows"));
  // cut short: unreadable, a reason naming the file (not an exception)
  write_text(file, bytes.substr(0, bytes.size() / 2));
  CHECK_THAT(ca::load_embedding_cache(file, "k", 7).why_not, Contains("it cannot be read") && Contains(file.string()));
}

TEST_CASE("Embeddings collapsed to one direction are reported in StepStats; healthy ones are not",
          "[hardening][trainer]") {
  auto loader = test::tiny_loader();
  auto trainer = test::make_tiny_trainer<ca::FullBatch<>>(3, test::tiny_trainer_config(), test::tiny_bert(0.0));
  const auto batch = loader.next();
  // by hand, before the step: the mean cosine over distinct pairs of rows, per side
  auto mean_cosine = [](const torch::Tensor& x) {
    const auto u = torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
    const auto n = x.size(0);
    return (u.matmul(u.t()).sum().item<double>() - static_cast<double>(n)) / static_cast<double>(n * (n - 1));
  };
  double expected = 0;
  {
    torch::NoGradGuard no_grad;
    auto& model = trainer.model();
    expected = (mean_cosine(model->encode_queries(batch.queries)) + mean_cosine(model->encode_passages(batch.positives))) / 2;
  }
  const auto healthy = trainer.step(batch);
  CHECK(healthy.embedding_cosine == Approx(expected).margin(1e-5));
  CHECK(healthy.embedding_cosine < 0.99);
  CHECK(healthy.collapse.empty());

  // every LayerNorm outputs its bias alone: every text gets the same embedding
  {
    torch::NoGradGuard no_grad;
    for (auto& item : trainer.model()->named_parameters()) {
      if (item.key().ends_with("LayerNorm.weight")) item.value().zero_();
      if (item.key().ends_with("LayerNorm.bias")) item.value().fill_(0.5);
    }
  }
  const auto collapsed = trainer.step(loader.next());
  CHECK(collapsed.embedding_cosine == Approx(1.0).margin(1e-5));
  CHECK_THAT(collapsed.collapse, Contains("the embeddings have collapsed: their mean pairwise cosine is"));
  std::ostringstream printed;
  printed << collapsed;
  CHECK_THAT(printed.str(), Contains("[warning: the embeddings have collapsed"));
  CHECK(ca::detail::step_record(collapsed, 1.0).contains("collapse"));
  CHECK_FALSE(ca::detail::step_record(healthy, 1.0).contains("collapse"));
}

TEST_CASE("A loss risen to chance level is reported; a model trained from scratch is not; resume keeps the watch",
          "[hardening][trainer]") {
  const double m = 31;  // chance: log(32) = 3.466 nats
  // a fine-tuned model (0.3 nats, 0.087 of chance) whose loss climbs as a too-high learning rate ruins it
  ca::LossWatch watch;
  const std::vector<double> rising = {0.3, 0.4, 0.9, 2.0, 3.2, 3.5, 3.6, 3.6, 3.6};
  int64_t reported_at = -1;
  ca::StateDict saved;
  for (std::size_t i = 0; i < rising.size(); ++i) {
    if (i == 3) watch.save_state(saved, "w.");
    const auto warning = watch.observe(rising[i], m);
    if (!warning.empty() && reported_at < 0) {
      reported_at = static_cast<int64_t>(i);
      CHECK_THAT(warning, Contains("the loss has risen to chance level") && Contains("m = 31") &&
                              Contains("is the learning rate too high?"));
    }
  }
  // recent mean: 0.087, 0.094, 0.135, 0.245, 0.414, 0.563, 0.682, 0.771, 0.838 (>= 0.8 at step 8)
  CHECK(reported_at == 8);
  CHECK(watch.recent() == Approx(0.8384).epsilon(1e-3));
  // a resumed watch (state from before step 3) reports at the same step as the unbroken one
  ca::LossWatch resumed;
  resumed.load_state(ca::StateReader(saved, "test"), "w.");
  int64_t resumed_at = -1;
  for (std::size_t i = 3; i < rising.size(); ++i)
    if (!resumed.observe(rising[i], m).empty() && resumed_at < 0) resumed_at = static_cast<int64_t>(i);
  CHECK(resumed_at == reported_at);
  CHECK(resumed.recent() == watch.recent());

  // from scratch: the loss sits at chance (and the bank grows m) without ever being reported
  ca::LossWatch scratch;
  for (int i = 0; i < 50; ++i) CHECK(scratch.observe(std::log(2.0 + i) * 1.02, 1.0 + i).empty());
  // a healthy fine-tuning run whose loss grows only because the bank fills (m 7 -> 63)
  ca::LossWatch filling;
  for (int i = 0; i < 50; ++i) CHECK(filling.observe(0.2 * std::log(8.0 + i), 7.0 + i).empty());
  // a checkpoint from before the watch existed: it starts again
  ca::StateDict old;
  ca::LossWatch reset = watch;
  reset.load_state(ca::StateReader(old, "old"), "w.");
  CHECK(reset.steps() == 0);
  saved.set("w.recent", std::nan(""));
  CHECK_THROWS_WITH(resumed.load_state(ca::StateReader(saved, "test"), "w."), Contains("field 'w.recent' is nan"));
}

// A full disk under every writer of the library (issue 16: with ENOSPC injected, outputs
// came out as 0-byte files and the run exited 0). Hidden from the default run: ctest's
// enospc.library_writers runs it with tests/enospc/full_disk.c preloaded, which makes
// every write under $CONTACCUM_TEST_FULL_DISK fail with ENOSPC while the variable is set.
TEST_CASE("On a full disk every writer fails naming the file, leaving no partial file", "[.][enospc]") {
  const char* preload = std::getenv("LD_PRELOAD");
  REQUIRE(preload != nullptr);
  REQUIRE(std::string(preload).find("full_disk") != std::string::npos);
  const auto dir = test::scratch_dir("hardening_full_disk");
  struct DiskFull {  // the "disk" is full while this lives
    explicit DiskFull(const fs::path& d) { ::setenv("CONTACCUM_TEST_FULL_DISK", d.c_str(), 1); }
    ~DiskFull() { ::unsetenv("CONTACCUM_TEST_FULL_DISK"); }
  };
  auto failure_of = [&](auto&& write) -> std::string {
    DiskFull full(dir);
    try {
      write();
    } catch (const ca::error& e) {
      return e.what();
    }
    return "(no contaccum error was thrown)";
  };
  auto no_partial_files = [&] {
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      INFO(e.path().string());
      CHECK(e.path().string().find(".tmp-") == std::string::npos);
      if (e.is_regular_file()) CHECK(fs::file_size(e.path()) > 0);
    }
  };
  const std::string enospc = "No space left on device (the disk is full)";

  // replaced atomically: the old content survives
  const auto json_file = dir / "metrics.json";
  ca::detail::write_json_file(json_file, {{"nDCG@10", 0.5}});
  CHECK_THAT(failure_of([&] { ca::detail::write_json_file(json_file, {{"nDCG@10", 0.75}}); }),
             Contains(json_file.filename().string()) && Contains(enospc));
  CHECK(ca::detail::read_json_file(json_file)["nDCG@10"] == 0.5);

  const auto weights = dir / "weights.safetensors";
  ca::save_safetensors(weights, {{"x", torch::ones({4})}});
  CHECK_THAT(failure_of([&] { ca::save_safetensors(weights, {{"x", torch::zeros({4})}}); }),
             Contains("weights.safetensors") && Contains(enospc));
  CHECK(ca::load_safetensors(weights).at("x").equal(torch::ones({4})));

  torch::manual_seed(4);
  ca::Bert bert(test::tiny_bert(0.0));
  CHECK_THAT(failure_of([&] { ca::save_bert(bert, dir / "model"); }), Contains("model") && Contains(enospc));

  ca::Qrels qrels{{"q1", {{"d1", 1}}}};
  CHECK_THAT(failure_of([&] { ca::write_qrels(dir / "qrels.txt", qrels); }), Contains("qrels.txt") && Contains(enospc));

  ca::detail::jsonl_log log(dir / "log.jsonl");
  CHECK_THAT(failure_of([&] { log.write({{"step", 0}}); }), Contains("log.jsonl") && Contains(enospc));

  CHECK_THAT(failure_of([&] { ca::TensorBoardWriter tb(dir / "tb"); }), Contains("tfevents") && Contains("No space left on device"));

  ca::CheckpointFolder run(dir / "checkpoints", {.keep_last = 2});
  ca::StateDict s;
  s.set("step", int64_t{1});
  s.put("t", torch::full({3}, 1.0));
  run.save(1, s);
  s.set("step", int64_t{2});
  CHECK_THAT(failure_of([&] { (void)run.save(2, s); }), Contains("checkpoint-000002") && Contains(enospc));
  const ca::CheckpointFolder reopened(dir / "checkpoints", {.keep_last = 2});
  REQUIRE(reopened.latest().has_value());
  CHECK(reopened.latest()->filename() == "checkpoint-000001");

  fs::remove(dir / "log.jsonl");  // appended, not replaced: empty by design after the failed write
  no_partial_files();
}
