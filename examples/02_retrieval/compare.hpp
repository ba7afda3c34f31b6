#pragma once
// `retrieval compare`: the ContAccum paper's Table 1 in miniature. The same pairs, the
// same number of optimizer steps and the same memory budget (N_local pairs per
// forward/backward) for GradAccum, GradCache and ContAccum, with FullBatch (all N_total
// pairs in one forward/backward: K times the activation memory) as the reference; two
// untied towers as in the paper, so GradNormRatio (passage / query gradient norm) means
// something; several seeds; evaluation on the dev split.

#include "job.hpp"

#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace retrieval {

struct CompareConfig {
  fs::path data = "data/debian-beir";
  fs::path model = "models/all-MiniLM-L6-v2";
  fs::path out = "out/compare";
  int64_t seeds = 3;
  int64_t steps = 20;
  int64_t n_local = 8;    ///< the memory budget shared by GradAccum, GradCache and ContAccum
  int64_t n_total = 32;   ///< pairs per optimizer step, every method
  int64_t bank = 256;     ///< ContAccum's N_memory (vectors per bank)
  double learning_rate = 3e-5;
  double temperature = 0.05;
  int64_t eval_queries = 500;   ///< dev queries
  int64_t eval_corpus = 3000;   ///< their positives + distractors
  /// Passages cut at 64 tokens (the main job uses 128): 15 runs fit about 45 minutes here.
  ca::TokenizeConfig tokenize{.query_max_length = 32, .passage_max_length = 64};
  std::vector<std::string> methods{"GradAccum", "GradCache", "ContAccum", "ContAccum-GradCache", "FullBatch",
                                   "ContAccum-noMq"};
};

inline constexpr const char* compare_usage =
    "retrieval compare [--seeds N] [--steps N] [--n-local N] [--n-total N] [--bank N] [--eval-queries N]\n"
    "                  [--eval-corpus N] [--methods A,B,...] [--out DIR] [--data DIR] [--model DIR] [--quick] [--fresh] [--report]\n"
    "  methods: GradAccum GradCache ContAccum ContAccum-GradCache (ContAccum over GradCache) FullBatch\n"
    "           ContAccum-noMq (the paper's w/o M_q ablation)";

struct RunResult {
  std::string method;
  uint64_t seed = 0;
  std::vector<ca::StepStats> steps;
  ca::Evaluation evaluation;
};

