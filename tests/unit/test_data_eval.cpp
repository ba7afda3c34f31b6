// Dataset readers and evaluation (issue 4): each reader on the fixture files under
// tests/fixtures/data/ (malformed records name file, line and field; OnError::skip counts
// them), seeded shuffling and DPR-style pair sampling, the metrics against pytrec_eval
// (tests/reference/trec_reference.py) and exact search against a full-matrix top-k.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

#include <contaccum/data/beir.hpp>
#include <contaccum/data/dpr.hpp>
#include <contaccum/data/jsonl.hpp>
#include <contaccum/data/load.hpp>
#include <contaccum/data/sampling.hpp>
#include <contaccum/data/shuffle.hpp>
#include <contaccum/data/tsv.hpp>
#include <contaccum/config_io.hpp>
#include <contaccum/eval/exact_search.hpp>
#include <contaccum/eval/metrics.hpp>
#include <contaccum/eval/trec.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace contaccum;
using test::error_of;
using json = nlohmann::json;
namespace fs = std::filesystem;
using Catch::Contains;

namespace {

fs::path fixture(const std::string& name) { return fs::path(CONTACCUM_TEST_DIR) / "fixtures" / "data" / name; }
fs::path scratch_dir() { return test::scratch_dir("contaccum_data_eval"); }

fs::path write_text(const std::string& name, const std::string& text) {
  const auto file = scratch_dir() / name;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
  return file;
}

// The message of the invalid_input `f` throws (fails the test if it throws none).

// The line a malformed_record names.
template <class F>
std::size_t error_line(F&& f) {
  try {
    f();
  } catch (const malformed_record& e) {
    return e.line();
  }
  FAIL("no malformed_record was thrown");
  return 0;
}

const ReadOptions skip{.on_error = OnError::skip};

std::vector<std::string> texts(const std::vector<Passage>& ps) {
  std::vector<std::string> out;
  for (const auto& p : ps) out.push_back(p.text);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------- readers

TEST_CASE("DPR JSON: records stream with every field; questions without positives are dropped as DPR does",
          "[data]") {
  auto [examples, stats] = read_all(dpr_examples(fixture("dpr_train.json")));
  REQUIRE(examples.size() == 2);
  CHECK(stats.records == 2);
  CHECK(stats.without_positives == 1);
  CHECK(stats.skipped == 0);

  const auto& a = examples[0];
  CHECK(a.query_id == "0");
  CHECK(a.query == "who wrote the debian package manager");
  CHECK(a.answers == std::vector<std::string>{"Ian Murdock", "Ian Jackson"});
  REQUIRE(a.positives.size() == 2);
  CHECK(a.positives[0] == Passage{"11828866", "dpkg", "dpkg is the software at the base of the package management system."});
  CHECK(a.positives[1].id == "42");  // psg_id written as a number
  CHECK(texts(a.hard_negatives) == std::vector<std::string>{
                                       "RPM Package Manager is a package management system.",
                                       "APT is a free-software user interface that works with core libraries."});
  CHECK(a.negatives.size() == 1);
  CHECK(a.negatives[0].title == "Apple");

  const auto& b = examples[1];
  CHECK(b.query_id == "2");  // its index in the array (record 1 was dropped)
  CHECK(b.positives == std::vector<Passage>{{"", "", "only text"}});
  CHECK(b.hard_negatives.empty());
  CHECK(b.answers.empty());
}

TEST_CASE("DPR JSON: a bad record names file, record, line and field; skip counts it; a broken array always raises",
          "[data]") {
  const auto bad_field = fixture("dpr_bad_field.json");
  SECTION("empty text in a field") {
    const auto msg = error_of([&] { (void)read_all(dpr_examples(bad_field)); });
    CHECK_THAT(msg, Contains(bad_field.string()) && Contains("record 1 (line 3,") &&
                        Contains("field \"hard_negative_ctxs[1].text\": empty text"));
    CHECK(error_line([&] { (void)read_all(dpr_examples(bad_field)); }) == 3);

    auto [examples, stats] = read_all(dpr_examples(bad_field, skip));
    REQUIRE(examples.size() == 2);
    CHECK(examples[0].query == "fine");
    CHECK(examples[1].query == "still fine");
    CHECK(stats.skipped == 2);
    CHECK_THAT(stats.first_skipped, Contains("record 1 (line 3,"));
    CHECK_THAT(stats.summary(), Contains("2 records") && Contains("2 malformed skipped"));
  }
  SECTION("empty question, wrong types") {
    const auto a = write_text("empty_question.json", "[\n  {\"question\": \" \", \"positive_ctxs\": [{\"text\": \"p\"}]}\n]");
    CHECK_THAT(error_of([&] { (void)read_all(dpr_examples(a)); }),
               Contains("record 0 (line 2, byte 4): field \"question\": empty text"));
    const auto b = write_text("ctx_string.json", R"([{"question": "q", "positive_ctxs": ["p"]}])");
    CHECK_THAT(error_of([&] { (void)read_all(dpr_examples(b)); }),
               Contains("field \"positive_ctxs[0]\": a ctx must be an object"));
    const auto c = write_text("no_positives.json", R"([{"question": "q"}])");
    CHECK_THAT(error_of([&] { (void)read_all(dpr_examples(c)); }), Contains("field \"positive_ctxs\": missing"));
    const auto d = write_text("scalar.json", "[1, 2]");
    auto [examples, stats] = read_all(dpr_examples(d, skip));
    CHECK(examples.empty());
    CHECK(stats.skipped == 2);
    CHECK_THAT(stats.first_skipped, Contains("a DPR record must be a JSON object"));
  }
  SECTION("JSON syntax error inside a record: the line of the error") {
    const auto file = fixture("dpr_bad_syntax.json");
    const auto msg = error_of([&] { (void)read_all(dpr_examples(file)); });
    CHECK_THAT(msg, Contains(file.string()) && Contains("record 1 (line 5,") && Contains("not valid JSON"));
    CHECK(error_line([&] { (void)read_all(dpr_examples(file)); }) == 5);
    auto [examples, stats] = read_all(dpr_examples(file, skip));
    REQUIRE(examples.size() == 2);
    CHECK(examples[1].query == "after the bad one");
    CHECK(stats.skipped == 1);
  }
  SECTION("a file that ends inside a record raises even under skip") {
    const auto file = fixture("dpr_truncated.json");
    const auto msg = error_of([&] { (void)read_all(dpr_examples(file, skip)); });
    CHECK_THAT(msg, Contains(file.string()) && Contains("line 3") && Contains("ends inside record 1"));
  }
  SECTION("not an array, missing comma, trailing comma, text after the array") {
    const auto a = write_text("object.json", R"({"question": "q", "positive_ctxs": []})");
    CHECK_THAT(error_of([&] { (void)read_all(dpr_examples(a, skip)); }), Contains("expected '['"));
    const auto b = write_text("no_comma.json", "[\n{\"question\": \"q\", \"positive_ctxs\": [{\"text\": \"p\"}]}\n{}]");
    CHECK_THAT(error_of([&] { (void)read_all(dpr_examples(b, skip)); }),
               Contains("line 3") && Contains("expected ',' or ']' after record 0"));
    const auto c = write_text("trailing.json", "[{\"question\": \"q\", \"positive_ctxs\": [{\"text\": \"p\"}]},\n]");
    CHECK_THAT(error_of([&] { (void)read_all(dpr_examples(c, skip)); }), Contains("expected a record after the ','"));
    const auto d = write_text("after.json", "[]\nx");
    CHECK_THAT(error_of([&] { (void)read_all(dpr_examples(d)); }), Contains("text after the closing ']'"));
    const auto f = write_text("open.json", "[\n");
    CHECK_THAT(error_of([&] { (void)read_all(dpr_examples(f, skip)); }), Contains("ends before the array's closing ']'"));
    const auto e = write_text("empty_array.json", " [ ] \n");
    CHECK(read_all(dpr_examples(e)).records.empty());
    CHECK_THAT(error_of([&] { (void)dpr_examples(scratch_dir() / "missing.json"); }), Contains("cannot open it"));
  }
}

TEST_CASE("JSONL pairs/triplets: lists, single strings, passage objects, ids; blank lines passed over", "[data]") {
  auto records = jsonl_examples(fixture("pairs.jsonl"));
  std::vector<TextExample> examples;
  for (auto& ex : records) examples.push_back(ex);  // a range-v3 input view
  REQUIRE(examples.size() == 4);
  CHECK(records.stats().records == 4);

  CHECK(examples[0].query_id == "1");  // no id: the line number
  CHECK(texts(examples[0].positives) == std::vector<std::string>{"nginx is a small, powerful, scalable web/proxy server"});
  CHECK(texts(examples[0].hard_negatives) == std::vector<std::string>{"a text editor for the console"});
  CHECK(examples[1].query_id == "q-2");
  CHECK(examples[1].positives[0] == Passage{"inkscape", "inkscape", "Inkscape is an illustration editor"});
  CHECK(examples[1].positives[1] == Passage{"", "", "a second positive"});
  CHECK(examples[1].hard_negatives.empty());
  CHECK(examples[2].query_id == "4");  // line 3 is blank
  CHECK(texts(examples[2].positives) == std::vector<std::string>{"a positive passage"});
  CHECK(texts(examples[2].hard_negatives) == std::vector<std::string>{"a negative passage"});
  CHECK(examples[3].query_id == "7");  // integer id
  CHECK(examples[3].hard_negatives.empty());
}

TEST_CASE("JSONL: a malformed line names file, line and field; skip counts it", "[data]") {
  const auto file = fixture("pairs_bad.jsonl");
  const auto msg = error_of([&] { (void)read_all(jsonl_examples(file)); });
  CHECK_THAT(msg, Contains(file.string()) && Contains("line 2: field \"pos\": missing"));
  CHECK(error_line([&] { (void)read_all(jsonl_examples(file)); }) == 2);

  auto [examples, stats] = read_all(jsonl_examples(file, skip));
  REQUIRE(examples.size() == 3);
  CHECK(examples[0].query == "fine");
  CHECK(examples[1].query == "fine too");
  CHECK(examples[2].query == "last fine");
  CHECK(stats.records == 3);
  CHECK(stats.skipped == 5);
  CHECK_THAT(stats.first_skipped, Contains("line 2"));

  // every other kind of bad line, one file each, names its line and field
  const auto one = [](const std::string& name, const std::string& line) {
    return error_of([&] { (void)read_all(jsonl_examples(write_text(name, "{\"query\": \"ok\", \"pos\": \"p\"}\n" + line))); });
  };
  CHECK_THAT(one("syntax.jsonl", R"({"query": "bad json", "pos": ["p"],})"),
             Contains("line 2, column") && Contains("not valid JSON"));
  CHECK_THAT(one("empty_query.jsonl", R"({"query": "", "pos": ["p"]})"), Contains("line 2: field \"query\": empty text"));
  CHECK_THAT(one("empty_pos.jsonl", R"({"query": "q", "pos": ["ok", "  "]})"),
             Contains("line 2: field \"pos[1]\": empty text"));
  CHECK_THAT(one("no_pos.jsonl", R"({"query": "q", "pos": []})"), Contains("line 2: field \"pos\": empty array"));
  CHECK_THAT(one("array.jsonl", R"(["q", "p"])"), Contains("line 2: a record must be a JSON object"));
  CHECK_THAT(one("twice.jsonl", R"({"query": "q", "pos": "p", "positive": "p"})"), Contains("given twice"));
  CHECK_THAT(one("number.jsonl", R"({"query": 5, "pos": "p"})"), Contains("field \"query\": must be a string"));
  CHECK_THAT(one("obj.jsonl", R"({"query": "q", "pos": [{"title": "t"}]})"),
             Contains("field \"pos[0].text\": missing"));
}

TEST_CASE("TSV triples: query, positive, negative (or a pair); malformed lines name file, line and field", "[data]") {
  auto [examples, stats] = read_all(tsv_examples(fixture("triples.tsv")));
  REQUIRE(examples.size() == 3);
  CHECK(examples[0].query == "how to compress files");
  CHECK(texts(examples[0].positives) == std::vector<std::string>{"gzip reduces the size of the named files"});
  CHECK(texts(examples[0].hard_negatives) == std::vector<std::string>{"an image viewer"});
  CHECK(texts(examples[1].positives) ==
        std::vector<std::string>{"mutt is a small but very powerful text-based mail client"});  // '\r' removed
  CHECK(examples[1].hard_negatives.empty());
  CHECK(examples[2].query_id == "4");  // line 3 is blank

  const auto file = fixture("triples_bad.tsv");
  const auto msg = error_of([&] { (void)read_all(tsv_examples(file)); });
  CHECK_THAT(msg, Contains(file.string()) && Contains("line 2") && Contains("expected 3 tab-separated fields") &&
                      Contains("got 4"));
  auto bad = read_all(tsv_examples(file, skip));
  CHECK(bad.records.size() == 2);
  CHECK(bad.stats.skipped == 3);
  const auto empty = write_text("empty_field.tsv", "q\tp\tn\nempty positive\t\tn\n");
  CHECK_THAT(error_of([&] { (void)read_all(tsv_examples(empty)); }), Contains("line 2: field \"positive\": empty text"));
  CHECK(error_line([&] { (void)read_all(tsv_examples(empty)); }) == 2);
}

TEST_CASE("BEIR: corpus, queries and qrels of a split; training examples from qrels", "[data]") {
  const auto dir = fixture("beir");
  const auto train = read_beir(dir, "train");
  REQUIRE(train.corpus.size() == 5);
  CHECK(train.corpus[3] == Passage{"4", "title only", ""});  // integer id, title-only document
  REQUIRE(train.queries.size() == 2);                       // only the queries its qrels name
  CHECK(train.queries[0] == Query{"q1", "web server"});
  CHECK(train.queries[1] == Query{"q2", "text editor"});
  CHECK(train.qrels.at("q1") == std::map<std::string, int>{{"d1", 1}, {"d2", 2}, {"d3", 0}});
  CHECK(train.qrels_stats.records == 5);  // the header line is not a record

  const auto examples = beir_training_examples(train);
  REQUIRE(examples.size() == 2);
  CHECK(examples[0].query_id == "q1");
  CHECK(texts(examples[0].positives) ==
        std::vector<std::string>{"Apache HTTP Server", "small, powerful, scalable web/proxy server"});  // score 2 first
  CHECK(texts(examples[0].hard_negatives) == std::vector<std::string>{"Vi IMproved - enhanced vi editor"});  // score 0
  CHECK(examples[1].positives[0].id == "d5");
  CHECK(examples[1].hard_negatives[0].id == "4");

  const auto test = read_beir(dir, "test");
  REQUIRE(test.queries.size() == 2);
  CHECK(test.queries[0].id == "q2");  // queries.jsonl order
  CHECK(test.queries[1].id == "q3");

  CHECK_THAT(error_of([&] { (void)read_beir(dir, "dev"); }), Contains("no such file") && Contains("dev.tsv"));

  // several splits from one parse: each equals its read_beir
  const auto splits = read_beir_splits(dir, {"test", "train"});
  REQUIRE(splits.size() == 2);
  for (const auto& [got, want] : {std::pair{&splits[0], &test}, std::pair{&splits[1], &train}}) {
    CHECK(got->corpus == want->corpus);
    CHECK(got->queries == want->queries);
    CHECK(got->qrels == want->qrels);
    CHECK(got->qrels_stats.records == want->qrels_stats.records);
    CHECK(got->corpus_stats.records == want->corpus_stats.records);
  }
  // a missing split fails before anything is parsed: beir_bad's corpus would fail first otherwise
  CHECK_THAT(error_of([&] { (void)read_beir_splits(fixture("beir_bad"), {"train", "dev"}); }),
             Contains("no such file") && Contains("dev.tsv"));

  std::vector<std::string> streamed;
  for (const auto& p : beir_corpus(dir / "corpus.jsonl")) streamed.push_back(p.id);
  CHECK(streamed == std::vector<std::string>{"d1", "d2", "d3", "4", "d5"});

  auto [loaded, stats] = read_training_examples(dir);
  CHECK(loaded == examples);
}

TEST_CASE("BEIR: repeated ids, empty documents and dangling qrels name file, line and field", "[data]") {
  const auto dir = fixture("beir_bad");
  const auto msg = error_of([&] { (void)read_beir(dir, "train"); });
  CHECK_THAT(msg, Contains((dir / "corpus.jsonl").string()) && Contains("line 6: field \"_id\": id 'd1' given twice"));

  const auto d = read_beir(dir, "train", skip);
  CHECK(d.corpus.size() == 5);
  CHECK(d.corpus[0].title == "nginx");  // the first d1 is kept
  CHECK(d.corpus_stats.skipped == 2);
  CHECK_THAT(d.corpus_stats.first_skipped, Contains("line 6"));
  CHECK(d.qrels_stats.records == 2);
  CHECK(d.qrels_stats.skipped == 3);
  CHECK_THAT(d.qrels_stats.first_skipped, Contains((dir / "qrels" / "train.tsv").string()) &&
                                              Contains("line 3: field \"corpus-id\": document 'nowhere' is not in corpus.jsonl"));
  CHECK(d.qrels.at("q2") == std::map<std::string, int>{{"d5", 1}});

  // the qrels errors, each on its own over the good fixture's corpus and queries
  const auto copy = scratch_dir() / "beir_qrels";
  fs::remove_all(copy);
  fs::create_directories(copy / "qrels");
  fs::copy_file(fixture("beir") / "corpus.jsonl", copy / "corpus.jsonl");
  fs::copy_file(fixture("beir") / "queries.jsonl", copy / "queries.jsonl");
  const auto qrels_with = [&](const std::string& line) {
    std::ofstream(copy / "qrels" / "x.tsv", std::ios::trunc) << "query-id\tcorpus-id\tscore\nq1\td1\t1\n" << line << "\n";
    return error_of([&] { (void)read_beir(copy, "x"); });
  };
  CHECK_THAT(qrels_with("q9\td1\t1"), Contains("x.tsv' line 3: field \"query-id\": query 'q9' is not in queries.jsonl"));
  CHECK_THAT(qrels_with("q1\td1\tx"), Contains("line 3: field \"score\": expected an integer"));
  CHECK_THAT(qrels_with("q1\td1"), Contains("line 3: expected 3 tab-separated fields"));
  CHECK_THAT(qrels_with("q1\td1\t1"), Contains("line 3: field \"corpus-id\": document 'd1' given twice"));
  CHECK(error_line([&] { (void)read_beir(copy, "x"); }) == 3);
}

TEST_CASE("read_training_examples picks the reader from the path", "[data]") {
  CHECK(read_training_examples(fixture("dpr_train.json")).records.size() == 2);
  CHECK(read_training_examples(fixture("pairs.jsonl")).records.size() == 4);
  CHECK(read_training_examples(fixture("triples.tsv")).records.size() == 3);
  CHECK(read_training_examples(fixture("pairs_bad.jsonl"), skip).stats.skipped == 5);
  CHECK_THAT(error_of([&] { (void)read_training_examples(fixture("beir") / "qrels" / "train.csv"); }),
             Contains("cannot tell the format"));
  CHECK_THAT(describe(ReadOptions{}), Contains("raise"));
}

// ---------------------------------------------------------------------------- shuffling and sampling

TEST_CASE("seeded shuffling: deterministic, a permutation, different across seeds, the same on every platform",
          "[data]") {
  // std::mt19937_64 is fixed by the standard: its 10000th output is this value
  std::mt19937_64 standard;
  standard.discard(9999);
  CHECK(standard() == 9981545732273789042ull);

  const auto a = seeded_permutation(1000, 42);
  CHECK(a == seeded_permutation(1000, 42));
  CHECK(a != seeded_permutation(1000, 43));
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::size_t> iota(1000);
  std::iota(iota.begin(), iota.end(), 0);
  CHECK(sorted == iota);
  // Fisher-Yates over uniform_index uses no library distribution, so this order is the
  // same under libstdc++, libc++ and MSVC; an independent Python MT19937-64 with the same
  // draws gave the same order when this test was written
  CHECK(seeded_permutation(10, 42) == std::vector<std::size_t>{1, 7, 3, 0, 4, 5, 9, 2, 8, 6});

  // uniform_index is unbiased: counts of a 6-way draw within 5 sigma of uniform
  std::mt19937_64 rng(7);
  std::vector<int> counts(6, 0);
  const int draws = 60000;
  for (int i = 0; i < draws; ++i) ++counts[uniform_index(rng, 6)];
  for (const int c : counts) CHECK(std::abs(c - draws / 6) < 5 * std::sqrt(draws / 6.0));
  CHECK_THROWS_AS(uniform_index(rng, 0), invalid_input);
}

TEST_CASE("PairSampler: DPR-style hard negatives, fallback, reuse and borrowed negatives; deterministic per seed and epoch",
          "[data]") {
  const auto P = [](const std::string& t) { return Passage{t, "", t}; };
  std::vector<TextExample> examples{
      {"e0", "q0", {P("P0a"), P("P0b")}, {P("H0a"), P("H0b"), P("H0c")}, {P("N0")}, {}},
      {"e1", "q1", {P("P1")}, {}, {P("N1a"), P("N1b")}, {}},  // falls back to its negatives
      {"e2", "q2", {P("P2")}, {P("H2")}, {}, {}},              // one candidate, reused
      {"e3", "q3", {P("P3")}, {}, {}, {}},                     // no candidate: borrowed
  };
  for (int i = 4; i < 24; ++i) {
    const auto s = std::to_string(i);
    examples.push_back({"e" + s, "q" + s, {P("P" + s)}, {P("H" + s + "a"), P("H" + s + "b")}, {}, {}});
  }
  const PairSamplingConfig config{.seed = 5, .hard_negatives_per_query = 2};
  const PairSampler sampler(examples, config);
  const auto collect = [](const PairSampler& s, std::uint64_t e) {
    std::vector<TextPair> out;
    for (auto&& p : s.epoch(e)) out.push_back(p);
    return out;
  };
  const auto epoch0 = collect(sampler, 0);
  REQUIRE(epoch0.size() == examples.size());

  SECTION("the same seed and epoch give the same pairs, whatever order they are read in") {
    CHECK(epoch0 == collect(PairSampler(examples, config), 0));
    const auto order = sampler.order(0);
    for (std::size_t pos = 0; pos < order.size(); ++pos) CHECK(sampler.sample(order[pos], 0) == epoch0[pos]);
    auto view = sampler.epoch(0);
    CHECK(view[7] == epoch0[7]);  // random access: no need to read 0..6 first
  }
  SECTION("epochs and seeds reorder") {
    CHECK(sampler.order(0) != sampler.order(1));
    CHECK(PairSampler(examples, {.seed = 6, .hard_negatives_per_query = 2}).order(0) != sampler.order(0));
    auto sorted = sampler.order(3);
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::size_t> iota(examples.size());
    std::iota(iota.begin(), iota.end(), 0);
    CHECK(sorted == iota);
    CHECK(PairSampler(examples, {.seed = 5, .hard_negatives_per_query = 2, .shuffle = false}).order(4) == iota);
    // the negatives of example 0 are redrawn each epoch
    std::set<std::vector<std::string>> draws;
    for (std::uint64_t e = 0; e < 12; ++e) draws.insert(texts(sampler.sample(0, e).hard_negatives));
    CHECK(draws.size() > 1);
  }
  SECTION("which passages are drawn") {
    for (std::uint64_t e = 0; e < 6; ++e) {
      const auto p0 = sampler.sample(0, e);
      CHECK(p0.positive.text == "P0a");  // the first positive, as DPR without shuffle_positives
      const auto h0 = texts(p0.hard_negatives);
      REQUIRE(h0.size() == 2);
      CHECK(h0[0] != h0[1]);  // without replacement while candidates last
      for (const auto& t : h0) CHECK((t == "H0a" || t == "H0b" || t == "H0c"));
      for (const auto& t : texts(sampler.sample(1, e).hard_negatives)) CHECK((t == "N1a" || t == "N1b"));
      CHECK(texts(sampler.sample(2, e).hard_negatives) == std::vector<std::string>{"H2", "H2"});
      for (const auto& t : texts(sampler.sample(3, e).hard_negatives)) {
        CHECK(t != "P3");
        CHECK(t.starts_with("P"));  // another example's positive
      }
    }
    CHECK(sampler.examples_without_negatives() == 1);
    const PairSampler no_fallback(examples, {.seed = 5, .hard_negatives_per_query = 2, .fallback_to_negatives = false});
    CHECK(no_fallback.examples_without_negatives() == 2);
    for (const auto& t : texts(no_fallback.sample(1, 0).hard_negatives)) CHECK((t != "P1" && t.starts_with("P")));
    const PairSampler shuffled(examples, {.seed = 5, .hard_negatives_per_query = 0, .shuffle_positives = true});
    std::set<std::string> positives;
    for (std::uint64_t e = 0; e < 16; ++e) positives.insert(shuffled.sample(0, e).positive.text);
    CHECK(positives == std::set<std::string>{"P0a", "P0b"});
    CHECK(shuffled.sample(0, 0).hard_negatives.empty());
  }
  SECTION("bad configurations are refused") {
    CHECK_THROWS_WITH(PairSampler(examples, {.hard_negatives_per_query = -1}), Contains("hard_negatives_per_query"));
    CHECK_THROWS_WITH(PairSampler({{"lonely", "q", {P("p")}, {}, {}, {}}}), Contains("'lonely' has no negative"));
    CHECK_THROWS_WITH(PairSampler({{"nopos", "q", {}, {}, {}, {}}}), Contains("'nopos' has no positive"));
    CHECK_THAT(describe(config), Contains("5, 2"));
  }
}

// ---------------------------------------------------------------------------- TREC files and metrics

TEST_CASE("TREC qrels and run files: round trip, trec_eval's tie order, malformed lines name file and line",
          "[eval]") {
  const Qrels qrels{{"q1", {{"d1", 1}, {"d2", 2}, {"d3", 0}}}, {"q2", {{"d5", 1}}}};
  const Run run{{"q1", {{"d3", 1.0}, {"d1", 1.0}, {"d2", 0.5}, {"d4", 2.0}}}, {"q2", {{"d1", 0.1 + 0.2}}}};
  const auto qf = scratch_dir() / "round.qrels", rf = scratch_dir() / "round.run";
  write_qrels(qf, qrels);
  write_run(rf, run, "tag");
  CHECK(read_qrels(qf) == qrels);
  CHECK(read_run(rf) == run);  // scores read back bit for bit
  std::ifstream in(rf);
  std::string first;
  std::getline(in, first);
  CHECK(first == "q1 Q0 d4 1 2 tag");
  std::getline(in, first);
  CHECK(first == "q1 Q0 d3 2 1 tag");  // equal scores: document id descending, as trec_eval

  const auto bad_run = write_text("bad.run", "q1 Q0 d1 1 0.5 t\nq1 Q0 d2 2 t\nq1 Q0 d3 x 0.1 t\nq1 Q0 d1 3 0.2 t\n");
  CHECK_THAT(error_of([&] { (void)read_run(bad_run); }),
             Contains(bad_run.string()) && Contains("line 2: expected 6 fields"));
  ReadStats stats;
  const auto partial = read_run(bad_run, skip, &stats);
  CHECK(partial.at("q1") == std::map<std::string, double>{{"d1", 0.5}});
  CHECK(stats.skipped == 3);
  CHECK(stats.records == 1);
  const auto dup = write_text("dup.qrels", "q1 0 d1 1\nq1 0 d1 2\n");
  CHECK_THAT(error_of([&] { (void)read_qrels(dup); }), Contains("line 2: field \"docid\": document 'd1' given twice"));
  const auto grade = write_text("grade.qrels", "q1 0 d1 1.5\n");
  CHECK_THAT(error_of([&] { (void)read_qrels(grade); }), Contains("line 1: field \"rel\": expected an integer"));
  const auto nan = write_text("nan.run", "q1 Q0 d1 1 nan t\n");
  CHECK_THAT(error_of([&] { (void)read_run(nan); }), Contains("field \"score\": not a finite number"));
}

TEST_CASE("metrics on a hand-checked query (values printed by pytrec_eval 0.5.11)", "[eval]") {
  const Qrels qrels{{"q1", {{"d1", 1}, {"d2", 2}, {"d3", 0}}}, {"q2", {{"d5", 1}}}, {"q3", {{"d9", 0}}}, {"q4", {{"x", 1}}}};
  const Run run{{"q1", {{"d3", 1.0}, {"d1", 1.0}, {"d2", 0.5}, {"d4", 2.0}}},
                {"q2", {{"d1", 3.0}}},
                {"q3", {{"d9", 1.0}}},
                {"q5", {{"a", 1.0}}}};
  const auto e = evaluate(qrels, run);
  // q1 ranks d4, d3, d1, d2: the first relevant at rank 3; q4 (no run) and q5 (no qrels) are left out
  CHECK(e.queries() == 3);
  CHECK(e.at("q1", "MRR@10") == Approx(1.0 / 3).epsilon(1e-12));
  CHECK(e.at("q1", "nDCG@10") == Approx(0.5174418337467067).epsilon(1e-12));
  CHECK(e.at("q1", "Recall@100") == 1.0);
  CHECK(e.at("q1", "Top-1") == 0.0);
  CHECK(e.at("q1", "Top-5") == 1.0);
  CHECK(e.at("q2", "nDCG@10") == 0.0);
  CHECK(e.at("q3", "Recall@100") == 0.0);  // no relevant document: 0, and still averaged
  CHECK(e["MRR@10"] == Approx(1.0 / 9).epsilon(1e-12));
  CHECK(metric_names() == std::vector<std::string>{"MRR@10", "nDCG@10", "Recall@100", "Top-1", "Top-5", "Top-20", "Top-100"});
  const auto c = evaluate(qrels, run, {.complete = true});  // trec_eval -c
  CHECK(c.queries() == 4);
  CHECK(c.at("q4", "Top-100") == 0.0);
  CHECK(c["MRR@10"] == Approx(1.0 / 12).epsilon(1e-12));
  CHECK_THROWS_WITH(e["MAP"], Contains("no measure 'MAP'"));
  CHECK_THAT(describe(MetricsConfig{}), Contains("[1 5 20 100]"));
}

TEST_CASE("metrics equal pytrec_eval per query and in the mean: ties, graded relevance, short runs", "[eval][python]") {
  // 80 queries; run lengths from 0 to 140; scores on a coarse grid so many tie; document
  // ids of mixed length and case so the tie order (byte-wise descending) matters; grades
  // 0..3, several relevant per query, relevant documents outside the run; some queries
  // only in the run, some only in the qrels, some with no relevant document at all.
  std::mt19937_64 rng(2024);
  const auto draw = [&rng](std::uint64_t n) { return uniform_index(rng, n); };
  const std::vector<std::int64_t> lengths{0, 1, 3, 8, 10, 11, 25, 99, 100, 101, 140};
  Qrels qrels;
  Run run;
  for (int q = 0; q < 80; ++q) {
    const auto qid = "q" + std::to_string(q);
    const auto n = lengths[draw(lengths.size())];
    std::vector<std::string> retrieved;
    std::map<std::string, double> docs;
    while (static_cast<std::int64_t>(docs.size()) < n) {
      const auto j = draw(300);
      const std::string doc = (j % 5 == 0 ? "D" : "d") + std::to_string(j) + (j % 7 == 0 ? "x" : "");
      if (docs.emplace(doc, static_cast<double>(draw(13)) / 4.0).second) retrieved.push_back(doc);
    }
    if (q % 9 != 4) run[qid] = docs;  // q4, q13, ...: in the qrels only
    if (q % 10 == 7) continue;        // q7, q17, ...: in the run only
    auto& judged = qrels[qid];
    const bool none_relevant = q % 11 == 5;
    for (const auto& doc : retrieved)
      if (draw(3) == 0) judged[doc] = none_relevant ? 0 : static_cast<int>(draw(4));
    for (int extra = 0; extra < 3; ++extra)  // judged but (probably) not retrieved
      judged["u" + std::to_string(draw(50))] = none_relevant ? 0 : static_cast<int>(draw(4));
  }
  const auto qf = scratch_dir() / "gen.qrels", rf = scratch_dir() / "gen.run", out = scratch_dir() / "gen.json";
  write_qrels(qf, qrels);
  write_run(rf, run);
  REQUIRE(test::run_python_reference("trec_reference.py", qf.string() + " " + rf.string() + " " + out.string()));
  json ref;
  std::ifstream(out) >> ref;
  const auto& per_query = ref["per_query"];

  const auto e = evaluate(read_qrels(qf), read_run(rf));
  REQUIRE(e.queries() == per_query.size());
  const std::map<std::string, std::string> trec_names{{"MRR@10", "recip_rank_10"}, {"nDCG@10", "ndcg_cut_10"},
                                                      {"Recall@100", "recall_100"}, {"Top-1", "success_1"},
                                                      {"Top-5", "success_5"},       {"Top-20", "success_20"},
                                                      {"Top-100", "success_100"}};
  std::map<std::string, double> ref_mean;
  int nonzero_ndcg = 0, partial_recall = 0;
  for (const auto& [qid, values] : per_query.items()) {
    REQUIRE(e.per_query.contains(qid));
    for (const auto& [name, trec] : trec_names) {
      INFO(qid << " " << name);
      const double want = values.at(trec).get<double>();
      CHECK(std::abs(e.at(qid, name) - want) <= 1e-9);
      ref_mean[name] += want / static_cast<double>(per_query.size());
    }
    nonzero_ndcg += values.at("ndcg_cut_10").get<double>() > 0;
    const double r = values.at("recall_100").get<double>();
    partial_recall += r > 0 && r < 1;
  }
  for (const auto& [name, want] : ref_mean) {
    INFO(name);
    CHECK(std::abs(e[name] - want) <= 1e-9);
  }
  CHECK(nonzero_ndcg > 10);   // the data exercise the formulas, not just zeros
  CHECK(partial_recall > 5);
}

// ---------------------------------------------------------------------------- exact search

namespace {

// The reference: the full (Q, N) score matrix, sorted stably (ties by lower row) and cut.
std::pair<torch::Tensor, torch::Tensor> full_matrix_top_k(const torch::Tensor& q, const torch::Tensor& c, int64_t k) {
  auto full = q.matmul(c.t());  // (Q, N)
  auto [values, indices] = torch::sort(full, /*stable=*/true, /*dim=*/1, /*descending=*/true);
  const auto kk = std::min<int64_t>(k, c.size(0));
  // torch::topk over the full matrix agrees on the values (its tie order is unspecified)
  CHECK(torch::equal(std::get<0>(torch::topk(full, kk, 1)), values.slice(1, 0, kk)));
  return {values.slice(1, 0, kk), indices.slice(1, 0, kk)};
}

}  // namespace

TEST_CASE("exact search equals the full-matrix top-k for chunk sizes that do not divide the corpus, ties included",
          "[eval]") {
  torch::manual_seed(11);
  const int64_t n = 53, h = 6;
  // integer-valued embeddings: exact products, so chunked and full scores agree bit for
  // bit, and many scores tie (the tie order is then what is tested)
  const auto q = torch::randint(-2, 3, {9, h}).to(torch::kFloat);
  const auto c = torch::randint(-2, 3, {n, h}).to(torch::kFloat);
  for (const int64_t k : {1, 10, 40}) {
    const auto [want_s, want_i] = full_matrix_top_k(q, c, k);
    for (const int64_t chunk : {int64_t{1}, int64_t{7}, n - 1, n, n + 5}) {
      INFO("k " << k << " chunk " << chunk);
      std::vector<SearchProgress> seen;
      const auto got = exact_search(q, c, {.k = k, .chunk_size = chunk}, [&](const SearchProgress& p) { seen.push_back(p); });
      CHECK(got.scores.sizes() == want_s.sizes());
      CHECK(torch::equal(got.scores, want_s));
      CHECK(torch::equal(got.indices, want_i));
      REQUIRE(static_cast<int64_t>(seen.size()) == (n + chunk - 1) / chunk);
      CHECK(seen.back().done == n);
      CHECK(seen.back().total == n);
    }
  }
  // real-valued data in double: the same rows in the same order
  const auto qd = torch::randn({12, 16}, torch::kDouble), cd = torch::randn({101, 16}, torch::kDouble);
  const auto [want_s, want_i] = full_matrix_top_k(qd, cd, 20);
  for (const int64_t chunk : {1, 7, 100, 101, 106}) {
    const auto got = exact_search(qd, cd, {.k = 20, .chunk_size = chunk});
    CHECK(torch::equal(got.indices, want_i));
    CHECK(torch::allclose(got.scores, want_s, 1e-12, 1e-12));
  }
}

TEST_CASE("exact search: streamed chunks of any size, k beyond the corpus, results as a run", "[eval]") {
  torch::manual_seed(12);
  const auto q = torch::randint(-1, 2, {4, 3}).to(torch::kFloat);
  const auto c = torch::randint(-1, 2, {20, 3}).to(torch::kFloat);
  std::vector<torch::Tensor> chunks{c.slice(0, 0, 5), c.slice(0, 5, 5), c.slice(0, 5, 17), c.slice(0, 17, 20)};
  const auto got = exact_search_chunks(q, chunks, 8);
  const auto [want_s, want_i] = full_matrix_top_k(q, c, 8);
  CHECK(torch::equal(got.indices, want_i));
  CHECK(torch::equal(got.scores, want_s));

  const auto all = exact_search(q, c.slice(0, 0, 6), {.k = 10, .chunk_size = 4});  // k > N: N columns
  CHECK(all.indices.sizes() == torch::IntArrayRef({4, 6}));

  std::vector<std::string> doc_ids;
  for (int i = 0; i < 20; ++i) doc_ids.push_back("doc" + std::to_string(i));
  const auto run = to_run(got, {"a", "b", "c", "d"}, doc_ids);
  CHECK(run.size() == 4);
  CHECK(run.at("a").size() == 8);
  CHECK(run.at("a").at(doc_ids[static_cast<std::size_t>(got.indices[0][0].item<int64_t>())]) ==
        got.scores[0][0].item<float>());

  CHECK_THROWS_WITH(exact_search(q, torch::randn({5, 4})), Contains("must be (n, 3)"));
  CHECK_THROWS_WITH(exact_search(q, c, {.k = 0}), Contains("k must be positive"));
  CHECK_THROWS_WITH(exact_search(q, c, {.chunk_size = 0}), Contains("chunk_size must be positive"));
  auto with_nan = c.clone();
  with_nan[3][0] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(exact_search(q, with_nan, {.chunk_size = 8}), Contains("non-finite score against corpus rows [0, 8)"));
}
