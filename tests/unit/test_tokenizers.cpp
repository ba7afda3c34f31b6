// Tokenizers against the Hugging Face tokenizers library, id for id, on real English text:
// lines of apt's package descriptions (data/debian, made by scripts/setup.sh) plus the
// hand-written edge cases in tests/fixtures/tokenizer_edge_cases.txt. WordPiece uses
// all-MiniLM-L6-v2's files (models/, also from setup); the byte-level BPE tokenizer.json is
// trained by the tokenizers library on the same lines (no GPT-NeoX tokenizer is packaged
// offline), with NFC and added tokens that exercise lstrip / rstrip / single_word; the
// Unigram tokenizer.json is a SentencePiece model trained by sentencepiece on the same
// lines and converted as XLM-R's (Precompiled rules, Metaspace), plus one that the
// tokenizers library trains itself (NFKC, Replace, WhitespaceSplit + Metaspace).
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

#include <contaccum/data/loader.hpp>
#include <contaccum/tokenizers/tokenizers.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace contaccum;
using namespace contaccum::tokenizers;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const fs::path project_dir = fs::path(CONTACCUM_TEST_DIR).parent_path();
const fs::path minilm_dir = project_dir / "models" / "all-MiniLM-L6-v2";

fs::path scratch() { return test::scratch_dir("contaccum_tokenizers"); }

void reference(const std::string& args) { REQUIRE(test::run_python_reference("tokenizer_reference.py", args)); }

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The test text, made once per process: >= 10k description lines + edge cases.
const fs::path& text_file() {
  static const fs::path path = [] {
    const auto translation = project_dir / "data" / "debian" / "Translation-en";
    INFO("run scripts/setup.sh: it puts apt's package descriptions in " << translation);
    REQUIRE(fs::exists(translation));
    const auto lines = scratch() / "lines.txt";
    reference("lines " + translation.string() + " " + lines.string() + " 12000");
    const auto all = scratch() / "all.txt";
    std::ofstream out(all, std::ios::binary);
    out << std::ifstream(lines, std::ios::binary).rdbuf();
    out << std::ifstream(fs::path(CONTACCUM_TEST_DIR) / "fixtures" / "tokenizer_edge_cases.txt", std::ios::binary).rdbuf();
    return all;
  }();
  return path;
}

const fs::path& bpe_json() {
  static const fs::path path = [] {
    (void)text_file();  // trains on the lines it writes
    const auto dir = scratch() / "bpe";
    reference("train-bpe " + (scratch() / "lines.txt").string() + " " + dir.string());
    return dir / "tokenizer.json";
  }();
  return path;
}

const fs::path& unigram_json() {
  static const fs::path path = [] {
    (void)text_file();
    const auto dir = scratch() / "unigram";
    reference("train-unigram " + (scratch() / "lines.txt").string() + " " + dir.string());
    return dir / "tokenizer.json";
  }();
  return path;
}

std::vector<std::vector<int64_t>> reference_ids(const fs::path& tokenizer, std::size_t max_length = 0) {
  const auto out = scratch() / ("ids_" + std::to_string(std::hash<std::string>{}(tokenizer.string())) + "_" +
                                std::to_string(max_length) + ".json");
  reference("encode " + tokenizer.string() + " " + text_file().string() + " " + out.string() +
            (max_length ? " " + std::to_string(max_length) : ""));
  return json::parse(std::ifstream(out)).get<std::vector<std::vector<int64_t>>>();
}

template <class T>
void require_same_ids(const T& tok, const fs::path& ref_tokenizer, std::size_t max_length = 0) {
  const auto lines = read_lines(text_file());
  const auto ref = reference_ids(ref_tokenizer, max_length);
  REQUIRE(lines.size() >= 10000);
  REQUIRE(ref.size() == lines.size());
  std::size_t mismatches = 0, tokens = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto ids = tok.encode(lines[i], {.add_special_tokens = true, .max_length = max_length});
    tokens += ids.size();
    if (ids != ref[i]) {
      if (mismatches < 5) {
        std::string ours, theirs;
        for (const auto id : ids) ours += tok.id_to_token(id) + " ";
        for (const auto id : ref[i]) theirs += tok.id_to_token(id) + " ";
        UNSCOPED_INFO("line " << i << ": " << lines[i] << "\n  ours: " << ours << "\n  HF:   " << theirs);
      }
      ++mismatches;
    }
  }
  CHECK(mismatches == 0);
  CHECK(tokens > lines.size() * 5);  // the comparison covered real token streams
}

