#pragma once
// `retrieval train`: fine-tune all-MiniLM-L6-v2 on the training split with ContAccum at a
// fixed micro-batch size (the memory budget), evaluate before and after, export.

#include "job.hpp"
#include "mine.hpp"

#include <contaccum/dist/single_process.hpp>
#ifdef CONTACCUM_WITH_C10D
#include <contaccum/dist/c10d.hpp>
#endif

#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

namespace retrieval {

struct TrainConfig {
  fs::path data = "data/debian-beir";
  fs::path model = "models/all-MiniLM-L6-v2";
  fs::path out = "out/main";
  fs::path train_file;            ///< --train: pairs from this file (JSONL, TSV, DPR JSON or a BEIR folder) instead of the train split
  int64_t steps = 60;             ///< optimizer steps (about 7 min here; 11.5 min with both evaluations)
  int64_t n_local = 16;           ///< pairs per forward/backward: the memory budget
  int64_t n_total = 64;           ///< pairs per optimizer step (K = 4 micro-batches)
  int64_t bank = 512;             ///< ContAccum's N_memory
  double learning_rate = 3e-5;
  double temperature = 0.05;
  int64_t eval_queries = 1000;    ///< test queries
  int64_t eval_corpus = 10000;    ///< test positives + seeded distractors from the corpus
  int64_t save_every = 20;        ///< checkpoint every N steps (out/checkpoints, the last 2 and the best kept)
  int64_t eval_every = 20;        ///< dev evaluation every N steps (picks the best checkpoint)
  int64_t dev_queries = 200;      ///< dev queries of that evaluation
  int64_t dev_corpus = 2000;      ///< their positives + seeded distractors
  ca::TokenizeConfig tokenize{.query_max_length = 32, .passage_max_length = 128};
  uint64_t seed = 13;
  ca::Precision precision = ca::Precision::fp32;  ///< --precision: fp32 or bf16 (autocast in the encoders)
  ca::Precision bank_dtype = ca::Precision::fp32;  ///< --bank-dtype: the type the bank stores its rows in
  int64_t train_queries = 0;      ///< --train-queries: a seeded subset of the training queries (0: all)
  bool mine_negatives = false;    ///< --mine-negatives: mine hard negatives with the pretrained model first
  int64_t negatives = 1;          ///< --negatives: mined negatives per query (m)
  int64_t mine_corpus = 10000;    ///< --mine-corpus: passages the mining searches
  /// --query-prompt / --passage-prompt: instruction prefixes per side (E5's "query: ",
  /// "passage: "); unset: the model folder's prompts (config_sentence_transformers.json)
  std::optional<std::string> query_prompt, passage_prompt;
};

// BankConfig::storage_dtype for --bank-dtype: fp32 keeps the rows as enqueued.
inline torch::ScalarType bank_storage(ca::Precision p) {
  if (p == ca::Precision::bf16) return torch::kBFloat16;
  if (p == ca::Precision::fp16) return torch::kHalf;
  return torch::ScalarType::Undefined;
}

inline constexpr const char* train_usage =
    "retrieval [train] [--quick] [--steps N] [--out DIR] [--data DIR] [--model DIR] [--save-every N] "
    "[--eval-every N] [--eval-queries N] [--eval-corpus N] [--train FILE] [--lr X] [--precision fp32|bf16|fp16] [--bank-dtype fp32|bf16|fp16] [--train-queries N] [--mine-negatives [--negatives M] [--mine-corpus N]] "
    "[--query-prompt TEXT] [--passage-prompt TEXT] [--resume | --fresh] [--nproc N]";

inline constexpr const char* train_help =
    "  the main job: fine-tunes a sentence-transformers model with ContAccum (N_local pairs per\n"
    "  forward/backward, N_total per step, a bank of N_memory), evaluates before and after, exports it\n"
    "  --quick          a 20-step slice with small evaluations (a first look; the tests run it)\n"
    "  --steps N        optimizer steps (default 60)\n"
    "  --lr X           peak learning rate (default 3e-5; --quick 5e-5)\n"
    "  --precision P    fp32 (default), bf16 or fp16 autocast in the encoders\n"
    "  --bank-dtype P   fp32 (default), bf16 or fp16: the bank's rows stored in 2 bytes a value (half what\n"
    "                   it holds between steps and in checkpoints), read back and scored in fp32\n"
    "  --data DIR       a BEIR folder with train/dev/test qrels (default data/debian-beir)\n"
    "  --train FILE     train on these pairs instead of the train split: JSONL ({\"query\", \"pos\", \"neg\"}),\n"
    "                   TSV (query, positive[, negative]), DPR JSON or a BEIR folder; dev and test stay --data's\n"
    "  --train-queries N  train on a seeded subset of N training queries (default: all)\n"
    "  --mine-negatives first mine hard negatives with the pretrained model (the training queries'\n"
    "                   positives + seeded distractors, 5% relative margin), then train with M per query;\n"
    "                   they are written to OUT/mined.jsonl. Without --train-queries it trains on the\n"
    "                   N_total x steps queries a run draws. --negatives M (default 1), --mine-corpus N\n"
    "                   passages searched (default 10000)\n"
    "  --model DIR      a sentence-transformers folder (default models/all-MiniLM-L6-v2)\n"
    "  --query-prompt TEXT, --passage-prompt TEXT   prepended to every query / passage (E5 uses\n"
    "                   \"query: \" and \"passage: \"); default: the model folder's prompts, if any.\n"
    "                   The export saves them: sentence-transformers' encode_query/encode_document apply them\n"
    "  --out DIR        run folder: log.jsonl, checkpoints/, metrics.json, plots, model/ (default out/main)\n"
    "  --save-every N   checkpoint every N steps (default 20); --eval-every N: dev evaluation (default 20)\n"
    "  --eval-queries N, --eval-corpus N   the test evaluation's size (default 1000 queries, 10000 passages)\n"
    "  --resume | --fresh   continue from the latest checkpoint / start over (default: continue an\n"
    "                   unfinished run, start over after a finished one)\n"
    "  --nproc N        N local ranks over c10d/Gloo (or start it under torchrun --no-python)\n";

// The step records of a run's log.jsonl (all of them: a resumed run's too), for the plots.
inline std::vector<ca::StepStats> read_step_log(const fs::path& file) {
  std::vector<ca::StepStats> steps;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    const auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || j.value("event", std::string{}) != "step") continue;
    steps.push_back({.step = j["step"], .pairs = j["pairs"], .loss = j["loss"],
                     .negatives_per_query = j["negatives_per_query"], .grad_norm = j["grad_norm"],
                     .learning_rate = j["lr"]});
  }
  return steps;
}

