// The main job: fine-tune all-MiniLM-L6-v2 on the Debian package-description dataset
// (data/debian-beir: short description -> long description) with ContAccum at a fixed
// micro-batch size, and evaluate retrieval before and after.
//
//   retrieval [--quick] [--steps N] [--out DIR] [--data DIR] [--model DIR]
//
// Writes into --out (default out/main): log.jsonl (one line per step), metrics.json
// (before/after), results.md (the table), model/ (a sentence-transformers folder).
// --quick trains a few steps on a small slice (what the test suite runs).
#include <contaccum/contaccum.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

namespace ca = contaccum;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct JobConfig {
  fs::path data = "data/debian-beir";
  fs::path model = "models/all-MiniLM-L6-v2";
  fs::path out = "out/main";
  int64_t steps = 60;             ///< optimizer steps (about 7 min here; 11.5 min with both evaluations)
  int64_t n_local = 16;           ///< pairs per forward/backward: the memory budget
  int64_t n_total = 64;           ///< pairs per optimizer step (K = 4 micro-batches)
  int64_t bank = 512;             ///< ContAccum's N_memory
  double learning_rate = 3e-5;
  double temperature = 0.05;
  int64_t eval_queries = 1000;    ///< test queries
  int64_t eval_corpus = 10000;    ///< test positives + seeded distractors from the corpus
  ca::TokenizeConfig tokenize{.query_max_length = 32, .passage_max_length = 128};
  uint64_t seed = 13;
};

using Reader = ca::Normalized<ca::MeanPooling>;
using Model = ca::DualEncoder<ca::Bert, Reader, ca::SharedTower>;
using Loss = ca::InfoNCE<ca::Cosine>;
using Job = ca::Trainer<Model, ca::ContAccum<ca::DualBank>, ca::FullFineTune, Loss>;

// A one-line progress bar on stderr.
class Progress {
public:
  explicit Progress(std::string what, int64_t total) : what_(std::move(what)), total_(total) {}
  void update(int64_t done, const std::string& extra = "") {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total_ - done) : 0;
    const int width = 24, filled = static_cast<int>(width * done / std::max<int64_t>(total_, 1));
    std::fprintf(stderr, "\r%-10s [%s%s] %lld/%lld %s elapsed %4.0fs eta %4.0fs ", what_.c_str(),
                 std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(width - filled), '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), extra.c_str(), elapsed, eta);
    if (done >= total_) std::fprintf(stderr, "\n");
  }

private:
  std::string what_;
  int64_t total_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

// The evaluation set: test queries, and a corpus of their positives plus distractors.
struct EvalSet {
  std::vector<std::string> query_ids, queries, doc_ids, passages;
  ca::Qrels qrels;
};

EvalSet make_eval_set(const ca::BeirDataset& test, const JobConfig& c) {
  EvalSet e;
  std::unordered_set<std::string> in_corpus;
  const auto index = test.corpus_index();
  auto add_doc = [&](const ca::Passage& p) {
    if (in_corpus.insert(p.id).second) {
      e.doc_ids.push_back(p.id);
      e.passages.push_back(ca::passage_text(p, c.tokenize));
    }
  };
  const auto order = ca::seeded_permutation(test.queries.size(), c.seed);
  for (std::size_t k = 0; k < order.size() && static_cast<int64_t>(e.queries.size()) < c.eval_queries; ++k) {
    const auto& q = test.queries[order[k]];
    e.query_ids.push_back(q.id);
    e.queries.push_back(q.text);
    e.qrels[q.id] = test.qrels.at(q.id);
    for (const auto& [doc, score] : test.qrels.at(q.id)) add_doc(test.corpus[index.at(doc)]);
  }
  const auto shuffled = ca::seeded_permutation(test.corpus.size(), c.seed + 1);
  for (std::size_t k = 0; k < shuffled.size() && static_cast<int64_t>(e.doc_ids.size()) < c.eval_corpus; ++k)
    add_doc(test.corpus[shuffled[k]]);
  return e;
}

template <class Tok>
ca::Evaluation evaluate_model(Model& model, const Tok& tok, const EvalSet& e, const JobConfig& c, const char* label) {
  Progress passages(std::string(label) + " docs", static_cast<int64_t>(e.passages.size()));
  const auto docs = ca::embed_texts(model->query_encoder, Reader{}, tok, e.passages,
                                    {.batch_size = 64, .max_length = c.tokenize.passage_max_length,
                                     .progress = [&](std::size_t d, std::size_t) { passages.update(static_cast<int64_t>(d)); }});
  const auto queries = ca::embed_texts(model->query_encoder, Reader{}, tok, e.queries,
                                       {.batch_size = 64, .max_length = c.tokenize.query_max_length});
  const auto top = ca::exact_search(queries, docs, {.k = 100});
  return ca::evaluate(e.qrels, ca::to_run(top, e.query_ids, e.doc_ids));
}

json metrics_json(const ca::Evaluation& ev) {
  json j;
  for (std::size_t i = 0; i < ev.measures.size(); ++i) j[ev.measures[i]] = ev.mean[i];
  return j;
}

}  // namespace