void require_message(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    FAIL("no error; expected one containing: " << part);
  } catch (const invalid_input& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find(part) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("Unigram reads a tokenizer.json's scores as the tokenizers library does (a Viterbi tie)", "[tokenizer]") {
  // Scores a Unigram trained by HF tokenizers wrote. "1999" has two best paths of the same
  // pieces, 9 + 99 and 99 + 9, whose sums differ in the last bit. serde_json (the library's
  // JSON parser) reads -9.394697880630327, a 17-digit significand, one unit in the last
  // place off, and the library then encodes "1999" as ▁1 9 99 (tokenizers 0.23.3, this
  // file); the exactly read scores would give ▁1 99 9.
  CHECK(tokenizers::detail::as_serde_json_reads(-9.394697880630327) != -9.394697880630327);
  CHECK(tokenizers::detail::as_serde_json_reads(-9.394697880630327) == Approx(-9.394697880630327).epsilon(1e-15));
  CHECK(tokenizers::detail::as_serde_json_reads(-7.673751346592778) == -7.673751346592778);  // 16 digits: exact
  CHECK(tokenizers::detail::as_serde_json_reads(0.0) == 0.0);
  CHECK(tokenizers::detail::as_serde_json_reads(-1.5e-7) == -1.5e-7);
  const auto path = scratch() / "unigram_serde_tie.json";
  std::ofstream(path, std::ios::trunc) << R"({"version": "1.0", "added_tokens": [], "normalizer": null,
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": true},
    "post_processor": null, "decoder": null,
    "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": false, "vocab": [["<unk>", 0.0],
      ["\u2581", -3.4717717833857407], ["1", -7.176127689638138], ["\u25811", -8.371580455889635],
      ["9", -7.673751346592778], ["99", -9.394697880630327]]}})";
  const auto tok = Unigram::from_tokenizer_json(path);
  std::vector<std::string> pieces;
  for (const auto id : tok.encode("1999", {.add_special_tokens = false})) pieces.push_back(tok.id_to_token(id));
  CHECK(pieces == std::vector<std::string>{"\u25811", "9", "99"});
}

TEST_CASE("Split and Replace patterns with empty matches behave as in HF tokenizers", "[tokenizer]") {
  // Expected values from tokenizers 0.23.3: pre_tokenizers.Split(Regex(p), "isolated") and
  // normalizers.Replace(Regex(p), "-") on the same strings.
  auto pieces = [](const std::string& pattern, std::string_view text) {
    std::vector<std::string> out;
    tokenizers::detail::Pcre2Regex(pattern, "test").split(text, [&](std::string_view piece) { out.emplace_back(piece); });
    return out;
  };
  CHECK(pieces("(?=x)", "abxcdxx") == std::vector<std::string>{"ab", "xcd", "x", "x"});
  CHECK(pieces("x*", "abxxc") == std::vector<std::string>{"a", "b", "xx", "c"});
  CHECK(pieces("(?=\u00e9)", "a\u00e9\u00e9b") == std::vector<std::string>{"a", "\u00e9", "\u00e9b"});
  CHECK(pieces("\\s+", "a  b") == std::vector<std::string>{"a", "  ", "b"});
  auto replaced = [](const std::string& pattern, std::string_view text) {
    return tokenizers::detail::Pcre2Regex(pattern, "test").replace_all(text, "-");
  };
  CHECK(replaced("x*", "abxxc") == "-a-b-c-");
  CHECK(replaced("x*", "xxab") == "-a-b-");
  CHECK(replaced("a|", "bab") == "-b-b-");
  CHECK(replaced("(?=b)", "abab") == "a-ba-b");
  CHECK(replaced("(?=\u00e9)", "a\u00e9\u00e9") == "a-\u00e9-\u00e9");
  CHECK(replaced("\\s+", "a  b ") == "a-b-");
}

