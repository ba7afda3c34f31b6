// Hard-negative mining: the selection rules on embeddings whose scores are known by
// construction, then mining with all-MiniLM-L6-v2 on Debian package texts with planted
// near-duplicates of the positives, determinism, the JSONL round trip and resuming.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include <contaccum/mining/mine.hpp>

#include "support/helpers.hpp"

#include <fstream>
#include <set>

using namespace contaccum;
namespace fs = std::filesystem;

namespace {

const fs::path project_dir = fs::path(CONTACCUM_TEST_DIR).parent_path();
const fs::path minilm_dir = project_dir / "models" / "all-MiniLM-L6-v2";
const fs::path beir_dir = project_dir / "data" / "debian-beir";

// With H = 1 and the query [1], a corpus row's score is its value.
const auto one_query = torch::ones({1, 1}, torch::kDouble);
torch::Tensor scored_corpus(std::vector<double> scores) {
  return torch::tensor(scores, torch::kDouble).view({-1, 1});
}
// rows 0..6 score 0.9 0.8 0.85 0.7 0.6 0.5 0.4: by rank r0 r2 r1 r3 r4 r5 r6
const auto corpus7 = scored_corpus({0.9, 0.8, 0.85, 0.7, 0.6, 0.5, 0.4});

std::vector<std::int64_t> rows_of(const std::vector<MinedNegative>& mined) {
  std::vector<std::int64_t> r;
  for (const auto& m : mined) r.push_back(m.row);
  return r;
}

std::vector<std::int64_t> mine_rows(const MiningConfig& c, std::vector<std::int64_t> positives = {0}) {
  return rows_of(select_hard_negatives(one_query, corpus7, {positives}, c).per_query.at(0));
}

}  // namespace

TEST_CASE("Hard negatives: judged positives never, then the best of the window", "[mining]") {
  const auto mined = select_hard_negatives(one_query, corpus7, {{0}}, {.num_negatives = 2});
  CHECK(rows_of(mined.per_query[0]) == std::vector<std::int64_t>{2, 1});
  CHECK(mined.per_query[0][0].score == Approx(0.85));
  CHECK(mined.stats.range_max == 3);  // derived: 0 + 2 + 1 positive
  CHECK(mined.stats.dropped_positives == 1);
  CHECK(mined.stats.negatives == 2);
  CHECK(mined.stats.short_queries == 0);
  // the rank window: skip the best one of a window of 4
  CHECK(mine_rows({.num_negatives = 2, .range_min = 1, .range_max = 4}) == std::vector<std::int64_t>{1, 3});
}

TEST_CASE("Hard negatives: each false-negative rule drops what it should, against the lowest positive",
          "[mining]") {
  // s+ = 0.9: absolute 0.08 keeps s <= 0.82; relative 0.1 keeps s <= 0.81: r2 (0.85) goes
  CHECK(mine_rows({.num_negatives = 2, .absolute_margin = 0.08}) == std::vector<std::int64_t>{1, 3});
  CHECK(mine_rows({.num_negatives = 2, .relative_margin = 0.1}) == std::vector<std::int64_t>{1, 3});
  CHECK(mine_rows({.num_negatives = 2, .relative_margin = 0.05}) == std::vector<std::int64_t>{2, 1});  // 0.855
  CHECK(mine_rows({.num_negatives = 2, .max_score = 0.75}) == std::vector<std::int64_t>{3, 4});
  // two positives (0.9 and 0.6): the margin is taken from the lower one
  CHECK(mine_rows({.num_negatives = 2, .absolute_margin = 0.0}, {0, 4}) == std::vector<std::int64_t>{5, 6});
  // too few left: the query gets what there is, and the stats say so
  const auto few = select_hard_negatives(one_query, corpus7, {{0}}, {.num_negatives = 2, .max_score = 0.75, .min_score = 0.65});
  CHECK(rows_of(few.per_query[0]) == std::vector<std::int64_t>{3});
  CHECK(few.stats.short_queries == 1);
  CHECK(few.stats.dropped_max_score == 2);  // 0.85 and 0.8 (0.9 is the positive)
  CHECK(few.stats.dropped_min_score == 3);  // 0.6, 0.5, 0.4
  CHECK(few.stats.summary().find("fewer negatives than asked") != std::string::npos);
}