namespace detail {

using TwoTowers = ca::DualEncoder<ca::Bert, Reader, ca::SeparateTowers>;

template <class Strategy, class Tok>
RunResult train_and_evaluate(const std::string& method, Strategy strategy, int64_t micro_batch, const CompareConfig& c,
                             uint64_t seed, const std::vector<ca::TextExample>& examples, const Tok& tok,
                             const EvalSet& eval) {
  torch::manual_seed(seed);
  TwoTowers model(ca::load_bert(c.model), ca::load_bert(c.model));
  ca::PairLoader<Tok> loader(ca::PairSampler(examples, {.seed = seed, .hard_negatives_per_query = 0}), tok,
                             {.batch_size = c.n_total, .tokenize = c.tokenize});
  ca::Trainer<TwoTowers, Strategy, ca::FullFineTune, Loss> trainer(
      model,
      {.micro_batch_size = micro_batch, .learning_rate = c.learning_rate,
       .warmup_steps = std::max<int64_t>(1, c.steps / 10), .total_steps = c.steps, .max_grad_norm = 2.0},
      std::move(strategy), {}, Loss{ca::Cosine{c.temperature}});
  RunResult r{.method = method, .seed = seed};
  // fit() without a run folder: the progress bar and the loop, no checkpoint (a
  // comparison run is short and restarted whole).
  auto resident = ca::MemoryMeter::current_bytes();  // weights, optimizer state, caches
  ca::fit(trainer, loader,
          {.steps = c.steps,
           .on_step =
               [&](const ca::StepStats& st) {
                 r.steps.push_back(st);
                 // what the step itself adds: activations, gradients (and AdamW's first state)
                 r.steps.back().peak_memory_bytes -= resident;
                 resident = ca::MemoryMeter::current_bytes();
               },
           .label = method,
           .handle_signals = false});
  r.evaluation = evaluate_towers(model->query_encoder, model->passage_encoder, tok, eval, c.tokenize, "  eval");
  return r;
}

template <class Tok>
RunResult run_method(const std::string& method, const CompareConfig& c, uint64_t seed,
                     const std::vector<ca::TextExample>& examples, const Tok& tok, const EvalSet& eval) {
  if (method == "GradAccum") return train_and_evaluate(method, ca::GradAccum<>{}, c.n_local, c, seed, examples, tok, eval);
  if (method == "GradCache") return train_and_evaluate(method, ca::GradCache<>{}, c.n_local, c, seed, examples, tok, eval);
  if (method == "ContAccum")
    return train_and_evaluate(method, ca::ContAccum<ca::DualBank>({.capacity = c.bank}), c.n_local, c, seed, examples,
                              tok, eval);
  if (method == "ContAccum-GradCache")
    return train_and_evaluate(method, ca::ContAccumOverGradCache<ca::DualBank>({.capacity = c.bank}), c.n_local, c,
                              seed, examples, tok, eval);
  if (method == "ContAccum-noMq")
    return train_and_evaluate(method, ca::ContAccum<ca::DualBank>({.capacity = c.bank, .query_bank = false}), c.n_local,
                              c, seed, examples, tok, eval);
  if (method == "FullBatch") return train_and_evaluate(method, ca::FullBatch<>{}, c.n_total, c, seed, examples, tok, eval);
  throw ca::invalid_input(ca::detail::cat("compare: unknown method '", method,
                                          "' (GradAccum, GradCache, ContAccum, ContAccum-GradCache, ContAccum-noMq, FullBatch)"));
}

struct MeanStd {
  double mean = 0, std = 0;
};
inline MeanStd mean_std(const std::vector<double>& v) {
  MeanStd m;
  for (double x : v) m.mean += x;
  m.mean /= static_cast<double>(v.size());
  for (double x : v) m.std += (x - m.mean) * (x - m.mean);
  m.std = v.size() > 1 ? std::sqrt(m.std / static_cast<double>(v.size() - 1)) : 0.0;
  return m;
}

// The setting a run depends on: runs.json from another setting is not reused.
inline json setting_json(const CompareConfig& c) {
  return {{"data", c.data.string()}, {"model", c.model.string()}, {"steps", c.steps}, {"n_local", c.n_local},
          {"n_total", c.n_total}, {"bank", c.bank}, {"learning_rate", c.learning_rate},
          {"temperature", c.temperature}, {"eval_queries", c.eval_queries}, {"eval_corpus", c.eval_corpus},
          {"query_max_length", c.tokenize.query_max_length}, {"passage_max_length", c.tokenize.passage_max_length}};
}

inline json run_to_json(const RunResult& r) {
  json steps = json::array();
  for (const auto& st : r.steps)
    steps.push_back({{"loss", st.loss}, {"grad_norm_ratio", st.grad_norm_ratio}, {"grad_norm", st.grad_norm},
                     {"negatives_per_query", st.negatives_per_query}, {"seconds", st.seconds},
                     {"step_memory_bytes", st.peak_memory_bytes}});
  return {{"method", r.method}, {"seed", r.seed}, {"metrics", metrics_json(r.evaluation)}, {"steps", steps}};
}

inline RunResult run_from_json(const json& j) {
  RunResult r{.method = j.at("method").get<std::string>(), .seed = j.at("seed").get<uint64_t>()};
  for (const auto& st : j.at("steps"))
    r.steps.push_back({.loss = st.at("loss"), .negatives_per_query = st.at("negatives_per_query"),
                       .grad_norm = st.at("grad_norm"), .grad_norm_ratio = st.at("grad_norm_ratio"),
                       .seconds = st.at("seconds"), .peak_memory_bytes = st.at("step_memory_bytes")});
  for (const auto& [measure, value] : j.at("metrics").items()) {
    r.evaluation.measures.push_back(measure);
    r.evaluation.mean.push_back(value.get<double>());
  }
  return r;
}

}  // namespace detail