TEST_CASE("WordPiece from tokenizer.json gives HF tokenizers' ids on 10k+ real lines", "[tokenizer][python]") {
  INFO("all-MiniLM-L6-v2 is installed by scripts/setup.sh into " << minilm_dir);
  REQUIRE(fs::exists(minilm_dir / "tokenizer.json"));
  const auto tok = WordPiece::from_tokenizer_json(minilm_dir / "tokenizer.json");
  CHECK(tok.vocab_size() == 30522);
  CHECK(tok.pad_id() == 0);
  require_same_ids(tok, minilm_dir / "tokenizer.json");
}

TEST_CASE("WordPiece from vocab.txt equals BertWordPieceTokenizer, with truncation", "[tokenizer][python]") {
  REQUIRE(fs::exists(minilm_dir / "vocab.txt"));
  const auto tok = WordPiece::from_vocab_file(minilm_dir / "vocab.txt");
  require_same_ids(tok, minilm_dir / "vocab.txt");
  SECTION("truncated to 16 ids, specials included") { require_same_ids(tok, minilm_dir / "vocab.txt", 16); }
}

TEST_CASE("Byte-level BPE gives HF tokenizers' ids on 10k+ real lines, added tokens included", "[tokenizer][python]") {
  const auto tok = ByteLevelBpe::from_tokenizer_json(bpe_json());
  require_same_ids(tok, bpe_json());
  SECTION("truncated to 16 ids") { require_same_ids(tok, bpe_json(), 16); }
  SECTION("decoding returns the text") {
    std::size_t checked = 0;
    for (const auto& line : read_lines(text_file())) {
      bool plain = !line.empty();
      for (const char c : line) plain = plain && static_cast<unsigned char>(c) < 0x80 && c >= 0x20;
      if (!plain || line.find('<') != std::string::npos || line.find('[') != std::string::npos) continue;
      CHECK(tok.decode(tok.encode(line, {.add_special_tokens = false})) == line);
      ++checked;
    }
    CHECK(checked > 5000);
  }
}

TEST_CASE("Unigram (SentencePiece, XLM-R's pipeline) gives HF tokenizers' ids on 10k+ real lines",
          "[tokenizer][python]") {
  const auto tok = Unigram::from_tokenizer_json(unigram_json());
  // XLM-R's layout: fairseq's four specials first, <mask> last; padding by <pad>.
  CHECK(tok.vocab_size() == 4002);
  CHECK(tok.id_to_token(0) == "<s>");
  CHECK(tok.pad_id() == 1);
  CHECK(tok.id_to_token(4001) == "<mask>");
  require_same_ids(tok, unigram_json());
  SECTION("truncated to 16 ids") { require_same_ids(tok, unigram_json(), 16); }
  SECTION("the rules normalise and the pieces split as SentencePiece's do") {
    // NFKC folds the ligature and the full-width letters, the circled digit becomes 1;
    // runs of spaces become one ▁; text no piece covers is one <unk>.
    CHECK(tok.tokenize("ﬁle") == tok.tokenize("file"));
    CHECK(tok.tokenize("\xEF\xBC\xA4\xEF\xBD\x85\xEF\xBD\x82") == tok.tokenize("Deb"));  // full-width "Deb"
    CHECK(tok.tokenize("a   b") == tok.tokenize("a b"));
    const auto unknown = tok.encode("\xEA\xB0\x80\xEA\xB0\x81\xEA\xB0\x82", {.add_special_tokens = false});
    CHECK(std::count(unknown.begin(), unknown.end(), 3) == 1);
    CHECK(tok.encode("x", {}).front() == 0);
    CHECK(tok.encode("x", {}).back() == 2);
  }
}