int main(int argc, char** argv) try {
  JobConfig c;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      ca::detail::require(i + 1 < argc, "option ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--quick") quick = true;
    else if (a == "--steps") c.steps = std::stoll(value());
    else if (a == "--out") c.out = value();
    else if (a == "--data") c.data = value();
    else if (a == "--model") c.model = value();
    else ca::detail::require(false, "unknown option '", a, "' (--quick, --steps N, --out DIR, --data DIR, --model DIR)");
  }
  if (quick) {  // a tiny slice seen several times: the loss must fall
    c.steps = std::min<int64_t>(c.steps, 20);
    c.n_local = 4;
    c.n_total = 8;
    c.bank = 32;
    c.eval_queries = 100;
    c.eval_corpus = 600;
    c.learning_rate = 5e-5;
  }
  torch::manual_seed(static_cast<uint64_t>(c.seed));
  fs::create_directories(c.out);
  std::cout << "contaccum main job: " << (quick ? "quick slice" : "full run") << "\n"
            << "  data " << c.data << ", model " << c.model << ", out " << c.out << "\n"
            << "  ContAccum: N_local " << c.n_local << " (memory budget), N_total " << c.n_total << " (K = "
            << c.n_total / c.n_local << "), N_memory " << c.bank << ", " << c.steps << " steps, lr " << c.learning_rate
            << ", cosine / " << c.temperature << "\n";

  // Data: training pairs from the train split; evaluation on test queries.
  const auto train = ca::read_beir(c.data, "train");
  const auto test = ca::read_beir(c.data, "test");
  auto examples = ca::beir_training_examples(train);
  if (quick) examples.resize(std::min<std::size_t>(examples.size(), 40));
  const EvalSet eval = make_eval_set(test, c);
  std::cout << "  " << examples.size() << " training queries; evaluation: " << eval.queries.size() << " test queries against "
            << eval.passages.size() << " passages\n";

  const auto tok = ca::tokenizers::WordPiece::from_pretrained(c.model);
  const auto st = ca::read_sentence_transformer_config(c.model);
  ca::require_pooling<Reader>(st, c.model.string());
  Model model(ca::load_bert(c.model));

  const auto before = evaluate_model(model, tok, eval, c, "before");
  std::cout << "  before: nDCG@10 " << before["nDCG@10"] << ", MRR@10 " << before["MRR@10"] << ", Recall@100 "
            << before["Recall@100"] << "\n";

  // A fixed batch of training pairs, scored with in-batch negatives before and after
  // training: the honest "the loss falls" (step losses rise while the bank fills up).
  const ca::PairSampler probe_sampler(examples, {.seed = c.seed, .hard_negatives_per_query = 0});
  std::vector<ca::TextPair> probe_pairs;
  for (std::size_t i = 0; i < std::min<std::size_t>(probe_sampler.size(), 32); ++i) probe_pairs.push_back(probe_sampler.sample(i, 0));
  const ca::PairBatch probe = ca::tokenize_pairs(tok, std::span<const ca::TextPair>(probe_pairs), c.tokenize);
  const Loss loss_fn{ca::Cosine{c.temperature}};
  auto probe_loss = [&] {
    torch::NoGradGuard no_grad;
    const bool was_training = model->is_training();
    model->eval();
    const double l = loss_fn(model->encode_queries(probe.queries), model->encode_passages(probe.positives)).item<double>();
    model->train(was_training);
    return l;
  };
  const double probe_before = probe_loss();

  ca::PairLoader<ca::tokenizers::WordPiece> loader(
      ca::PairSampler(std::move(examples), {.seed = c.seed, .hard_negatives_per_query = 0}), tok,
      {.batch_size = c.n_total, .tokenize = c.tokenize});
  Job trainer(model,
              {.micro_batch_size = c.n_local, .learning_rate = c.learning_rate,
               .warmup_steps = std::max<int64_t>(1, c.steps / 10), .total_steps = c.steps, .max_grad_norm = 2.0},
              ca::ContAccum<ca::DualBank>({.capacity = c.bank}), Loss{ca::Cosine{c.temperature}});
  std::ofstream log(c.out / "log.jsonl");
  Progress bar("train", c.steps);
  double first_loss = 0, last_loss = 0;
  int64_t pairs = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < c.steps; ++s) {
    const ca::StepStats st_ = trainer.step(loader.next());
    pairs += st_.pairs;
    if (s == 0) first_loss = st_.loss;
    last_loss = st_.loss;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log << json{{"step", st_.step}, {"loss", st_.loss}, {"negatives_per_query", st_.negatives_per_query},
                {"grad_norm", st_.grad_norm}, {"grad_norm_ratio", st_.grad_norm_ratio}, {"lr", st_.learning_rate},
                {"seconds", st_.seconds}, {"pairs_per_s", static_cast<double>(pairs) / secs},
                {"peak_memory_mib", static_cast<double>(st_.peak_memory_bytes) / (1 << 20)}}
               .dump()
        << "\n";
    std::ostringstream extra;
    extra << std::fixed << std::setprecision(3) << "loss " << st_.loss << " neg/q " << std::setprecision(0)
          << st_.negatives_per_query << " " << std::setprecision(1) << static_cast<double>(pairs) / secs << " pairs/s";
    bar.update(s + 1, extra.str());
  }
  log.flush();

  const auto after = evaluate_model(model, tok, eval, c, "after");
  const auto out_model = c.out / "model";
  ca::save_sentence_transformer<Reader>(model->query_encoder, c.model, out_model, st.max_seq_length);

  // The export reloads: the saved folder gives the trained model's embeddings.
  auto reloaded = ca::load_bert(out_model);
  const auto reloaded_tok = ca::tokenizers::load_tokenizer(out_model);
  const std::vector<std::string> some(eval.queries.begin(), eval.queries.begin() + std::min<std::size_t>(eval.queries.size(), 16));
  const double reload_diff = (ca::embed_texts(reloaded, Reader{}, reloaded_tok, some) -
                              ca::embed_texts(model->query_encoder, Reader{}, tok, some))
                                 .abs().max().item<double>();
  const double probe_after = probe_loss();

  json metrics{{"before", metrics_json(before)}, {"after", metrics_json(after)}, {"steps", c.steps},
               {"first_loss", first_loss}, {"last_loss", last_loss}, {"probe_loss_before", probe_before},
               {"probe_loss_after", probe_after}, {"export_reload_max_abs_diff", reload_diff}, {"eval_queries", eval.queries.size()},
               {"eval_passages", eval.passages.size()}};
  std::ofstream(c.out / "metrics.json") << metrics.dump(2) << "\n";
  std::ostringstream table;
  table << "| measure | before (all-MiniLM-L6-v2) | after (ContAccum, " << c.steps << " steps) |\n|---|---:|---:|\n";
  for (std::size_t i = 0; i < before.measures.size(); ++i)
    table << "| " << before.measures[i] << " | " << std::fixed << std::setprecision(4) << before.mean[i] << " | "
          << after.mean[i] << " |\n";
  std::ofstream(c.out / "results.md") << table.str();
  std::cout << "\n" << table.str() << "\n  loss on a fixed batch of " << probe.size() << " training pairs (in-batch negatives): "
            << probe_before << " before, " << probe_after << " after"
            << (probe_after < probe_before ? ": the loss fell" : ": the loss did NOT fall") << "\n  model exported to " << out_model
            << " (sentence-transformers folder); reloaded, max abs embedding difference " << reload_diff
            << (reload_diff <= 1e-5 ? ": the export reloads identically" : ": the export does NOT reload") << "\n  log "
            << (c.out / "log.jsonl").string() << ", metrics " << (c.out / "metrics.json").string() << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "\nerror: " << e.what() << "\n";
  return 1;
}