TEST_CASE("Hard negatives: random sampling is seeded per query and independent of the search's chunks",
          "[mining]") {
  torch::manual_seed(3);
  const auto q = torch::nn::functional::normalize(torch::randn({20, 8}, torch::kDouble),
                                                  torch::nn::functional::NormalizeFuncOptions().dim(1));
  const auto c = torch::nn::functional::normalize(torch::randn({300, 8}, torch::kDouble),
                                                  torch::nn::functional::NormalizeFuncOptions().dim(1));
  std::vector<std::vector<std::int64_t>> pos;
  for (std::int64_t i = 0; i < 20; ++i) pos.push_back({i, 100 + i});
  const MiningConfig cfg{.num_negatives = 4, .range_max = 30, .sampling = NegativeSampling::random, .seed = 5};
  const auto a = select_hard_negatives(q, c, pos, cfg);
  auto other_chunks = cfg;
  other_chunks.chunk_size = 7;
  const auto b = select_hard_negatives(q, c, pos, other_chunks);
  auto other_seed = cfg;
  other_seed.seed = 6;
  const auto d = select_hard_negatives(q, c, pos, other_seed);
  const auto top = select_hard_negatives(q, c, pos, {.num_negatives = 30, .range_max = 30});
  int differs = 0;
  for (std::size_t i = 0; i < 20; ++i) {
    CHECK(rows_of(a.per_query[i]) == rows_of(b.per_query[i]));  // scores may differ in the last bit
    differs += a.per_query[i] != d.per_query[i];
    REQUIRE(a.per_query[i].size() == 4);
    // a sample of the window, best first, no positive
    const auto window = rows_of(top.per_query[i]);
    std::set<std::int64_t> seen;
    for (std::size_t k = 0; k < 4; ++k) {
      CHECK(std::find(window.begin(), window.end(), a.per_query[i][k].row) != window.end());
      CHECK(seen.insert(a.per_query[i][k].row).second);
      CHECK(a.per_query[i][k].row != static_cast<std::int64_t>(i));
      CHECK(a.per_query[i][k].row != static_cast<std::int64_t>(100 + i));
      if (k) CHECK(a.per_query[i][k - 1].score >= a.per_query[i][k].score);
    }
  }
  CHECK(differs > 10);
  // a query's sample does not depend on which queries are mined with it... only on its index
  const auto first = select_hard_negatives(q.slice(0, 0, 3), c, {pos[0], pos[1], pos[2]}, cfg);
  for (std::size_t i = 0; i < 3; ++i) CHECK(rows_of(first.per_query[i]) == rows_of(a.per_query[i]));
}