TEST_CASE("Unigram trained by HF tokenizers (NFKC, Replace, WhitespaceSplit + Metaspace) gives its ids",
          "[tokenizer][python]") {
  (void)text_file();
  const auto dir = scratch() / "unigram_hf";
  reference("train-unigram-hf " + (scratch() / "lines.txt").string() + " " + dir.string());
  const auto tok = Unigram::from_tokenizer_json(dir / "tokenizer.json");
  CHECK(tok.vocab_size() <= 3000);
  CHECK(tok.vocab_size() > 2500);
  require_same_ids(tok, dir / "tokenizer.json");
}

TEST_CASE("Unigram tokenizer.json that is wrong gives errors naming the field", "[tokenizer][errors][python]") {
  const auto good = json::parse(std::ifstream(unigram_json()));
  auto write = [&](const std::function<void(json&)>& edit) {
    auto j = good;
    edit(j);
    const auto path = scratch() / "bad_unigram.json";
    std::ofstream(path, std::ios::trunc) << j.dump();
    return path;
  };
  require_message([&] { (void)Unigram::from_tokenizer_json(write([](json& j) { j["model"]["unk_id"] = 99999; })); },
                  "model.unk_id 99999 is not an index of model.vocab (4002 pieces)");
  require_message([&] { (void)Unigram::from_tokenizer_json(write([](json& j) { j["model"]["vocab"][7] = json::array({"x"}); })); },
                  "model.vocab[7] must be [piece, score]");
  require_message([&] {
    (void)Unigram::from_tokenizer_json(write([](json& j) { j["pre_tokenizer"]["prepend_scheme"] = "sometimes"; }));
  }, "Metaspace.prepend_scheme 'sometimes' is not supported");
  require_message([&] {
    (void)Unigram::from_tokenizer_json(write([](json& j) {
      j["normalizer"]["normalizers"][0]["precompiled_charsmap"] = "AAAA!!";
    }));
  }, "precompiled_charsmap: not base64");
  require_message([&] {
    (void)Unigram::from_tokenizer_json(write([](json& j) {
      j["normalizer"]["normalizers"][0]["precompiled_charsmap"] = "/////w==";  // a trie larger than the blob
    }));
  }, "trie size 4294967295 does not fit its 4 bytes");
  require_message([&] { (void)Unigram::from_tokenizer_json(write([](json& j) { j["normalizer"]["type"] = "Nmt"; })); },
                  "normalizer.type 'Nmt' is not supported");
  // Without an unk_id, text no piece covers is an error rather than a dropped character.
  const auto no_unk = Unigram::from_tokenizer_json(write([](json& j) { j["model"]["unk_id"] = nullptr; }));
  require_message([&] { (void)no_unk.encode("\xEA\xB0\x80"); }, "no piece covers");
}

TEST_CASE("load_tokenizer picks the model from the directory", "[tokenizer][python]") {
  const auto wp = load_tokenizer(minilm_dir);
  CHECK(wp.is_wordpiece());
  CHECK(wp.encode("Hello world") == std::vector<int64_t>{101, 7592, 2088, 102});
  const auto bpe = load_tokenizer(bpe_json().parent_path());
  CHECK_FALSE(bpe.is_wordpiece());
  const auto unigram = load_tokenizer(unigram_json().parent_path());
  CHECK(std::holds_alternative<Unigram>(unigram.get()));
  CHECK(unigram.encode("Hello world") == Unigram::from_tokenizer_json(unigram_json()).encode("Hello world"));
  const auto only_vocab = scratch() / "only_vocab";
  fs::create_directories(only_vocab);
  fs::copy_file(minilm_dir / "vocab.txt", only_vocab / "vocab.txt", fs::copy_options::overwrite_existing);
  CHECK(load_tokenizer(only_vocab).encode("Hello world") == wp.encode("Hello world"));
}

