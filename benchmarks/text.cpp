// Text-side throughput of contaccum on one CPU, for the side-by-side comparison with the
// Python references that scripts/bench.sh --text runs (benchmarks/text_reference.py):
//   - tokenizers: lines/s and tokens/s, one thread, WordPiece (all-MiniLM-L6-v2),
//     byte-level BPE (a tokenizer.json trained by HF tokenizers on the same text) and
//     Unigram (a SentencePiece model trained on the same text, converted as XLM-R's);
//   - embedding: sentences/s of embed_texts (our tokenizer + BERT + mean pooling +
//     normalisation) with all-MiniLM-L6-v2, batch 32, max 256 tokens, like
//     sentence-transformers' encode().
// Prints one JSON object.
//   bench_text LINES MODEL_DIR BPE_JSON ENCODE_N ROUNDS THREADS [UNIGRAM_JSON]
#include <contaccum/checkpoint/load_bert.hpp>
#include <contaccum/encoders/embed.hpp>
#include <contaccum/pooling/mean.hpp>
#include <contaccum/pooling/normalized.hpp>
#include <contaccum/tokenizers/tokenizers.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class T>
nlohmann::json time_tokenizer(const T& tok, const std::vector<std::string>& lines, int rounds) {
  std::size_t tokens = 0;
  for (const auto& l : lines) tokens += tok.encode(l).size();  // warm-up (and the BPE cache)
  double best = 1e30;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t n = 0;
    for (const auto& l : lines) n += tok.encode(l).size();
    best = std::min(best, seconds_since(t0));
    if (n != tokens) throw std::runtime_error("token count changed between rounds");
  }
  return {{"lines", lines.size()}, {"tokens", tokens}, {"seconds", best},
          {"lines_per_s", static_cast<double>(lines.size()) / best}, {"tokens_per_s", static_cast<double>(tokens) / best}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7 && argc != 8) {
    std::cerr << "usage: bench_text LINES MODEL_DIR BPE_JSON ENCODE_N ROUNDS THREADS [UNIGRAM_JSON]\n";
    return 2;
  }
  const std::string lines_path = argv[1], model_dir = argv[2], bpe_path = argv[3];
  const auto encode_n = static_cast<std::size_t>(std::stoul(argv[4]));
  const int rounds = std::stoi(argv[5]), threads = std::stoi(argv[6]);
  std::vector<std::string> lines;
  {
    std::ifstream in(lines_path);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  nlohmann::json out;
  const auto wp = contaccum::tokenizers::WordPiece::from_pretrained(model_dir);
  out["wordpiece"] = time_tokenizer(wp, lines, rounds);
  const auto bpe = contaccum::tokenizers::ByteLevelBpe::from_tokenizer_json(bpe_path);
  out["bpe"] = time_tokenizer(bpe, lines, rounds);
  if (argc == 8) {
    const auto unigram = contaccum::tokenizers::Unigram::from_tokenizer_json(argv[7]);
    out["unigram"] = time_tokenizer(unigram, lines, rounds);
  }

  torch::set_num_threads(threads);
  auto bert = contaccum::load_bert(model_dir);
  const std::vector<std::string> sentences(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(std::min(encode_n, lines.size())));
  const contaccum::Normalized<contaccum::MeanPooling> reader{};
  const contaccum::EmbedOptions options{.batch_size = 32, .max_length = 256};
  (void)contaccum::embed_texts(bert, reader, wp, std::vector<std::string>(sentences.begin(), sentences.begin() + 64), options);
  double best = 1e30;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto e = contaccum::embed_texts(bert, reader, wp, sentences, options);
    best = std::min(best, seconds_since(t0));
    if (e.size(0) != static_cast<int64_t>(sentences.size())) return 1;
  }
  out["encode"] = {{"sentences", sentences.size()}, {"seconds", best},
                   {"sentences_per_s", static_cast<double>(sentences.size()) / best}, {"threads", torch::get_num_threads()}};
  std::cout << out.dump() << std::endl;
  return 0;
}