TEST_CASE("Hard negatives: a config that cannot mine is refused, naming the field", "[mining][errors]") {
  auto refused = [](const MiningConfig& c, std::vector<std::vector<std::int64_t>> pos = {{0}}) {
    try {
      (void)select_hard_negatives(one_query, corpus7, pos, c);
    } catch (const error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK_THAT(refused({.num_negatives = 0}), Catch::Contains("num_negatives must be at least 1"));
  CHECK_THAT(refused({.num_negatives = 2, .range_min = 5, .range_max = 5}), Catch::Contains("range_min 5 must be below range_max 5"));
  CHECK_THAT(refused({.num_negatives = 3, .range_min = 2, .range_max = 4}), Catch::Contains("cannot come from a window of 2"));
  CHECK_THAT(refused({.relative_margin = std::nan("")}), Catch::Contains("relative_margin must be finite"));
  CHECK_THAT(refused({}, {{}}), Catch::Contains("query 0 has no positive"));
  CHECK_THAT(refused({}, {{9}}), Catch::Contains("positive row 9 is outside the corpus of 7"));
  CHECK_THAT(refused({}, {{0}, {1}}), Catch::Contains("1 queries but 2 positive lists"));
}

namespace {

struct PlantedCorpus {
  std::vector<TextExample> examples;
  std::vector<Passage> corpus;
  std::set<std::string> planted;  // ids of the near-duplicates of positives
};

// 12 training queries of the Debian data, 150 other passages, and for the first 8
// queries a near-duplicate of the positive (a full stop added) under another id.
PlantedCorpus planted_corpus() {
  const auto train = read_beir(beir_dir, "train");
  auto all = beir_training_examples(train);
  REQUIRE(all.size() >= 12);
  PlantedCorpus p;
  p.examples.assign(all.begin(), all.begin() + 12);
  std::set<std::string> used;
  for (const auto& e : p.examples)
    for (const auto& pos : e.positives) {
      p.corpus.push_back(pos);
      used.insert(pos.id);
    }
  for (std::size_t i = 0; i < train.corpus.size() && p.corpus.size() < 162; i += 97)
    if (!used.contains(train.corpus[i].id)) p.corpus.push_back(train.corpus[i]);
  for (std::size_t i = 0; i < 8; ++i) {
    auto dup = p.examples[i].positives.front();
    dup.text += " .";
    dup.id = "near-duplicate-" + std::to_string(i);
    p.planted.insert(dup.id);
    p.corpus.push_back(dup);
  }
  return p;
}

// Queries given the near-duplicate of their own positive as a negative (another query's
// near-duplicate may rightly be its negative).
int planted_mined(const MiningResult& r, const PlantedCorpus& p) {
  int n = 0;
  for (std::size_t i = 0; i < r.examples.size(); ++i)
    for (const auto& h : r.examples[i].hard_negatives)
      n += p.planted.contains(h.id) && h.id == "near-duplicate-" + std::to_string(i);
  return n;
}

}  // namespace

TEST_CASE("Mining with all-MiniLM-L6-v2: the margin rule drops planted near-duplicates of the positives",
          "[mining][model]") {
  INFO("the model and data come from scripts/setup.sh: " << minilm_dir << ", " << beir_dir);
  REQUIRE(fs::exists(minilm_dir / "model.safetensors"));
  auto bert = load_bert(minilm_dir);
  const auto tok = tokenizers::load_tokenizer(minilm_dir);
  using Reader = Normalized<MeanPooling>;
  const auto p = planted_corpus();
  const MiningRun quiet{.progress = false};

  // No rule: the near-duplicates score next to the positives and are mined as "negatives".
  const auto plain = mine_hard_negatives(bert, Reader{}, tok, p.examples, p.corpus, {.num_negatives = 3}, quiet);
  CHECK(planted_mined(plain, p) >= 4);
  CHECK(plain.corpus_rows == static_cast<std::int64_t>(p.corpus.size()));
  // NV-Retriever's TopK-PercPos: 5% below the positive
  const auto kept = mine_hard_negatives(bert, Reader{}, tok, p.examples, p.corpus,
                                        {.num_negatives = 3, .relative_margin = 0.05}, quiet);
  CHECK(planted_mined(kept, p) == 0);
  CHECK(kept.stats.dropped_relative_margin >= 8);
  INFO(kept.stats.summary());
  // every kept negative is at least 5% below its query's positive, by the model's own scores
  for (const auto& e : kept.examples) {
    CHECK(e.hard_negatives.size() <= 3);  // a query whose positive scores low may keep fewer
    std::vector<std::string> texts{e.positives.front().text};
    for (const auto& h : e.hard_negatives) texts.push_back(h.title.empty() ? h.text : h.title + " " + h.text);
    texts[0] = e.positives.front().title.empty() ? texts[0] : e.positives.front().title + " " + texts[0];
    const auto d = embed_texts(bert, Reader{}, tok, texts, {.max_length = 128});
    const auto q = embed_texts(bert, Reader{}, tok, std::vector<std::string>{e.query}, {.max_length = 32});
    const auto s = torch::mv(d, q[0]);
    const double pos = s[0].item<double>();
    for (int k = 1; k <= static_cast<int>(e.hard_negatives.size()); ++k) CHECK(s[k].item<double>() <= pos - std::abs(pos) * 0.05 + 1e-5);
    for (const auto& h : e.hard_negatives) CHECK(h.id != e.positives.front().id);
  }

  // seeded: the same seed gives the same negatives, another seed others
  const MiningConfig random_cfg{.num_negatives = 2, .range_max = 20, .relative_margin = 0.05,
                                .sampling = NegativeSampling::random, .seed = 1};
  auto other = random_cfg;
  other.seed = 2;
  const auto r1 = mine_hard_negatives(bert, Reader{}, tok, p.examples, p.corpus, random_cfg, quiet);
  const auto r2 = mine_hard_negatives(bert, Reader{}, tok, p.examples, p.corpus, random_cfg, quiet);
  const auto r3 = mine_hard_negatives(bert, Reader{}, tok, p.examples, p.corpus, other, quiet);
  CHECK(r1.examples == r2.examples);
  CHECK(r1.examples != r3.examples);

  // the mined file loads with the existing readers, as it was
  const auto dir = test::scratch_dir("mining");
  write_training_jsonl(dir / "mined.jsonl", kept.examples);
  const auto read = read_training_examples(dir / "mined.jsonl");
  REQUIRE(read.records.size() == kept.examples.size());
  for (std::size_t i = 0; i < read.records.size(); ++i) {
    CHECK(read.records[i].query == kept.examples[i].query);
    CHECK(read.records[i].query_id == kept.examples[i].query_id);
    CHECK(read.records[i].positives == kept.examples[i].positives);
    CHECK(read.records[i].hard_negatives == kept.examples[i].hard_negatives);
  }
  // and the sampler draws the mined negatives
  const PairSampler sampler(read.records, {.seed = 1, .hard_negatives_per_query = 1});
  const auto pair = sampler.sample(0, 0);
  const auto& own = read.records[0].hard_negatives;
  CHECK(std::find(own.begin(), own.end(), pair.hard_negatives.at(0)) != own.end());
}

TEST_CASE("Mining resumes: encoded shards are kept and reused, a damaged one is encoded again",
          "[mining][model]") {
  REQUIRE(fs::exists(minilm_dir / "model.safetensors"));
  auto bert = load_bert(minilm_dir);
  const auto tok = tokenizers::load_tokenizer(minilm_dir);
  using Reader = Normalized<MeanPooling>;
  const auto p = planted_corpus();
  const auto dir = test::scratch_dir("mining_resume");
  const MiningRun run{.cache_dir = dir / "shards", .cache_key = "all-MiniLM-L6-v2 (test)", .shard_rows = 64,
                      .progress = false};
  const MiningConfig cfg{.num_negatives = 2, .relative_margin = 0.05};
  const auto first = mine_hard_negatives(bert, Reader{}, tok, p.examples, p.corpus, cfg, run);
  const std::int64_t shards = (first.corpus_rows + 63) / 64 + 1;  // the corpus's and the queries' one
  CHECK(first.shards_encoded == shards);
  CHECK(first.shards_reused == 0);
  const auto again = mine_hard_negatives(bert, Reader{}, tok, p.examples, p.corpus, cfg, run);
  CHECK(again.shards_encoded == 0);
  CHECK(again.shards_reused == shards);
  CHECK(again.examples == first.examples);
  {  // a killed write or a flipped byte: that shard only is encoded again
    std::fstream f(dir / "shards" / "corpus-1.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-5, std::ios::end);
    f.put('\x7f');
  }
  const auto repaired = mine_hard_negatives(bert, Reader{}, tok, p.examples, p.corpus, cfg, run);
  CHECK(repaired.shards_encoded == 1);
  CHECK(repaired.examples == first.examples);
  // another model key encodes everything again
  auto other = run;
  other.cache_key = "another model";
  CHECK(mine_hard_negatives(bert, Reader{}, tok, p.examples, p.corpus, cfg, other).shards_encoded == shards);
}