TEST_CASE("encode_batch pads right or left and masks the padding", "[tokenizer]") {
  const auto tok = WordPiece::from_tokenizer_json(minilm_dir / "tokenizer.json");
  const std::vector<std::string> texts{"a short one", "a somewhat longer sentence about packages", "x"};
  const auto right = encode_batch(tok, texts);
  REQUIRE(right.input_ids.sizes() == torch::IntArrayRef{3, 8});
  CHECK(right.attention_mask.sum(1).equal(torch::tensor({5, 8, 3}, torch::kLong)));
  for (int64_t i = 0; i < 3; ++i) {
    const auto ids = tok.encode(texts[static_cast<std::size_t>(i)]);
    const auto n = static_cast<int64_t>(ids.size());
    CHECK(right.input_ids[i].slice(0, 0, n).equal(torch::tensor(ids, torch::kLong)));
    CHECK((right.input_ids[i].slice(0, n) == tok.pad_id()).all().item<bool>());
  }
  const auto left = encode_batch(tok, texts, {.padding_side = PaddingSide::left});
  CHECK(left.input_ids[2].slice(0, 5).equal(torch::tensor(tok.encode("x"), torch::kLong)));
  CHECK(left.attention_mask[2].equal(torch::tensor({0, 0, 0, 0, 0, 1, 1, 1}, torch::kLong)));
  const auto rounded = encode_batch(tok, texts, {.max_length = 6, .pad_to_multiple_of = 8});
  CHECK(rounded.input_ids.size(1) == 8);
  CHECK(rounded.attention_mask.sum(1).equal(torch::tensor({5, 6, 3}, torch::kLong)));
  CHECK(rounded.input_ids[1][5].item<int64_t>() == 102);  // [SEP] kept after truncation
  right.validate("batch");
}

TEST_CASE("Tokenizer inputs that are wrong give errors naming the file, line or field", "[tokenizer][errors][python]") {
  const auto dir = scratch() / "bad";
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
    return dir / name;
  };
  require_message([&] { (void)WordPiece::from_vocab_file(dir / "missing.txt"); }, "missing.txt: cannot be opened");
  const auto bad_utf8 = write("vocab_bad.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nok\n\xff\xfe broken\n");
  require_message([&] { (void)WordPiece::from_vocab_file(bad_utf8); }, "vocab_bad.txt:6: vocabulary line is not valid UTF-8");
  const auto no_unk = write("vocab_nounk.txt", "[CLS]\n[SEP]\nhello\n");
  require_message([&] { (void)WordPiece::from_vocab_file(no_unk); }, "the unknown token '[UNK]' is not in the vocabulary");
  require_message([&] { (void)WordPiece::from_vocab_file(write("empty.txt", "")); }, "empty.txt: is empty");

  auto base = json::parse(std::ifstream(bpe_json()));
  auto variant = [&](const std::string& name, const std::function<void(json&)>& edit) {
    auto j = base;
    edit(j);
    return write(name, j.dump());
  };
  require_message([&] { (void)ByteLevelBpe::from_tokenizer_json(write("broken.json", "{\"model\": ")); },
                  "broken.json is not valid JSON");
  require_message([&] { (void)ByteLevelBpe::from_tokenizer_json(variant("merge.json", [](json& j) {
                    j["model"]["merges"][3] = "onlyone";
                  })); }, "model.merges[3] 'onlyone' is not 'left right'");
  require_message([&] { (void)ByteLevelBpe::from_tokenizer_json(variant("merge2.json", [](json& j) {
                    j["model"]["merges"][7] = json::array({"zzqq", "xxyy"});
                  })); }, "model.merges[7] ('zzqq', 'xxyy') uses a token missing from model.vocab");
  require_message([&] { (void)ByteLevelBpe::from_tokenizer_json(variant("dropout.json", [](json& j) {
                    j["model"]["dropout"] = 0.1;
                  })); }, "model.dropout");
  require_message([&] { (void)ByteLevelBpe::from_tokenizer_json(variant("pre.json", [](json& j) {
                    j["pre_tokenizer"] = {{"type", "Whitespace"}};
                  })); }, "pre_tokenizer.type 'Whitespace' is not supported");
  require_message([&] { (void)ByteLevelBpe::from_tokenizer_json(variant("norm.json", [](json& j) {
                    j["normalizer"] = {{"type", "Precompiled"}};
                  })); }, "normalizer.type 'Precompiled' is not supported");
  require_message([&] { (void)ByteLevelBpe::from_tokenizer_json(variant("post.json", [](json& j) {
                    j["post_processor"] = {{"type", "Frobnicate"}};
                  })); }, "post_processor.type 'Frobnicate' is not supported");
  require_message([&] { (void)ByteLevelBpe::from_tokenizer_json(variant("wrongmodel.json", [](json& j) {
                    j["model"]["type"] = "Unigram";
                  })); }, "model.type is 'Unigram', expected BPE");
  require_message([&] { (void)load_tokenizer(dir); }, "has neither tokenizer.json nor vocab.txt");

  const auto tok = ByteLevelBpe::from_tokenizer_json(bpe_json());
  require_message([&] { (void)tok.encode("ok \xC3 then"); }, "text is not valid UTF-8 (byte 4");
  require_message([&] { (void)tok.encode("overlong \xC0\xAF"); }, "not valid UTF-8");
  const auto wp = WordPiece::from_tokenizer_json(minilm_dir / "tokenizer.json");
  require_message([&] { (void)wp.encode("x", {.max_length = 1}); }, "max_length 1 leaves no room for the 2 special tokens");
  require_message([&] { (void)encode_batch(wp, std::vector<std::string>{""}, {.add_special_tokens = false}); },
                  "text 0 gives no tokens");
}

