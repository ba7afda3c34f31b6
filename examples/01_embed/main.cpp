// Load a sentence-transformers model from disk, embed a few texts, rank packages for a
// query, and export the model as a sentence-transformers folder.
//   embed [MODEL_DIR] [OUT_DIR]     (defaults: models/all-MiniLM-L6-v2, out/embed-export)
#include <contaccum/contaccum.hpp>

#include "../common/args.hpp"

#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

namespace ca = contaccum;

int main(int argc, char** argv) try {
  if (example::wants_help(argc, argv)) {
    std::cout << "usage: embed [MODEL_DIR] [OUT_DIR]\n  embeds a few passages and a query with a sentence-transformers "
                 "folder (default models/all-MiniLM-L6-v2), then exports it to OUT_DIR (default out/embed-export)\n";
    return 0;
  }
  ca::detail::require(argc <= 3, "embed takes at most two arguments, got ", argc - 1, " ('", argc > 3 ? argv[3] : "",
                      "' is one too many)\nusage: embed [MODEL_DIR] [OUT_DIR]");
  const std::string model_dir = argc > 1 ? argv[1] : "models/all-MiniLM-L6-v2";
  const std::string out_dir = argc > 2 ? argv[2] : "out/embed-export";

  // 1. The folder says how it pools; the reader is a compile-time policy, checked against it.
  using Reader = ca::Normalized<ca::MeanPooling>;
  const auto st = ca::read_sentence_transformer_config(model_dir);
  ca::require_pooling<Reader>(st, model_dir);

  // 2. Encoder weights and tokenizer, straight from the Hugging Face files.
  ca::Bert bert = ca::load_bert(model_dir);
  const auto tokenizer = ca::tokenizers::load_tokenizer(model_dir);
  ca::tokenizers::require_fits_model(tokenizer, bert->config().vocab_size, model_dir);
  std::cout << "tokens of a query: ";
  for (const auto& t : tokenizer.tokenize("Tokenizers for retrieval models")) std::cout << t << ' ';
  std::cout << "\n";

  // 3. Embed passages and a query; rows are unit vectors, so dot products are cosines.
  const std::vector<std::string> passages{
      "GNU C compiler: the GNU C compiler, a fairly portable optimizing compiler for C",
      "lightweight web browser based on WebKit with vi-like key bindings",
      "PostgreSQL object-relational SQL database, client programs",
      "tool to download files over HTTP, HTTPS and FTP from the command line",
  };
  const std::string query = "fetch a file from a web server in the terminal";
  const ca::EmbedOptions options{.batch_size = 32, .max_length = static_cast<std::size_t>(st.max_seq_length)};
  const torch::Tensor p = ca::embed_texts(bert, Reader{}, tokenizer, passages, options);                 // (4, H)
  const torch::Tensor q = ca::embed_texts(bert, Reader{}, tokenizer, std::vector{query}, options);      // (1, H)
  const torch::Tensor scores = torch::matmul(q, p.t()).squeeze(0);                                       // (4,)
  std::cout << "query: " << query << "\n";
  const auto order = scores.argsort(0, /*descending=*/true);
  for (int64_t i = 0; i < order.size(0); ++i) {
    const auto k = order[i].item<int64_t>();
    std::cout << "  " << std::fixed << std::setprecision(3) << scores[k].item<float>() << "  "
              << passages[static_cast<std::size_t>(k)] << "\n";
  }

  // 4. Export: sentence-transformers and transformers load this folder.
  ca::save_sentence_transformer<Reader>(bert, model_dir, out_dir, st.max_seq_length);
  std::cout << "exported to " << out_dir << " (SentenceTransformer(\"" << out_dir << "\") loads it)\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