inline int compare(Args& args, const std::string& command_line) {
  CompareConfig c;
  const bool quick = args.flag("--quick");
  const bool fresh = args.flag("--fresh");
  const bool report = args.flag("--report");  // no training: the table from the runs runs.json holds
  if (quick) {  // what the test suite runs: every method, one seed, a few steps
    c.seeds = 1;
    c.steps = 3;
    c.n_local = 2;
    c.n_total = 4;
    c.bank = 8;
    c.eval_queries = 20;
    c.eval_corpus = 100;
  }
  c.seeds = args.integer("--seeds", c.seeds);
  c.steps = args.integer("--steps", c.steps);
  c.n_local = args.integer("--n-local", c.n_local);
  c.n_total = args.integer("--n-total", c.n_total);
  c.bank = args.integer("--bank", c.bank);
  c.eval_queries = args.integer("--eval-queries", c.eval_queries);
  c.eval_corpus = args.integer("--eval-corpus", c.eval_corpus);
  if (args.given("--methods")) {  // a list given must name methods, and only known ones, before any run starts
    const auto known = c.methods;
    const auto text = args.text("--methods", "");
    c.methods = example::split_list(text);
    ca::detail::require(!c.methods.empty(), "compare: --methods '", text, "' names no method\n", compare_usage);
    for (const auto& m : c.methods)
      ca::detail::require(std::ranges::find(known, m) != known.end(), "compare: --methods: unknown method '", m,
                          "'\n", compare_usage);
  }
  c.out = args.text("--out", c.out.string());
  c.data = args.text("--data", c.data.string());
  c.model = args.text("--model", c.model.string());
  args.check_all_used(compare_usage);
  ca::detail::require(c.n_total % c.n_local == 0, "compare: --n-total (", c.n_total, ") must be a multiple of --n-local (",
                      c.n_local, ")");

  fs::create_directories(c.out);
  std::cout << "contaccum comparison: " << c.methods.size() << " methods x " << c.seeds << " seeds, " << c.steps
            << " steps of N_total " << c.n_total << " pairs; memory budget N_local " << c.n_local << " (K = "
            << c.n_total / c.n_local << "); ContAccum N_memory " << c.bank << "; two untied towers from " << c.model
            << std::endl;
  const auto splits = ca::read_beir_splits(c.data, {"train", "dev"});
  const auto& train_split = splits[0];
  const auto& dev = splits[1];
  require_queries(train_split, c.data, "train", "trains on");
  require_queries(dev, c.data, "dev", "evaluates on");
  const auto examples = ca::beir_training_examples(train_split);
  const EvalSet eval = make_eval_set(dev, c.eval_queries, c.eval_corpus, 7, c.tokenize);
  const auto tok = ca::tokenizers::WordPiece::from_pretrained(c.model);
  std::cout << "  evaluation: " << eval.queries.size() << " dev queries against " << eval.passages.size()
            << " passages" << std::endl;

  auto pretrained = ca::load_bert(c.model);
  ca::tokenizers::require_fits_model(tok, pretrained->config().vocab_size, c.model.string());
  const auto before = evaluate_towers(pretrained, pretrained, tok, eval, c.tokenize, "pretrained");

  // runs.json is rewritten after every run; a later call with the same setting reuses
  // the runs it holds (an interrupted comparison resumes where it stopped).
  const json setting = detail::setting_json(c);
  std::vector<RunResult> runs;
  json log = json::array();
  if (const auto file = c.out / "runs.json"; !fresh && fs::exists(file)) {
    const auto saved = ca::detail::read_json_file(file, "comparison log");
    if (saved.value("setting", json()) == setting) {
      log = saved.at("runs");
      for (const auto& r : log) runs.push_back(detail::run_from_json(r));
      std::cout << "  resuming: " << runs.size() << " runs of this setting read from " << file.string()
                << " (--fresh to start over)" << std::endl;
    }
  }
  for (int64_t s = 0; s < c.seeds; ++s) {
    const uint64_t seed = 13 + static_cast<uint64_t>(s);
    for (const auto& method : c.methods) {
      if (report || std::ranges::any_of(runs, [&](const RunResult& r) { return r.method == method && r.seed == seed; }))
        continue;
      std::cout << "seed " << seed << ", " << method << std::endl;
      runs.push_back(detail::run_method(method, c, seed, examples, tok, eval));
      const auto& r = runs.back();
      log.push_back(detail::run_to_json(r));
      ca::detail::write_json_file(c.out / "runs.json", {{"setting", setting}, {"runs", log}});
      std::cout << "  nDCG@10 " << r.evaluation["nDCG@10"] << ", MRR@10 " << r.evaluation["MRR@10"] << std::endl;
    }
  }
  std::erase_if(runs, [&](const RunResult& r) {  // runs of methods or seeds not asked for this time
    return std::ranges::find(c.methods, r.method) == c.methods.end() || r.seed >= 13 + static_cast<uint64_t>(c.seeds);
  });

  // The table: per method, mean +- standard deviation over seeds.
  const std::vector<std::string> shown{"nDCG@10", "MRR@10", "Top-1", "Top-20", "Recall@100"};
  std::ostringstream table;
  table << "| method | seeds | pairs per forward/backward | negatives per query | GradNormRatio | step MiB |";
  for (const auto& m : shown) table << " " << m << " |";
  table << "\n|---|---:|---:|---:|---:|---:|";
  for (std::size_t i = 0; i < shown.size(); ++i) table << "---:|";
  table << "\n| pretrained (no fine-tuning) | | | | | |";
  for (const auto& m : shown) table << " " << std::fixed << std::setprecision(4) << before[m] << " |";
  table << "\n";
  std::ostringstream ratio_dat;  // every output is written whole and checked
  ratio_dat << "# step, then the mean GradNormRatio over seeds of each method in order:";
  for (const auto& m : c.methods) ratio_dat << " " << m;
  ratio_dat << "\n";
  std::vector<std::vector<double>> ratio_by_method;
  for (const auto& method : c.methods) {
    std::vector<const RunResult*> mine;
    for (const auto& r : runs)
      if (r.method == method) mine.push_back(&r);
    std::vector<double> ratio, neg, peak;
    std::vector<double> per_step_ratio(static_cast<std::size_t>(c.steps), 0.0);
    for (const auto* r : mine)
      for (std::size_t s = 0; s < r->steps.size(); ++s) {
        const auto& st = r->steps[s];
        ratio.push_back(st.grad_norm_ratio);
        neg.push_back(st.negatives_per_query);
        if (s > 0 || r->steps.size() == 1) peak.push_back(static_cast<double>(st.peak_memory_bytes) / (1 << 20));  // step 0 adds AdamW's state
        per_step_ratio[s] += st.grad_norm_ratio / static_cast<double>(mine.size());
      }
    if (mine.empty()) std::ranges::fill(per_step_ratio, std::nan(""));  // gnuplot skips NaN
    ratio_by_method.push_back(per_step_ratio);
    const auto r = detail::mean_std(ratio);
    if (mine.empty()) continue;
    table << "| " << method << " | " << mine.size() << " | " << (method == "FullBatch" ? c.n_total : c.n_local) << " | " << std::setprecision(0)
          << detail::mean_std(neg).mean << " | " << std::setprecision(2) << r.mean << " | " << std::setprecision(0) << detail::mean_std(peak).mean << " |";
    for (const auto& m : shown) {
      std::vector<double> v;
      for (const auto* run : mine) v.push_back(run->evaluation[m]);
      const auto ms = detail::mean_std(v);
      table << " " << std::setprecision(4) << ms.mean << " ± " << ms.std << " |";
    }
    table << "\n";
  }
  for (int64_t s = 0; s < c.steps; ++s) {
    ratio_dat << s;
    for (const auto& v : ratio_by_method) ratio_dat << " " << v[static_cast<std::size_t>(s)];
    ratio_dat << "\n";
  }
  ca::detail::write_file_atomically(c.out / "grad_norm_ratio.dat", ratio_dat.str());

  std::ostringstream md;
  md << "Command: `" << command_line << "`\n\n"
     << c.seeds << " seeds (" << 13 << "-" << 12 + c.seeds << "), " << c.steps << " optimizer steps of N_total "
     << c.n_total << " pairs (no hard negatives: in-batch and bank negatives only), lr " << c.learning_rate
     << " with 10% warmup and linear decay, cosine similarity / " << c.temperature
     << ", two untied towers initialised from all-MiniLM-L6-v2. GradAccum, GradCache and ContAccum run "
     << c.n_local << " pairs per forward/backward (K = " << c.n_total / c.n_local << "); ContAccum's banks hold "
     << c.bank << " vectors. Evaluation: " << eval.queries.size() << " dev queries against " << eval.passages.size()
     << " passages; queries cut at " << c.tokenize.query_max_length << " tokens, passages at "
     << c.tokenize.passage_max_length << ". Metrics are mean ± standard deviation over seeds; GradNormRatio is the "
        "mean over every step of every seed; step MiB is the peak tensor memory a step adds to the resident weights "
        "and optimizer state (activations and gradients), mean over steps after the first.\n\n"
     << table.str();
  ca::detail::write_file_atomically(c.out / "comparison.md", md.str());

  std::ostringstream gp;
  gp << "# GradNormRatio per step (run `gnuplot compare.gp` in this folder)\n"
     << "set terminal pngcairo size 900,450 font \"sans,10\" noenhanced\nset output \"grad_norm_ratio.png\"\n"
     << "set title \"GradNormRatio = passage / query gradient norm (mean over seeds)\"\n"
     << "set xlabel \"optimizer step\"\nset ylabel \"GradNormRatio\"\nset grid\nset key top left\n"
     << "set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb \"gray\"\nplot ";
  for (std::size_t i = 0; i < c.methods.size(); ++i)
    gp << (i ? ", \\\n     " : "") << "\"grad_norm_ratio.dat\" using 1:" << i + 2 << " with linespoints pt 7 ps 0.5 title \""
       << c.methods[i] << "\"";
  gp << "\n";
  ca::detail::write_file_atomically(c.out / "compare.gp", gp.str());
  run_gnuplot(c.out, "compare.gp", {"grad_norm_ratio.png"});
  std::cout << "\n" << md.str() << "\n  written: " << (c.out / "comparison.md").string() << ", "
            << (c.out / "runs.json").string() << ", " << (c.out / "grad_norm_ratio.png").string() << std::endl;
  return 0;
}

}  // namespace retrieval
