#pragma once
// `retrieval search`: answer typed queries with the top packages of the whole corpus.
// The corpus is encoded once per (model, corpus, limit) and cached as a safetensors file;
// later searches load it and only encode the query.

#include "job.hpp"

#include <unistd.h>

#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace retrieval {

inline constexpr const char* search_usage =
    "retrieval search [--model DIR] [--data DIR] [--index-dir DIR] [--limit N] [--k N] [--rebuild] [--dedupe] [query ...]\n"
    "  (no query: one query per line from standard input; :q or end of input ends)\n"
    "  --dedupe  one row per package family (foo, foo-doc, libfoo2, python3-foo): the best hit of\n"
    "            a family stands for it and names the others; without it every hit is listed";

namespace detail {

// What the cached embeddings depend on: the model's weights, the corpus file, how many
// passages and how they were cut. A change in any of them makes a new index.
inline std::string index_fingerprint(const fs::path& model, const fs::path& corpus, int64_t limit, std::size_t max_len) {
  std::ostringstream s;
  s << file_stamp(model / "model.safetensors", "search") << "|" << file_stamp(corpus, "search") << "|limit=" << limit << "|max_length=" << max_len;
  return s.str();
}

// The family a Debian package belongs to: its name without the split-package suffixes
// (-dev, -doc, -data, -common, ...), a trailing soname version, and the language or
// "lib" prefixes. libfoo2, libfoo-dev, foo-doc and python3-foo are all "foo".
inline std::string package_family(std::string name) {
  for (const std::string_view prefix : {"python3-", "python-", "ruby-", "node-", "golang-", "r-cran-", "lib"})
    if (name.size() > prefix.size() + 1 && name.starts_with(prefix)) {
      name.erase(0, prefix.size());
      break;
    }
  for (bool changed = true; changed;) {
    changed = false;
    for (const std::string_view suffix : {"-dev", "-doc", "-dbg", "-data", "-common", "-bin", "-utils", "-tools",
                                          "-examples", "-l10n", "-plugins", "-perl", "-java"})
      if (name.size() > suffix.size() + 1 && name.ends_with(suffix)) {
        name.resize(name.size() - suffix.size());
        changed = true;
      }
  }
  // a soname version: libfoo2 and libfoo2.1 are foo; a name that is all digits stays
  auto end = name.find_last_not_of("0123456789.");
  if (end != std::string::npos && end + 1 < name.size()) {
    if (name[end] == '-') --end;  // libfoo-2
    if (end != std::string::npos) name.resize(end + 1);
  }
  return name;
}

inline std::string short_line(const std::string& text, std::size_t width) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > width) {
    line.resize(width);
    while (!line.empty() && (static_cast<unsigned char>(line.back()) & 0xC0) == 0x80) line.pop_back();  // UTF-8 tail
    if (!line.empty()) line.pop_back();
    line += "...";
  }
  return line;
}

}  // namespace detail

