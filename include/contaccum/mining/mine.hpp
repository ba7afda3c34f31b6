#pragma once
/// \file
/// \brief Hard-negative mining with a model: encode the corpus and the queries, select
///        negatives (mining/hard_negatives.hpp), give each training example its mined
///        hard negatives, and optionally write them as JSONL the readers load again.
///
/// On a large corpus the encoding is the long part, so it is resumable: with a
/// `cache_dir`, embeddings are written there in shards of `shard_rows` texts, each an
/// embedding cache (eval/embedding_cache.hpp: key, rows, checksum) keyed by the caller's
/// `cache_key` (what the model is) and a checksum of the shard's texts. A killed run
/// started again encodes only the shards that are missing or do not match.
///
/// \code
/// auto mined = contaccum::mine_hard_negatives(bert, contaccum::Normalized<contaccum::MeanPooling>{}, tok,
///                                            examples, corpus,
///                                            {.num_negatives = 1, .relative_margin = 0.05},
///                                            {.cache_dir = "out/mining", .cache_key = "all-MiniLM-L6-v2"});
/// contaccum::PairSampler sampler(mined.examples, {.hard_negatives_per_query = 1});
/// contaccum::write_training_jsonl("mined.jsonl", mined.examples);
/// \endcode

#include <contaccum/data/loader.hpp>
#include <contaccum/data/records.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/concepts.hpp>
#include <contaccum/encoders/embed.hpp>
#include <contaccum/eval/embedding_cache.hpp>
#include <contaccum/mining/hard_negatives.hpp>
#include <contaccum/pooling/concepts.hpp>
#include <contaccum/state/detail/files.hpp>
#include <contaccum/tokenizers/concepts.hpp>
#include <contaccum/train/progress.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