// Issue 16: a negative or huge id wrote out of bounds (resize(id + 1) wrapped around),
// a fractional one was truncated, and max_input_chars_per_word: -1 was taken as 2^64 - 1.
TEST_CASE("Token ids and max_input_chars_per_word out of range in tokenizer.json are named errors", "[tokenizer][errors]") {
  const auto dir = scratch() / "bad_ids";
  fs::create_directories(dir);
  const auto base = json::parse(std::ifstream(minilm_dir / "tokenizer.json"));
  auto variant = [&](const std::string& name, const std::function<void(json&)>& edit) {
    auto j = base;
    edit(j);
    std::ofstream(dir / name) << j.dump();
    return dir / name;
  };
  for (const auto& [name, id] : std::vector<std::pair<std::string, json>>{{"minus1.json", -1},
                                                                          {"minus2.json", -2},
                                                                          {"u64max.json", json(UINT64_MAX)},
                                                                          {"huge.json", json(int64_t{1000000000000})},
                                                                          {"float.json", 1e12},
                                                                          {"fraction.json", 7.5},
                                                                          {"text.json", "7"}}) {
    INFO(name);
    const auto path = variant(name, [&](json& j) { j["model"]["vocab"]["the"] = id; });
    require_message([&] { (void)WordPiece::from_tokenizer_json(path); },
                    name + ": model.vocab gives token 'the' the id " + id.dump());
  }
  require_message([&] { (void)WordPiece::from_tokenizer_json(variant("added.json", [](json& j) {
                    j["added_tokens"][0]["id"] = -5;
                  })); }, "added.json: added_tokens[0].id gives token '[PAD]' the id -5");
  require_message([&] { (void)WordPiece::from_tokenizer_json(variant("chars.json", [](json& j) {
                    j["model"]["max_input_chars_per_word"] = -1;
                  })); }, "chars.json: model.max_input_chars_per_word is -1; it must be an integer >= 1");
  auto bpe = json::parse(std::ifstream(bpe_json()));
  bpe["model"]["vocab"]["ok"] = -1;
  std::ofstream(dir / "bpe.json") << bpe.dump();
  require_message([&] { (void)ByteLevelBpe::from_tokenizer_json(dir / "bpe.json"); },
                  "bpe.json: model.vocab gives token 'ok' the id -1");
}