inline int search(Args& args) {
  const fs::path model_dir = args.text("--model", "out/main/model");
  const fs::path data = args.text("--data", "data/debian-beir");
  const fs::path index_dir = args.text("--index-dir", "out/search-index");
  const int64_t limit = args.integer("--limit", std::numeric_limits<int64_t>::max());
  const int64_t k = args.integer("--k", 10);
  const bool rebuild = args.flag("--rebuild");  // encode the corpus even when a cached index matches
  const bool dedupe = args.flag("--dedupe");
  args.check_all_used(search_usage);
  ca::detail::require(fs::exists(model_dir / "model.safetensors"), "search: no model at ", model_dir.string(),
                      " (train one with `bash scripts/main.sh`, or pass --model models/all-MiniLM-L6-v2)");

  // The corpus, in file order, and the packages' short descriptions (the dataset's queries
  // of every split) to show next to each hit.
  std::vector<ca::Passage> corpus;
  for (auto&& p : ca::beir_corpus(data / "corpus.jsonl")) {
    if (static_cast<int64_t>(corpus.size()) >= limit) break;
    corpus.push_back(std::move(p));
  }
  std::unordered_map<std::string, std::string> summary;
  for (auto&& q : ca::beir_queries(data / "queries.jsonl")) summary.emplace(q.id, q.text);

  const auto st = ca::read_sentence_transformer_config(model_dir);
  ca::require_pooling<Reader>(st, model_dir.string());
  auto encoder = ca::load_bert(model_dir);
  const auto tok = ca::tokenizers::load_tokenizer(model_dir);
  ca::tokenizers::require_fits_model(tok, encoder->config().vocab_size, model_dir.string());
  // The model's prompts (saved by the main job's export) are applied as in training.
  const ca::TokenizeConfig tokenize{.query_max_length = 32, .passage_max_length = 128,
                                    .query_prompt = st.query_prompt, .passage_prompt = st.document_prompt};

  const auto fingerprint =
      detail::index_fingerprint(model_dir, data / "corpus.jsonl", static_cast<int64_t>(corpus.size()),
                                tokenize.passage_max_length) +
      "\npassage prompt: " + tokenize.passage_prompt;
  std::ostringstream name;
  name << "index-" << std::hex << std::setw(16) << std::setfill('0') << std::hash<std::string>{}(fingerprint)
       << ".safetensors";
  const fs::path index_file = index_dir / name.str();
  // A cached index is used only when its fingerprint matches and its rows are whole
  // (load_embedding_cache checks the checksum of the embedding bytes, so a damaged, zeroed
  // or copied-over row is caught); any doubt rebuilds it, saying why.
  torch::Tensor docs;  // (N, H), L2-normalised
  std::string stale = "--rebuild";  // why the cached index is not used; empty: use it
  if (!rebuild) {
    auto cached = ca::load_embedding_cache(index_file, fingerprint, static_cast<int64_t>(corpus.size()));
    stale = cached.why_not;
    docs = cached.embeddings;
  }
  if (stale.empty()) {
    std::cout << "index: " << docs.size(0) << " passages loaded from " << index_file.string() << std::endl;
  } else {
    std::cout << "index: encoding " << corpus.size() << " passages with " << model_dir.string() << " ("
              << (fs::exists(index_file) ? "the cached index is not used: " + stale : stale) << "; cached in "
              << index_file.string() << ")" << std::endl;
    std::vector<std::string> texts;
    texts.reserve(corpus.size());
    for (const auto& p : corpus) texts.push_back(ca::passage_text(p, tokenize));
    Progress bar("index", static_cast<int64_t>(texts.size()));
    docs = ca::embed_texts(encoder, Reader{}, tok, texts,
                           {.batch_size = 64, .max_length = tokenize.passage_max_length, .progress = bar.callback()})
               .contiguous();
    ca::save_embedding_cache(index_file, docs, fingerprint);
  }

  auto answer = [&](const std::string& query) {
    const auto q = ca::embed_texts(encoder, Reader{}, tok, std::vector<std::string>{ca::query_text(query, tokenize)},
                                   {.max_length = tokenize.query_max_length});  // (1, H)
    // --dedupe looks deeper, so k families remain after the collapse
    const int64_t depth = std::min<int64_t>(docs.size(0), dedupe ? std::max<int64_t>(k * 8, 50) : k);
    const auto top = ca::exact_search(q, docs, {.k = depth});
    struct Row {
      std::size_t doc;
      float score;
      std::vector<std::string> family;  // the collapsed hits of its family (--dedupe)
    };
    std::vector<Row> rows;
    std::unordered_map<std::string, std::size_t> row_of_family;
    for (int64_t r = 0; r < top.indices.size(1); ++r) {
      const auto doc = static_cast<std::size_t>(top.indices[0][r].item<int64_t>());
      if (dedupe) {
        auto family = detail::package_family(corpus[doc].id);
        if (const auto it = row_of_family.find(family); it != row_of_family.end()) {
          rows[it->second].family.push_back(corpus[doc].id);
          continue;
        }
        if (static_cast<int64_t>(rows.size()) == k) continue;  // past k: only shown families still collect hits
        row_of_family.emplace(std::move(family), rows.size());
      } else if (static_cast<int64_t>(rows.size()) == k) {
        break;
      }
      rows.push_back({doc, top.scores[0][r].item<float>(), {}});
    }
    std::cout << "\nquery: " << query << "\n" << std::setw(4) << "#" << "  " << std::setw(6) << "score" << "  "
              << std::left << std::setw(28) << "package" << std::right << "  short description\n";
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const auto& p = corpus[rows[r].doc];
      const auto it = summary.find(p.id);
      std::cout << std::setw(4) << r + 1 << "  " << std::fixed << std::setprecision(4) << rows[r].score << "  "
                << std::left << std::setw(28) << p.id << std::right << "  "
                << detail::short_line(it != summary.end() ? it->second : p.text, 70) << "\n";
      if (!rows[r].family.empty()) {
        std::cout << "                  also:";
        for (const auto& id : rows[r].family) std::cout << " " << id;
        std::cout << "\n";
      }
    }
    std::cout << std::flush;
  };
  if (!args.positional.empty()) {
    for (const auto& q : args.positional) answer(q);
    return 0;
  }
  const bool interactive = ::isatty(0) != 0;
  if (interactive) std::cout << "\n(one query per line; :q or end of input ends)" << std::flush;
  std::string line;
  for (std::size_t line_no = 1;; ++line_no) {
    if (interactive) std::cout << "\nquery> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == ":q") break;
    if (line.empty()) continue;
    try {
      answer(line);
    } catch (const ca::invalid_input& e) {  // one bad line (not UTF-8, say) does not end the session
      std::cerr << "search: standard input line " << line_no << " skipped: " << e.what() << std::endl;
    }
  }
  return 0;
}

}  // namespace retrieval