namespace contaccum {

/// \brief How a mining run encodes and where it keeps its work.
struct MiningRun {
  TokenizeConfig tokenize{};        ///< query/passage lengths and titles, as in training
  std::int64_t batch_size = 64;     ///< texts per forward
  std::filesystem::path cache_dir;  ///< empty: nothing kept; else encoded shards live here (a rerun resumes)
  std::string cache_key;            ///< what the embeddings depend on besides the texts (the model: path, size, time)
  std::int64_t shard_rows = 4096;   ///< texts per cached shard
  bool progress = true;             ///< progress bars on stderr
  bool keep_existing = false;       ///< add the mined negatives to the examples' own instead of replacing them
};

/// \brief The examples with their mined hard negatives, and what the mining did.
struct MiningResult {
  std::vector<TextExample> examples;  ///< in the order given
  MiningStats stats;
  std::int64_t corpus_rows = 0;      ///< passages searched (the corpus plus positives it lacked)
  std::int64_t shards_encoded = 0;   ///< shards encoded by this call
  std::int64_t shards_reused = 0;    ///< shards taken from cache_dir
};

namespace detail {

// Embeddings of `texts` in shards, each reused from `run.cache_dir` when whole and made
// from the same texts and key; (N, H) float32 on the encoder's device.
template <Encoder E, Pooler P, tokenizers::Tokenizer T>
torch::Tensor encode_in_shards(E& encoder, const P& reader, const T& tok, const std::vector<std::string>& texts,
                               std::size_t max_length, const std::string& kind, const MiningRun& run,
                               MiningResult& result) {
  require(run.shard_rows > 0, "MiningRun.shard_rows must be positive, got ", run.shard_rows);
  const auto n = static_cast<std::int64_t>(texts.size());
  const auto shards = (n + run.shard_rows - 1) / run.shard_rows;
  std::vector<torch::Tensor> parts(static_cast<std::size_t>(shards));
  std::vector<std::string> keys(parts.size());
  std::int64_t done = 0;
  for (std::int64_t s = 0; s < shards; ++s) {
    const auto b = s * run.shard_rows, e = std::min(n, b + run.shard_rows);
    uint64_t h = checksum64(kind);
    for (auto i = b; i < e; ++i) h = checksum64(texts[static_cast<std::size_t>(i)], checksum64("\x1f", h));
    keys[static_cast<std::size_t>(s)] =
        cat(run.cache_key, "|", kind, "|max_length=", max_length, "|rows=", b, "-", e, "|texts=", hex64(h));
    if (run.cache_dir.empty()) continue;
    auto cached = load_embedding_cache(run.cache_dir / cat(kind, "-", s, ".safetensors"), keys[static_cast<std::size_t>(s)], e - b);
    if (cached) {
      parts[static_cast<std::size_t>(s)] = cached.embeddings;
      ++result.shards_reused;
      done += e - b;
    }
  }
  ProgressBar bar("mining: " + kind, n, done);
  if (run.progress && done < n) bar.update(done);
  const auto params = encoder->parameters();
  const auto device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
  for (std::int64_t s = 0; s < shards; ++s) {
    auto& part = parts[static_cast<std::size_t>(s)];
    const auto b = s * run.shard_rows, e = std::min(n, b + run.shard_rows);
    if (part.defined()) {
      part = part.to(device);
      continue;
    }
    const std::vector<std::string> slice(texts.begin() + b, texts.begin() + e);
    const auto base = done;
    part = embed_texts(encoder, reader, tok, slice,
                       {.batch_size = run.batch_size, .max_length = max_length,
                        .progress = [&](std::size_t d, std::size_t) {
                          if (run.progress) bar.update(base + static_cast<std::int64_t>(d));
                        }})
               .to(torch::kFloat);
    done += e - b;
    ++result.shards_encoded;
    if (!run.cache_dir.empty())
      save_embedding_cache(run.cache_dir / cat(kind, "-", s, ".safetensors"), part, keys[static_cast<std::size_t>(s)]);
  }
  if (parts.empty()) return torch::empty({0, 0});
  return torch::cat(parts);
}

}  // namespace detail

/// \brief Mines `config.num_negatives` hard negatives for every example from `corpus`
///        with the model (encoder + reader + tokenizer).
///
/// A positive is found in the corpus by its id (when it has one) or else by its text; a
/// positive the corpus lacks is added to the searched rows, so it is scored and never
/// mined. Every corpus row whose text equals a positive's is a positive too (a copied
/// document is not a negative).
template <Encoder E, Pooler P, tokenizers::Tokenizer T>
[[nodiscard]] MiningResult mine_hard_negatives(E& encoder, const P& reader, const T& tok,
                                               std::vector<TextExample> examples, const std::vector<Passage>& corpus,
                                               const MiningConfig& config, const MiningRun& run = {}) {
  MiningResult result;
  if (examples.empty()) return result;
  std::vector<Passage> rows(corpus.begin(), corpus.end());
  std::vector<std::string> texts;
  texts.reserve(rows.size());
  std::unordered_map<std::string, std::int64_t> by_id;
  std::unordered_map<std::string, std::vector<std::int64_t>> by_text;
  auto add_row = [&](const Passage& p) {
    const auto r = static_cast<std::int64_t>(texts.size());
    texts.push_back(passage_text(p, run.tokenize));
    if (!p.id.empty()) by_id.emplace(p.id, r);
    by_text[texts.back()].push_back(r);
    return r;
  };
  for (const auto& p : rows) add_row(p);
  std::vector<std::vector<std::int64_t>> positives(examples.size());
  std::vector<std::string> queries;
  queries.reserve(examples.size());
  for (std::size_t i = 0; i < examples.size(); ++i) {
    detail::require(!examples[i].positives.empty(), "mine_hard_negatives: example ", i, " (query id \"", examples[i].query_id,
            "\") has no positive");
    queries.push_back(query_text(examples[i].query, run.tokenize));
    auto& pos = positives[i];
    for (const auto& p : examples[i].positives) {
      const auto text = passage_text(p, run.tokenize);
      std::int64_t r = -1;
      if (auto it = by_id.find(p.id); !p.id.empty() && it != by_id.end()) r = it->second;
      else if (auto jt = by_text.find(text); jt != by_text.end()) r = jt->second.front();
      else {
        r = add_row(p);
        rows.push_back(p);
      }
      pos.push_back(r);
      for (auto dup : by_text[text]) pos.push_back(dup);
    }
    std::sort(pos.begin(), pos.end());
    pos.erase(std::unique(pos.begin(), pos.end()), pos.end());
  }
  result.corpus_rows = static_cast<std::int64_t>(texts.size());

  const auto docs =
      detail::encode_in_shards(encoder, reader, tok, texts, run.tokenize.passage_max_length, "corpus", run, result);
  const auto qs =
      detail::encode_in_shards(encoder, reader, tok, queries, run.tokenize.query_max_length, "queries", run, result);
  ProgressBar bar("mining: search", static_cast<std::int64_t>(texts.size()));
  const auto mined = select_hard_negatives(qs, docs, positives, config, [&](const SearchProgress& p) {
    if (run.progress) bar.update(p.done);
  });
  result.stats = mined.stats;
  for (std::size_t i = 0; i < examples.size(); ++i) {
    auto& negs = examples[i].hard_negatives;
    if (!run.keep_existing) negs.clear();
    for (const auto& m : mined.per_query[i]) negs.push_back(rows[static_cast<std::size_t>(m.row)]);
  }
  result.examples = std::move(examples);
  return result;
}

/// \brief Writes examples as JSONL training records ({"query_id", "query", "pos", "neg"},
///        passages as {"_id", "title", "text"}), atomically: read_jsonl / read_training_examples
///        read them back as they were (answers and random negatives are not written).
inline void write_training_jsonl(const std::filesystem::path& file, const std::vector<TextExample>& examples) {
  auto passage = [](const Passage& p) {
    nlohmann::json j{{"text", p.text}};
    if (!p.id.empty()) j["_id"] = p.id;
    if (!p.title.empty()) j["title"] = p.title;
    return j;
  };
  std::string out;
  for (const auto& e : examples) {
    nlohmann::json j{{"query_id", e.query_id}, {"query", e.query}, {"pos", nlohmann::json::array()},
                     {"neg", nlohmann::json::array()}};
    for (const auto& p : e.positives) j["pos"].push_back(passage(p));
    for (const auto& p : e.hard_negatives) j["neg"].push_back(passage(p));
    try {
      out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
    } catch (const nlohmann::json::exception&) {
      throw error(detail::cat("write_training_jsonl(", file.string(), "): the example with query id \"", e.query_id,
                              "\" holds text that is not UTF-8; nothing was written"));
    }
    out += '\n';
  }
  detail::write_file_atomically(file, out);
}

}  // namespace contaccum