// The plots of a training run: loss and negatives per query, gradient norm and learning
// rate, and the metrics before/after. Data files are kept next to the PNGs.
inline void plot_training(const fs::path& out, const std::vector<ca::StepStats>& log, const ca::Evaluation& before,
                          const ca::Evaluation& after) {
  std::ostringstream steps, metrics;  // written whole, checked (a full disk is an error, not a 0-byte plot)
  steps << "# step loss negatives_per_query grad_norm learning_rate\n";
  for (const auto& s : log)
    steps << s.step << " " << s.loss << " " << s.negatives_per_query << " " << s.grad_norm << " " << s.learning_rate
          << "\n";
  metrics << "# index measure before after\n";
  for (std::size_t i = 0; i < before.measures.size(); ++i)
    metrics << i << " \"" << before.measures[i] << "\" " << before.mean[i] << " " << after.mean[i] << "\n";
  ca::detail::write_file_atomically(out / "plot_steps.dat", steps.str());
  ca::detail::write_file_atomically(out / "plot_metrics.dat", metrics.str());
  ca::detail::write_file_atomically(out / "plots.gp", R"gp(# Plots of a `retrieval train` run (run `gnuplot plots.gp` in this folder).
set terminal pngcairo size 1000,700 font "sans,10" noenhanced
set output "training.png"
set multiplot layout 2,1 title "ContAccum fine-tuning of all-MiniLM-L6-v2 (log.jsonl)"
set grid
set xlabel "optimizer step"
set ylabel "training loss"
set y2label "negatives per query"
set y2tics
set ytics nomirror
plot "plot_steps.dat" using 1:2 with linespoints pt 7 ps 0.4 lc rgb "#4477aa" title "loss", \
     "" using 1:3 axes x1y2 with lines dt 2 lc rgb "#aa3377" title "negatives per query"
set ylabel "gradient norm (before clipping)"
set y2label "learning rate"
plot "plot_steps.dat" using 1:4 with linespoints pt 7 ps 0.4 lc rgb "#228833" title "gradient norm", \
     "" using 1:5 axes x1y2 with lines dt 2 lc rgb "#666666" title "learning rate"
unset multiplot
set output "metrics.png"
set terminal pngcairo size 800,420 font "sans,10" noenhanced
set title "retrieval on held-out test queries, before and after fine-tuning"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
unset y2tics
unset y2label
set ytics mirror
set xlabel ""
set ylabel "score"
set yrange [0:1.08]
set key top left
plot "plot_metrics.dat" using 3:xtic(2) title "before" lc rgb "#bbbbbb", \
     "" using 4 title "after" lc rgb "#4477aa"
)gp");
  run_gnuplot(out, "plots.gp", {"training.png", "metrics.png"});
}