// Issue 16: with a large max_input_chars_per_word a 20,000-character word took minutes
// (quadratic longest match); no piece longer than the longest token is tried now.
TEST_CASE("WordPiece tries no piece longer than the longest token: a 20,000-character word, spelled out", "[tokenizer]") {
  const auto dir = scratch() / "long_word";
  fs::create_directories(dir);
  auto j = json::parse(std::ifstream(minilm_dir / "tokenizer.json"));
  j["model"]["max_input_chars_per_word"] = 1000000;
  std::ofstream(dir / "tokenizer.json") << j.dump();
  const auto tok = WordPiece::from_tokenizer_json(dir / "tokenizer.json");
  std::string word;
  for (int i = 0; i < 2000; ++i) word += "abcdefghij";  // 20,000 characters
  // Before, the longest match tried every end for every start (hours for this word); now it
  // finishes at once, and the pieces still spell the word out, greedily longest first.
  const auto ids = tok.encode(word, {.add_special_tokens = false});
  REQUIRE(!ids.empty());
  CHECK(ids.front() != *tok.token_to_id("[UNK]"));
  std::string spelled;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto piece = tok.id_to_token(ids[i]);
    if (i > 0) {
      REQUIRE(piece.rfind("##", 0) == 0);
      piece = piece.substr(2);
    }
    spelled += piece;
  }
  CHECK(spelled == word);
  // the first piece is the longest vocabulary entry the word starts with
  const auto first = tok.id_to_token(ids.front());
  for (size_t n = first.size() + 1; n <= 20; ++n) CHECK_FALSE(tok.token_to_id(word.substr(0, n)).has_value());
}

TEST_CASE("tokenize_pairs and PairLoader turn text pairs into step batches", "[tokenizer][data]") {
  const auto tok = WordPiece::from_tokenizer_json(minilm_dir / "tokenizer.json");
  std::vector<TextExample> examples;
  for (int i = 0; i < 10; ++i) {
    std::string long_text;
    for (int w = 0; w < 10 * (i + 1); ++w) long_text += "word" + std::to_string(w) + " ";
    examples.push_back({"q" + std::to_string(i), "query number " + std::to_string(i),
                        {{"d" + std::to_string(i), "pkg" + std::to_string(i), long_text}},
                        {{"n" + std::to_string(i), "", "a negative passage " + std::to_string(i)}}, {}, {}});
  }
  const TokenizeConfig cfg{.query_max_length = 8, .passage_max_length = 24};
  PairLoader<WordPiece> loader(PairSampler(examples, {.seed = 5, .hard_negatives_per_query = 1}), tok,
                               {.batch_size = 4, .tokenize = cfg});
  CHECK(loader.steps_per_epoch() == 2);
  const PairBatch first = loader.next();
  REQUIRE(first.size() == 4);
  CHECK(first.negatives_per_query() == 1);
  CHECK(first.positives.input_ids.size(1) <= 24);
  CHECK(first.queries.input_ids.size(1) <= 8);
  // Row 0 is exactly the tokenized title + text of the positive the sampler drew.
  const PairSampler same(examples, {.seed = 5, .hard_negatives_per_query = 1});
  const TextPair pair = same.sample(same.order(0)[0], 0);
  const auto expect = tok.encode(passage_text(pair.positive, cfg), {.max_length = 24});
  CHECK(first.positives.input_ids[0].slice(0, 0, static_cast<int64_t>(expect.size())).equal(torch::tensor(expect, torch::kLong)));
  CHECK(first.positives.attention_mask[0].sum().item<int64_t>() == static_cast<int64_t>(expect.size()));
  CHECK(passage_text(pair.positive, cfg) == pair.positive.title + " " + pair.positive.text);  // the title leads
  CHECK(passage_text(pair.positive, {.title_in_passage = false}) == pair.positive.text);
  (void)loader.next();
  CHECK(loader.epoch() == 0);
  (void)loader.next();  // 10 examples, batches of 4: the third batch opens epoch 1
  CHECK(loader.epoch() == 1);

  std::vector<TextPair> uneven{same.sample(0, 0), same.sample(1, 0)};
  uneven[1].hard_negatives.clear();
  CHECK_THROWS_WITH(tokenize_pairs(tok, std::span<const TextPair>(uneven)),
                    Catch::Contains("has 0 hard negatives, the first query has 1"));
  CHECK_THROWS_WITH((PairLoader<WordPiece>(PairSampler(examples, {}), tok, {.batch_size = 11})),
                    Catch::Contains("10 examples cannot fill one batch of 11"));
}
