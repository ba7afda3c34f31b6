#pragma once
// `retrieval train --mine-negatives`: before training, the pretrained model mines hard
// negatives for the training queries (contaccum/mining), which then train with m of them
// per query. The pool searched is every positive of the training queries plus seeded
// distractors from the corpus, never a passage judged for a dev or test query.

#include "job.hpp"

#include <contaccum/mining/mine.hpp>

#include <chrono>
#include <ostream>
#include <unordered_set>

namespace retrieval {

struct MineOptions {
  int64_t negatives = 1;       ///< m: mined negatives per query (--negatives)
  int64_t pool = 10000;        ///< passages searched (--mine-corpus): the positives + distractors
  double relative_margin = 0.05;  ///< a candidate within 5% of the positive's score is a likely false negative
  uint64_t seed = 13;
  ca::TokenizeConfig tokenize;
  fs::path model;  ///< for the cache key of the encoded shards
  fs::path out;    ///< the run folder: mining/ (encoded shards, reused by a rerun) and mined.jsonl
};

/// Every positive of `examples`, then seeded passages of `corpus` that are neither one of
/// them nor `held_out`, up to `size` passages in all.
inline std::vector<ca::Passage> mining_pool(const std::vector<ca::TextExample>& examples,
                                            const std::vector<ca::Passage>& corpus,
                                            const std::unordered_set<std::string>& held_out, int64_t size,
                                            uint64_t seed) {
  std::vector<ca::Passage> pool;
  std::unordered_set<std::string> in_pool;
  auto key = [](const ca::Passage& p) { return p.id.empty() ? "text:" + p.text : "id:" + p.id; };
  for (const auto& e : examples)
    for (const auto& p : e.positives)
      if (in_pool.insert(key(p)).second) pool.push_back(p);
  const auto order = ca::seeded_permutation(corpus.size(), seed);
  for (std::size_t k = 0; k < order.size() && static_cast<int64_t>(pool.size()) < size; ++k) {
    const auto& p = corpus[order[k]];
    if (!held_out.contains(p.id) && in_pool.insert(key(p)).second) pool.push_back(p);
  }
  return pool;
}

/// The examples with `o.negatives` mined hard negatives each; says what it did on `say`.
template <class Encoder, class Tok>
std::vector<ca::TextExample> mine_for_training(Encoder& encoder, const Tok& tok, std::vector<ca::TextExample> examples,
                                               const std::vector<ca::Passage>& corpus,
                                               const std::unordered_set<std::string>& held_out,
                                               const MineOptions& o, std::ostream& say) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto pool = mining_pool(examples, corpus, held_out, o.pool, o.seed + 3);
  say << "  mining hard negatives with the pretrained model: " << examples.size() << " queries against " << pool.size()
      << " passages (their positives + seeded distractors; dev/test passages left out), " << o.negatives
      << " per query, relative margin " << o.relative_margin << std::endl;
  auto mined = ca::mine_hard_negatives(
      encoder, Reader{}, tok, std::move(examples), pool,
      {.num_negatives = o.negatives, .relative_margin = o.relative_margin, .seed = o.seed},
      {.tokenize = o.tokenize, .cache_dir = o.out / "mining",
       .cache_key = file_stamp(o.model / "model.safetensors", "--mine-negatives") + "|pool=" +
                    std::to_string(pool.size())});
  ca::write_training_jsonl(o.out / "mined.jsonl", mined.examples);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  say << "  mined: " << mined.stats.summary() << "\n  (" << mined.shards_encoded << " shards encoded, "
      << mined.shards_reused << " reused from " << (o.out / "mining").string() << "; " << static_cast<int>(seconds)
      << " s); written to " << (o.out / "mined.jsonl").string() << " (--train reads it)" << std::endl;
  ca::detail::require(mined.stats.negatives > 0, "--mine-negatives: no negative survived the rules (",
                      mined.stats.summary(), "); raise --mine-corpus");
  return std::move(mined.examples);
}

}  // namespace retrieval