template <class C>
int train_with(TrainConfig c, bool quick, bool resume, bool fresh, C collective) {
  using Model = ca::DualEncoder<ca::Bert, Reader, ca::SharedTower>;
  using Job = ca::Trainer<Model, ca::ContAccum<ca::DualBank>, ca::FullFineTune, Loss, C>;
  const int64_t rank = collective.rank(), world = collective.world_size();
  const bool main_rank = rank == 0;  // prints, evaluates and writes; every rank trains
  ca::detail::require(c.n_total % world == 0 && (c.n_total / world) % c.n_local == 0, "N_total ", c.n_total,
                      " must split over ", world, " ranks into micro-batches of N_local ", c.n_local);
  std::ostringstream discard;
  std::ostream& say = main_rank ? std::cout : discard;

  torch::manual_seed(static_cast<uint64_t>(c.seed));
  if (main_rank) ca::detail::require_writable_folder(c.out);  // before any work
  // A finished run wrote metrics.json last; without it the folder holds an unfinished run,
  // which a rerun continues from its latest checkpoint (--fresh starts over).
  const bool finished = fs::exists(c.out / "metrics.json");
  const bool has_checkpoint = fs::exists(c.out / "checkpoints" / "latest");
  ca::detail::require(!resume || has_checkpoint, "--resume: no checkpoint in ", (c.out / "checkpoints").string());
  const bool continuing = resume || (has_checkpoint && !finished && !fresh);
  (void)collective.any_rank(false);  // a barrier: every rank has looked at the folder before rank 0 changes it
  if (main_rank && !continuing) {
    std::error_code ec;
    fs::remove_all(c.out / "checkpoints", ec);
    fs::remove_all(c.out / "tensorboard", ec);
  }
  if (main_rank) fs::remove(c.out / "metrics.json");  // from here until the end the folder is an unfinished run
  say << "contaccum main job: " << (quick ? "quick slice" : "full run")
            << (continuing ? " (continuing from the latest checkpoint)" : "") << "\n"
            << "  data " << c.data << ", model " << c.model << ", out " << c.out << "\n"
            << "  ContAccum: N_local " << c.n_local << " (memory budget), N_total " << c.n_total << " (K = "
            << c.n_total / world / c.n_local << " per rank), N_memory " << c.bank
            << (c.bank_dtype != ca::Precision::fp32 ? ca::detail::cat(" (", ca::to_string(c.bank_dtype), " rows)") : "")
            << ", " << c.steps << " steps, lr "
            << c.learning_rate << (world > 1 ? ca::detail::cat(", ", world, " ranks (c10d/Gloo)") : std::string())
            << ", cosine / " << c.temperature << "; checkpoint every " << c.save_every << " steps, dev evaluation every "
            << c.eval_every << std::endl;

  // Data: training pairs from the train split (or the user's --train file); the best
  // checkpoint by dev queries; evaluation on test queries.
  std::vector<ca::TextExample> examples;
  std::vector<ca::Passage> corpus;  // what mining searches: the BEIR corpus, or the --train file's passages
  // one parse of the corpus for every split the job reads
  auto splits = c.train_file.empty() ? ca::read_beir_splits(c.data, {"dev", "test", "train"})
                                     : ca::read_beir_splits(c.data, {"dev", "test"});
  if (c.train_file.empty()) {
    auto& train_split = splits[2];
    require_queries(train_split, c.data, "train", "trains on");
    examples = ca::beir_training_examples(train_split);
    if (c.mine_negatives) corpus = std::move(train_split.corpus);
  } else {
    auto read = ca::read_training_examples(c.train_file);
    ca::detail::require(!read.records.empty(), "--train ", c.train_file.string(), ": no training pairs in it (",
                        read.stats.summary(), ")");
    say << "  training pairs from " << c.train_file.string() << ": " << read.stats.summary() << std::endl;
    ca::detail::require(static_cast<int64_t>(read.records.size()) >= c.n_total, "--train ", c.train_file.string(),
                        ": ", read.records.size(), " pairs cannot fill one step of N_total ", c.n_total, " pairs");
    examples = std::move(read.records);
  }
  const auto dev = std::move(splits[0]);
  const auto test = std::move(splits[1]);
  require_queries(dev, c.data, "dev", "picks the best checkpoint by");
  require_queries(test, c.data, "test", "evaluates on");
  if (quick) examples.resize(std::min<std::size_t>(examples.size(), 40));
  // mining mines for the queries a run draws: a seeded subset of steps x N_total unless told
  if (c.mine_negatives && c.train_queries == 0) c.train_queries = c.steps * c.n_total;
  if (c.train_queries > 0 && static_cast<int64_t>(examples.size()) > c.train_queries) {
    auto order = ca::seeded_permutation(examples.size(), c.seed + 2);
    order.resize(static_cast<std::size_t>(c.train_queries));
    std::sort(order.begin(), order.end());
    std::vector<ca::TextExample> subset;
    for (auto i : order) subset.push_back(std::move(examples[i]));
    examples = std::move(subset);
  }
  const auto st = ca::read_sentence_transformer_config(c.model);
  ca::require_pooling<Reader>(st, c.model.string());
  c.tokenize.query_prompt = c.query_prompt.value_or(st.query_prompt);
  c.tokenize.passage_prompt = c.passage_prompt.value_or(st.document_prompt);
  if (!c.tokenize.query_prompt.empty() || !c.tokenize.passage_prompt.empty())
    say << "  prompts: query \"" << c.tokenize.query_prompt << "\", passage \"" << c.tokenize.passage_prompt << "\"\n";
  const EvalSet eval = make_eval_set(test, c.eval_queries, c.eval_corpus, c.seed, c.tokenize);
  const EvalSet dev_eval = make_eval_set(dev, c.dev_queries, c.dev_corpus, c.seed, c.tokenize);
  const auto training_queries = std::ssize(examples);  // for the model card
  say << "  " << examples.size() << " training queries; evaluation: " << eval.queries.size()
            << " test queries against " << eval.passages.size() << " passages (dev: " << dev_eval.queries.size()
            << " against " << dev_eval.passages.size() << ")" << std::endl;

  const auto tok = ca::tokenizers::WordPiece::from_pretrained(c.model);
  Model model(ca::load_bert(c.model));
  model->query_encoder->set_unpadded(true);  // per-token work on real tokens only (one shared tower)
  ca::tokenizers::require_fits_model(tok, model->query_encoder->config().vocab_size, c.model.string());

  if (c.mine_negatives) {  // rank 0 mines and writes mined.jsonl; the other ranks read it
    if (!c.train_file.empty())
      for (const auto& e : examples)
        for (const auto* list : {&e.positives, &e.hard_negatives, &e.negatives})
          corpus.insert(corpus.end(), list->begin(), list->end());
    std::unordered_set<std::string> held_out;  // judged passages of the evaluation splits
    for (const auto* split : {&dev.qrels, &test.qrels})
      for (const auto& [query, docs] : *split)
        for (const auto& [doc, score] : docs) held_out.insert(doc);
    if (main_rank)
      examples = mine_for_training(model->query_encoder, tok, std::move(examples), corpus, held_out,
                                   {.negatives = c.negatives, .pool = c.mine_corpus, .seed = c.seed,
                                    .tokenize = c.tokenize, .model = c.model, .out = c.out},
                                   say);
    (void)collective.any_rank(false);  // a barrier: mined.jsonl is written before the other ranks read it
    if (!main_rank) examples = ca::read_training_examples(c.out / "mined.jsonl").records;
    corpus = {};
  }
  const int64_t m = c.mine_negatives ? c.negatives : 0;  // hard negatives per query

  ca::Evaluation before;
  if (main_rank) before = evaluate_towers(model->query_encoder, model->passage_encoder, tok, eval, c.tokenize, "before");
  if (main_rank)
    std::cout << "  before: nDCG@10 " << before["nDCG@10"] << ", MRR@10 " << before["MRR@10"] << ", Recall@100 "
              << before["Recall@100"] << std::endl;

  // A fixed batch of training pairs, scored with in-batch negatives before and after
  // training: the honest "the loss falls" (step losses rise while the bank fills up).
  const ca::PairSampler probe_sampler(examples, {.seed = c.seed, .hard_negatives_per_query = 0});
  std::vector<ca::TextPair> probe_pairs;
  for (std::size_t i = 0; i < std::min<std::size_t>(probe_sampler.size(), 32); ++i)
    probe_pairs.push_back(probe_sampler.sample(i, 0));
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

  // every rank draws the global batch of N_total pairs and trains on its share
  ca::ShardedLoader loader(ca::PairLoader<ca::tokenizers::WordPiece>(
                               ca::PairSampler(std::move(examples), {.seed = c.seed, .hard_negatives_per_query = m}),
                               tok, {.batch_size = c.n_total, .tokenize = c.tokenize}),
                           collective);
  Job trainer(model,
              {.micro_batch_size = c.n_local, .learning_rate = c.learning_rate,
               .warmup_steps = std::max<int64_t>(1, c.steps / 10), .total_steps = c.steps, .max_grad_norm = 2.0,
               .precision = c.precision},
              ca::ContAccum<ca::DualBank>({.capacity = c.bank, .storage_dtype = bank_storage(c.bank_dtype)}), {},
              Loss{ca::Cosine{c.temperature}}, collective);
  double collective_before = 0;
  if constexpr (requires { collective.collective_seconds(); }) collective_before = collective.collective_seconds();
  const auto fitted = ca::fit(
      trainer, loader,
      {.steps = c.steps, .out = c.out, .save_every = c.save_every, .resume = continuing, .eval_every = c.eval_every,
       .evaluate =
           [&](int64_t) {
             std::fprintf(stderr, "\n");
             return metrics_json(
                 evaluate_towers(model->query_encoder, model->passage_encoder, tok, dev_eval, c.tokenize, "  dev"));
           },
       .checkpoints = {.keep_last = 2, .best_metric = "nDCG@10"},
       .on_step =
           [&](const ca::StepStats& s) {  // every rank sees the same gathered embeddings: every rank stops
             if (!s.collapse.empty())
               throw ca::error(ca::detail::cat("contaccum main job: training stopped after step ", s.step, ": ",
                                               s.collapse, ". Nothing was exported; rerun with a lower --lr (",
                                               c.learning_rate, " now) and --fresh"));
           }});
  if (fitted.resumed_from)
    say << "  resumed from " << fitted.resumed_from->string() << " (step " << fitted.first_step << ")\n";
  if (fitted.stopped_by_signal) {
    say << "\n  stopped by signal " << fitted.stopped_by_signal << " after step " << fitted.steps_done
              << "; checkpoint " << (fitted.last_checkpoint ? fitted.last_checkpoint->string() : std::string("none"))
              << "\n  continue with: ./build/examples/retrieval " << (quick ? "--quick " : "") << "--out " << c.out.string()
              << " --resume" << std::endl;
    return fitted.exit_code();
  }
  if (!main_rank) return 0;  // the other ranks' part ends with the training
  const std::vector<ca::StepStats> history = read_step_log(c.out / "log.jsonl");
  ca::detail::require(static_cast<int64_t>(history.size()) == c.steps, (c.out / "log.jsonl").string(), " holds ",
                      history.size(), " steps, the run made ", c.steps);

  const auto after = evaluate_towers(model->query_encoder, model->passage_encoder, tok, eval, c.tokenize, "after");
  // The export goes to a temporary folder renamed into place: a killed export never
  // leaves a half folder that looks whole.
  const auto out_model = c.out / "model";
  const auto tmp_model = c.out / ".tmp-model";
  fs::remove_all(tmp_model);
  try {
    ca::ModelCard card{
        .base_model = c.model.filename().string(),
        .datasets = c.train_file.empty() ? ca::detail::cat("the train split of ", c.data.string(), " (BEIR folder), ",
                                                           training_queries, " queries")
                                         : ca::detail::cat(c.train_file.string(), ", ", training_queries, " queries"),
        .training = ca::detail::cat("ContAccum with a dual memory bank: N_local ", c.n_local, ", N_total ", c.n_total,
                                    ", N_memory ", c.bank, ", ", c.steps, " steps, lr ", c.learning_rate,
                                    ", cosine similarity / temperature ", c.temperature, ", ", m,
                                    " hard negatives per query", c.mine_negatives ? " (mined)" : "", ", ",
                                    ca::to_string(c.precision), world > 1 ? ca::detail::cat(", ", world, " ranks") : ""),
        .evaluated_on = ca::detail::cat(eval.queries.size(), " test queries of ", c.data.string(), " against ",
                                        eval.passages.size(), " passages (their positives and seeded distractors)")};
    for (std::size_t i = 0; i < after.measures.size(); ++i) card.metrics.emplace_back(after.measures[i], after.mean[i]);
    ca::save_sentence_transformer<Reader>(model->query_encoder, c.model, tmp_model,
                                          ca::SentenceTransformerExport{.max_seq_length = st.max_seq_length,
                                                                        .query_prompt = c.tokenize.query_prompt,
                                                                        .document_prompt = c.tokenize.passage_prompt,
                                                                        .card = std::move(card)});
  } catch (...) {  // a failed export (a full disk) leaves no half folder behind
    std::error_code ec;
    fs::remove_all(tmp_model, ec);
    throw;
  }
  fs::remove_all(out_model);
  fs::rename(tmp_model, out_model);

  // The export reloads: the saved folder gives the trained model's embeddings.
  auto reloaded = ca::load_bert(out_model);
  const auto reloaded_tok = ca::tokenizers::load_tokenizer(out_model);
  const std::vector<std::string> some(eval.queries.begin(),
                                      eval.queries.begin() + std::min<std::ptrdiff_t>(std::ssize(eval.queries), 16));
  const double reload_diff = (ca::embed_texts(reloaded, Reader{}, reloaded_tok, some) -
                              ca::embed_texts(model->query_encoder, Reader{}, tok, some))
                                 .abs()
                                 .max()
                                 .item<double>();
  const double probe_after = probe_loss();

  double train_seconds = 0;
  for (const auto& st : fitted.history) train_seconds += st.seconds;
  json metrics{{"before", metrics_json(before)},
               {"after", metrics_json(after)},
               {"steps", c.steps},
               {"first_loss", history.front().loss},
               {"last_loss", history.back().loss},
               {"probe_loss_before", probe_before},
               {"probe_loss_after", probe_after},
               {"export_reload_max_abs_diff", reload_diff},
               {"eval_queries", eval.queries.size()},
               {"ranks", world},
               {"precision", std::string(ca::to_string(c.precision))},
               {"bank_dtype", std::string(ca::to_string(c.bank_dtype))},
               {"hard_negatives_per_query", m},
               {"mined_negatives", c.mine_negatives},
               {"train_seconds_this_call", train_seconds},
               {"pairs_per_s", train_seconds > 0 ? static_cast<double>(c.n_total * std::ssize(fitted.history)) /
                                                       train_seconds : 0.0},
               {"eval_passages", eval.passages.size()}};

  if constexpr (requires { collective.collective_seconds(); }) {
    const double in_collectives = collective.collective_seconds() - collective_before;
    metrics["collective_seconds_this_call"] = in_collectives;
    std::ostringstream line;
    line << "  " << world << " ranks: " << std::setprecision(3) << metrics["pairs_per_s"].get<double>()
         << " pairs/s (global); rank 0 spent " << in_collectives << " s of " << train_seconds
         << " s of training steps in collectives (waiting for the other rank included)";
    std::cout << line.str() << std::endl;
  }
  std::ostringstream table;
  table << "| measure | before (all-MiniLM-L6-v2) | after (ContAccum, " << c.steps << " steps) |\n|---|---:|---:|\n";
  for (std::size_t i = 0; i < before.measures.size(); ++i)
    table << "| " << before.measures[i] << " | " << std::fixed << std::setprecision(4) << before.mean[i] << " | "
          << after.mean[i] << " |\n";
  ca::detail::write_file_atomically(c.out / "results.md", table.str());
  plot_training(c.out, history, before, after);
  if (const auto best = ca::CheckpointFolder(c.out / "checkpoints").best()) metrics["best_checkpoint"] = best->string();
  ca::detail::write_file_atomically(c.out / "metrics.json", metrics.dump(2) + "\n");  // last: the run is complete
  std::cout << "\n"
            << table.str() << "\n  loss on a fixed batch of " << probe.size()
            << " training pairs (in-batch negatives): " << probe_before << " before, " << probe_after << " after"
            << (probe_after < probe_before ? ": the loss fell" : ": the loss did NOT fall") << "\n  model exported to "
            << out_model << " (sentence-transformers folder, model card in README.md); reloaded, max abs embedding difference " << reload_diff
            << (reload_diff <= 1e-5 ? ": the export reloads identically" : ": the export does NOT reload")
            << "\n  log " << (c.out / "log.jsonl").string() << ", metrics " << (c.out / "metrics.json").string()
            << (fs::exists(c.out / "training.png") && fs::exists(c.out / "metrics.png") ? "\n  plots drawn: "
                                                                                       : "\n  plots were NOT drawn: ")
            << (c.out / "training.png").string() << ", " << (c.out / "metrics.png").string()
            << "\n  try it: ./build/examples/retrieval search --model " << out_model.string() << " --data "
            << c.data.string() << " \"a text editor\""
            << std::endl;
  return 0;
}

inline int train(Args& args) {
  TrainConfig c;
  const bool quick = args.flag("--quick");
  const bool resume = args.flag("--resume"), fresh = args.flag("--fresh");
  if (quick) {  // a tiny slice seen several times: the loss must fall
    c.steps = 20;
    c.n_local = 4;
    c.n_total = 8;
    c.bank = 32;
    c.eval_queries = 100;
    c.eval_corpus = 600;
    c.dev_queries = 50;
    c.dev_corpus = 300;
    c.save_every = 5;
    c.eval_every = 10;
    c.learning_rate = 5e-5;
  }
  c.steps = args.integer("--steps", c.steps);
  c.save_every = args.integer("--save-every", c.save_every);
  c.eval_every = args.integer("--eval-every", c.eval_every);
  c.eval_queries = args.integer("--eval-queries", c.eval_queries);  // the test set; the dev set is never larger
  c.eval_corpus = args.integer("--eval-corpus", c.eval_corpus);
  ca::detail::require(c.eval_queries > 0 && c.eval_corpus > 0, "--eval-queries and --eval-corpus must be positive");
  c.dev_queries = std::min(c.dev_queries, c.eval_queries);
  c.dev_corpus = std::min(c.dev_corpus, c.eval_corpus);
  c.out = args.text("--out", c.out.string());
  c.data = args.text("--data", c.data.string());
  c.model = args.text("--model", c.model.string());
  c.train_file = args.text("--train", "");
  c.precision = ca::parse_precision(args.text("--precision", "fp32"), "--precision");
  c.bank_dtype = ca::parse_precision(args.text("--bank-dtype", "fp32"), "--bank-dtype");
  c.learning_rate = args.real("--lr", c.learning_rate);
  c.mine_negatives = args.flag("--mine-negatives");
  if (args.given("--query-prompt")) c.query_prompt = args.text("--query-prompt", "");
  if (args.given("--passage-prompt")) c.passage_prompt = args.text("--passage-prompt", "");
  c.train_queries = args.integer("--train-queries", 0);
  if (c.mine_negatives) {
    c.negatives = args.integer("--negatives", c.negatives);
    c.mine_corpus = args.integer("--mine-corpus", quick ? 400 : c.mine_corpus);
  }
  (void)args.integer("--nproc", 1);  // > 1 was handled in main(): this process is one of the ranks
  args.check_all_used(train_usage);
  ca::detail::require(!(resume && fresh), "--resume and --fresh exclude each other");
  if (world_size_from_environment() > 1) {  // a rank of `--nproc N` or of torchrun
#ifdef CONTACCUM_WITH_C10D
    return train_with(c, quick, resume, fresh, ca::C10dCollective::from_environment(std::chrono::minutes(30)));
#else
    throw ca::error("WORLD_SIZE > 1 but this build has no c10d (install libgloo-dev and rebuild)");
#endif
  }
  return train_with(c, quick, resume, fresh, ca::SingleProcess{});
}

}  // namespace retrieval
