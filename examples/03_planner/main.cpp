// The compute-optimal planner end to end, at toy scale: the procedure of Ziarko et al. 2024
// (arXiv 2406.04165) run on Pythia-shaped micro models instead of Pythia itself.
//
//   planner [--quick] [--fresh] [--out DIR] [--data DIR] [--model DIR] [--pretrain-steps N]
//           [--widths 32,64,128] [--budgets 4e10,8e10,...] [--methods full,lora:16,...]
//           [--threads N] [--seed S]
//
//  1. builds micro models with Pythia's architecture and ratios (GPT-NeoX, rotary_pct 0.25,
//     parallel residual, intermediate 4d, LayerNorm eps 1e-5) over the all-MiniLM-L6-v2
//     WordPiece vocabulary (--model, 30522 tokens), and pre-trains each briefly as a causal
//     LM on training passages of the dataset (--pretrain-steps);
//  2. runs the grid: every method (full, block freezing, LoRA, bias-only) and setting x
//     model x budget, each cell trained with the real Trainer for pairs_for_budget pairs of
//     the Debian package dataset (--data, BEIR format: short description -> long
//     description), scored by its held-out in-batch InfoNCE on test-split pairs;
//  3. fits loss and N_opt as lines in log10(budget) per method over every cell of grid.json
//     (earlier runs' cells with the same setting included), prints the table, saves
//     the fits (fits.json) and the grid (grid.json), and recommends a method, model and
//     number of pairs for a budget 4x the largest of the grid;
//  4. writes loss_vs_budget.dat / grid.dat and a gnuplot script loss_vs_budget.gp.
//
// --quick (the test suite's example.planner_quick) runs 2 models x 4 methods x 2 budgets on a
// small slice in under a minute; the full run (3 models x 5 method settings x 4 budgets)
// takes about 10 minutes on 2 idle cores, about 20 when other work shares them.
#include <contaccum/contaccum.hpp>
#include <contaccum/compute/grid.hpp>
#include <contaccum/compute/grid_runner.hpp>
#include <contaccum/compute/planner.hpp>
#include <contaccum/compute/planner_io.hpp>
#include <contaccum/compute/planner_models.hpp>
#include <contaccum/detail/json_file.hpp>

#include "../common/args.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace ca = contaccum;
namespace fs = std::filesystem;

namespace {

struct PlannerJob {
  fs::path data = "data/debian-beir";
  fs::path model = "models/all-MiniLM-L6-v2";  ///< only its tokenizer is used
  fs::path out = "out/planner";
  int64_t pretrain_steps = 100;  ///< causal-LM steps per micro model before the grid
  int64_t pretrain_batch = 8;     ///< passages per step (the 30522-way softmax dominates its cost)
  double pretrain_learning_rate = 1e-3;
  int64_t pool_pairs = 49152;    ///< training pairs every cell reads from the start (one pass at most)
  int64_t held_out_pairs = 256;  ///< test-split pairs scoring each cell
  int64_t batch_size = 32;       ///< pairs per step (the paper: 1024)
  ca::TokenizeConfig tokenize{.query_max_length = 32, .passage_max_length = 64};
  std::vector<int64_t> widths{32, 64, 128};  ///< micro models: d, with 2, 3, 4 blocks
  std::vector<ca::GridMethod> methods{{ca::Method::full, {}}, {ca::Method::block_freeze, 1}, {ca::Method::lora, 4},
                                      {ca::Method::lora, 16}, {ca::Method::bias_only, {}}};
  std::vector<double> budgets{4e10, 8e10, 1.6e11, 3.2e11};
  ca::MethodLearningRates learning_rate{.full = 1e-3, .block_freeze = 1e-3, .lora = 3e-3, .bias_only = 3e-3};
  int threads = 1;
  uint64_t seed = 13;
};

// The micro family: depth grows with width as in Pythia (2, 3, 4 blocks at d = 32, 64, 128);
// heads of 16 dims up to d = 64, of 32 above (Pythia-14m: d = 128, 4 heads of 32).
ca::PlannerModel micro_model(int64_t d, int64_t vocab, int64_t max_positions) {
  const int64_t layers = d <= 32 ? 2 : d <= 64 ? 3 : 4, heads = d <= 64 ? d / 16 : d / 32;
  return {"micro-" + std::to_string(d), ca::pythia_shaped_config(layers, d, heads, vocab, max_positions)};
}

// A brief causal-LM pre-training: AdamW (weight decay 0.1), warmup 10%, cosine to 0.
void pretrain(ca::GptNeox& lm, const ca::TokenBatch& passages, const PlannerJob& c, const std::string& name) {
  if (c.pretrain_steps <= 0) return;
  auto optimizer = ca::make_adamw(lm->named_parameters(), {.learning_rate = c.pretrain_learning_rate, .weight_decay = 0.1});
  const int64_t warmup = c.pretrain_steps / 10, per_pass = passages.size() / c.pretrain_batch;
  const auto t0 = std::chrono::steady_clock::now();
  double first = 0, last = 0;
  lm->train();
  for (int64_t s = 0; s < c.pretrain_steps; ++s) {
    const int64_t begin = (s % per_pass) * c.pretrain_batch;
    const auto b = ca::trim_padding(passages.slice(begin, begin + c.pretrain_batch));  // (B, T')
    ca::set_learning_rate(*optimizer, c.pretrain_learning_rate * ca::lr_factor(s, warmup, c.pretrain_steps, ca::Decay::cosine));
    optimizer->zero_grad();
    auto loss = lm->causal_lm_loss(b.input_ids, b.attention_mask);  // scalar
    loss.backward();
    torch::nn::utils::clip_grad_norm_(lm->parameters(), 1.0);
    optimizer->step();
    last = loss.item<double>();
    if (s == 0) first = last;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  pre-trained %-10s %4lld causal-LM steps: loss %.3f -> %.3f (%.0f s)\n", name.c_str(),
              static_cast<long long>(c.pretrain_steps), first, last, secs);
}

// Training pairs (one positive, no hard negative) of `examples`: `n` of them from position
// `first` of a seeded order of the examples.
ca::PairBatch pairs_of(const std::vector<ca::TextExample>& examples, std::size_t first, int64_t n,
                       const ca::tokenizers::WordPiece& tok, const PlannerJob& c) {
  const ca::PairSampler sampler(examples, {.seed = c.seed, .hard_negatives_per_query = 0});
  const auto order = sampler.order(0);
  ca::detail::require(first + static_cast<std::size_t>(n) <= order.size(), "the dataset has ", order.size(),
                      " examples, fewer than the ", first + static_cast<std::size_t>(n), " this run needs");
  std::vector<ca::TextPair> pairs;
  for (std::size_t i = first; i < first + static_cast<std::size_t>(n); ++i) pairs.push_back(sampler.sample(order[i], 0));
  return ca::tokenize_pairs(tok, std::span<const ca::TextPair>(pairs), c.tokenize);
}

// "full,block_freeze:1,lora:16,bias_only" -> the method settings of the grid.
std::vector<ca::GridMethod> methods_of(const std::string& text) {
  std::vector<ca::GridMethod> out;
  for (const auto& item : example::split_list(text)) {
    const auto colon = item.find(':');
    ca::GridMethod m{ca::parse_method(item.substr(0, colon), "--methods")};
    if (colon != std::string::npos) m.setting = example::positive_number<int64_t>(item.substr(colon + 1), "--methods " + item);
    ca::validate_setting(m.method, m.setting, "--methods " + item);
    out.push_back(m);
  }
  ca::detail::require(!out.empty(), "--methods needs a comma-separated list such as full,block_freeze:1,lora:16,bias_only");
  return out;
}

// What the grid's cells depend on besides (method, setting, model, budget): a rerun with
// the same setting resumes from grid.json and the saved micro models.
nlohmann::json setting_of(const PlannerJob& c, bool quick) {
  return {{"quick", quick},
          {"data", c.data.string()},
          {"tokenizer", c.model.string()},
          {"pretrain_steps", c.pretrain_steps},
          {"pretrain_batch", c.pretrain_batch},
          {"pretrain_learning_rate", c.pretrain_learning_rate},
          {"pool_pairs", c.pool_pairs},
          {"held_out_pairs", c.held_out_pairs},
          {"batch_size", c.batch_size},
          {"query_max_length", c.tokenize.query_max_length},
          {"passage_max_length", c.tokenize.passage_max_length},
          {"learning_rates", {c.learning_rate.full, c.learning_rate.block_freeze, c.learning_rate.lora, c.learning_rate.bias_only}},
          {"seed", c.seed}};
}

std::string sci(double v, int digits = 3) {
  std::ostringstream os;
  os << std::setprecision(digits) << v;
  return os.str();
}

void print_table(const ca::PlannerFits& fits) {
  std::printf("\n  %-13s %-6s %-28s %-30s\n", "method", "best", "loss = a + b log10 C", "log10 N_opt = c + d log10 C");
  for (const auto& f : fits.methods)
    std::printf("  %-13s %-6s %8.4f %+8.4f log10 C     %8.4f %+8.4f log10 C\n", std::string(ca::method_name(f.method)).c_str(),
                ca::describe_setting(f.method, f.setting).c_str(), f.loss.intercept, f.loss.slope,
                f.model_size.intercept, f.model_size.slope);
  std::printf("\n  the frontier (best run per budget):\n  %-13s", "budget");
  for (const auto& p : fits.methods.front().frontier) std::printf(" %-26s", sci(p.budget_flops).c_str());
  std::printf("\n");
  for (const auto& f : fits.methods) {
    std::printf("  %-13s", std::string(ca::method_name(f.method)).c_str());
    for (const auto& p : f.frontier) {
      const auto cell = sci(p.loss, 4) + " " + p.model + " " + (p.setting ? ca::describe_setting(f.method, p.setting) : "");
      std::printf(" %-26s", cell.c_str());
    }
    std::printf("\n");
  }
}

// loss_vs_budget.dat: one block per method (gnuplot `index i`): budget, best loss, fitted
// loss, N of the best run. grid.dat: every run, one block per method. loss_vs_budget.gp
// plots both with the fitted lines.
void write_plot(const ca::PlannerFits& fits, const std::vector<ca::GridRecord>& records, const fs::path& out) {
  std::ostringstream dat, grid, gp;  // written whole at the end, each write checked
  dat << std::setprecision(10);
  grid << std::setprecision(10);
  for (std::size_t i = 0; i < fits.methods.size(); ++i) {
    const auto& f = fits.methods[i];
    const auto name = std::string(ca::method_name(f.method));
    dat << (i ? "\n\n" : "") << "# " << name << ": budget_flops best_loss fitted_loss non_embedding_params model\n";
    for (const auto& p : f.frontier)
      dat << p.budget_flops << " " << p.loss << " " << f.predicted_loss(p.budget_flops) << " " << p.non_embedding_params
          << " " << p.model << "\n";
    grid << (i ? "\n\n" : "") << "# " << name << ": budget_flops loss non_embedding_params model setting\n";
    for (const auto& r : records)
      if (r.method == f.method && std::isfinite(r.loss))
        grid << r.budget_flops << " " << r.loss << " " << r.non_embedding_params << " " << r.model << " "
             << ca::describe_setting(r.method, r.setting) << "\n";
  }
  gp << "# gnuplot loss_vs_budget.gp  ->  loss_vs_budget.png\n"
     << "set terminal pngcairo size 960,640\nset output 'loss_vs_budget.png'\n"
     << "set logscale x\nset format x '10^{%L}'\nset xlabel 'budget C (FLOPs, the paper''s accounting)'\n"
     << "set ylabel 'held-out InfoNCE loss'\nset key outside right\nset grid\n";
  std::ostringstream plot;
  for (std::size_t i = 0; i < fits.methods.size(); ++i) {
    const auto& f = fits.methods[i];
    const auto name = std::string(ca::method_name(f.method));
    gp << std::setprecision(10) << "a" << i << " = " << f.loss.intercept << "; b" << i << " = " << f.loss.slope << "\n";
    plot << (i ? ", \\\n     " : "plot ") << "'grid.dat' index " << i << " using 1:2 with points pt 6 ps 0.6 lc " << i + 1
         << " notitle, \\\n     'loss_vs_budget.dat' index " << i << " using 1:2 with points pt 7 ps 1.2 lc " << i + 1
         << " title '" << name << "' noenhanced, \\\n     a" << i << " + b" << i << " * log10(x) with lines lc " << i + 1
         << " notitle";
  }
  gp << plot.str() << "\n";
  ca::detail::write_file_atomically(out / "loss_vs_budget.dat", dat.str());
  ca::detail::write_file_atomically(out / "grid.dat", grid.str());
  ca::detail::write_file_atomically(out / "loss_vs_budget.gp", gp.str());
}

// by_model.dat: per method, one block per model (gnuplot `index method * models + model`):
// budget and the model's best loss over the method's settings. by_model.gp draws a panel
// per method with a line per model: where a larger model's line crosses below a smaller
// one's, N_opt grows.
void write_by_model_plot(const ca::PlannerFits& fits, const std::vector<ca::GridRecord>& records,
                         const std::vector<ca::PlannerModel>& family, const fs::path& out) {
  std::ostringstream dat, gp;
  dat << std::setprecision(10);
  std::size_t block = 0;
  for (const auto& f : fits.methods)
    for (const auto& m : family) {
      std::map<double, double> best;  // budget -> lowest finite loss over settings
      for (const auto& r : records)
        if (r.method == f.method && r.model == m.name && std::isfinite(r.loss)) {
          auto [it, fresh] = best.emplace(r.budget_flops, r.loss);
          if (!fresh) it->second = std::min(it->second, r.loss);
        }
      dat << (block++ ? "\n\n" : "") << "# " << ca::method_name(f.method) << " " << m.name << ": budget_flops best_loss\n";
      for (const auto& [budget, loss] : best) dat << budget << " " << loss << "\n";
      if (best.empty()) dat << "nan nan\n";  // keeps the block numbering
    }
  const std::size_t cols = 2, rows = (fits.methods.size() + 1) / 2;
  gp << "# gnuplot by_model.gp  ->  by_model.png\n"
     << "set terminal pngcairo size 1200," << 420 * rows << "\nset output 'by_model.png'\n"
     << "set multiplot layout " << rows << "," << cols << "\n"
     << "set logscale x\nset format x '10^{%L}'\nset xlabel 'budget C (FLOPs)'\nset ylabel 'held-out InfoNCE loss'\n"
     << "set key top right\nset grid\n";
  for (std::size_t i = 0; i < fits.methods.size(); ++i) {
    gp << "set title '" << ca::method_name(fits.methods[i].method) << ": best loss per model' noenhanced\nplot ";
    for (std::size_t j = 0; j < family.size(); ++j)
      gp << (j ? ", \\\n     " : "") << "'by_model.dat' index " << i * family.size() + j
         << " using 1:2 with linespoints pt 7 lc " << j + 1 << " title '" << family[j].name << "' noenhanced";
    gp << "\n";
  }
  gp << "unset multiplot\n";
  ca::detail::write_file_atomically(out / "by_model.dat", dat.str());
  ca::detail::write_file_atomically(out / "by_model.gp", gp.str());
}

}  // namespace

constexpr const char* usage =
    "planner [--quick] [--fresh] [--out DIR] [--data DIR] [--model DIR] [--pretrain-steps N] [--widths D,D,...] "
    "[--budgets C,C,...] [--methods full,block_freeze:K,lora:R,bias_only] [--threads N] [--seed S]";

int main(int argc, char** argv) try {
  if (example::wants_help(argc, argv)) {
    std::cout << "usage: " << usage << "\n";
    return 0;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows line by line in a log file too
  PlannerJob c;
  example::Args args(argc, argv, 1, {"--quick", "--fresh"});
  ca::detail::require(args.positional.empty(), "planner takes no positional argument\nusage: ", usage);
  const bool quick = args.flag("--quick");
  const bool fresh = args.flag("--fresh");  // retrain every cell even when out/ holds a run with this setting
  if (quick) {  // 2 models x 4 methods x 2 budgets on a small slice
    c.pretrain_steps = 10;
    c.pool_pairs = 6144;
    c.held_out_pairs = 128;
    c.widths = {32, 64};
    c.methods = {{ca::Method::full, {}}, {ca::Method::block_freeze, 1}, {ca::Method::lora, 4}, {ca::Method::bias_only, {}}};
    c.budgets = {8e9, 3.2e10};
  }
  c.out = args.text("--out", c.out.string());
  c.data = args.text("--data", c.data.string());
  c.model = args.text("--model", c.model.string());
  if (const auto steps = args.text("--pretrain-steps", ""); !steps.empty())
    c.pretrain_steps = steps == "0" ? 0 : example::positive_number<int64_t>(steps, "option --pretrain-steps");
  c.widths = args.list<int64_t>("--widths", c.widths);
  c.budgets = args.list<double>("--budgets", c.budgets);
  if (const auto m = args.text("--methods", ""); !m.empty()) c.methods = methods_of(m);
  c.threads = static_cast<int>(args.integer("--threads", c.threads));
  c.seed = static_cast<uint64_t>(args.integer("--seed", static_cast<int64_t>(c.seed)));
  args.check_all_used(usage);
  for (const auto d : c.widths)
    ca::detail::require(d % 16 == 0, "--widths: ", d, " is not a multiple of 16 (heads of 16 or 32 dims)");
  if (c.threads > 0) torch::set_num_threads(c.threads);
  fs::create_directories(c.out);
  // Resuming: out/run.json records the setting; with the same setting the finished cells
  // of grid.json and the pre-trained models in out/models are reused.
  const auto setting = setting_of(c, quick);
  const bool resume = !fresh && fs::exists(c.out / "run.json") && ca::detail::read_json_file(c.out / "run.json", "run file") == setting;
  std::vector<ca::GridRecord> finished;
  if (resume && fs::exists(c.out / "grid.json")) finished = ca::load_grid_records(c.out / "grid.json");
  if (!resume) {
    fs::remove(c.out / "grid.json");
    fs::remove_all(c.out / "models");
    ca::detail::write_json_file(c.out / "run.json", setting);
  }
  const auto t_start = std::chrono::steady_clock::now();
  std::cout << "contaccum compute-optimal planner: " << (quick ? "quick" : "full") << " run\n"
            << "  Pythia-shaped micro models: the paper's procedure at toy scale (not Pythia itself)\n"
            << "  data " << c.data << ", tokenizer " << c.model << ", out " << c.out << "\n";

  // Data: training pairs and pre-training passages from the train split, held-out pairs
  // from the test split (queries and passages never trained on).
  const auto splits = ca::read_beir_splits(c.data, {"train", "test"});
  const auto& train = splits[0];
  const auto& test = splits[1];
  const auto tok = ca::tokenizers::WordPiece::from_pretrained(c.model);
  const auto train_examples = ca::beir_training_examples(train);
  const auto pool = pairs_of(train_examples, 0, c.pool_pairs, tok, c);
  const auto held_out = pairs_of(ca::beir_training_examples(test), 0, c.held_out_pairs, tok, c);
  const double tokens_per_pair = ca::mean_tokens_per_pair(pool);
  // Pre-training text: passages of other training examples than the pool's.
  const int64_t lm_count = std::clamp<int64_t>(c.pretrain_steps * c.pretrain_batch, c.pretrain_batch, 8192);
  const auto lm_passages = pairs_of(train_examples, static_cast<std::size_t>(c.pool_pairs), lm_count, tok, c).positives;
  std::cout << "  " << pool.size() << " training pairs, " << held_out.size() << " held-out pairs (test split), "
            << lm_passages.size() << " other passages for pre-training; " << sci(tokens_per_pair, 4)
            << " real tokens per pair (query + passage, passages cut at " << c.tokenize.passage_max_length << "); "
            << sci(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count()) << " s\n";

  // Models: Pythia-shaped, pre-trained briefly on the pool's passages.
  std::vector<ca::PlannerModel> family;
  std::vector<ca::GridModel> models;
  for (const auto d : c.widths) {
    family.push_back(micro_model(d, static_cast<int64_t>(tok.vocab_size()), 128));
    const auto& name = family.back().name;
    const auto saved = c.out / "models" / name;
    torch::manual_seed(c.seed + static_cast<uint64_t>(d));  // each model's start depends on its width only
    ca::GptNeox lm{nullptr};
    if (resume && fs::exists(saved / "config.json")) {
      lm = ca::load_gpt_neox(saved);
      std::printf("  loaded %-10s pre-trained earlier with this setting (%s)\n", name.c_str(), saved.string().c_str());
    } else {
      lm = ca::GptNeox(family.back().config);
      pretrain(lm, lm_passages, c, name);
      ca::save_gpt_neox(lm, saved);
    }
    models.push_back({name, lm});
    std::cout << "  " << family.back().name << ": " << family.back().config.num_hidden_layers << " blocks, d "
              << family.back().config.hidden_size << ", " << family.back().config.num_attention_heads
              << " heads, N = " << ca::non_embedding_parameters(family.back().config) << " non-embedding parameters\n";
  }

  // The grid. grid.json keeps every cell run with this setting, this run's and earlier ones.
  std::vector<ca::GridRecord> kept = finished;
  const ca::GridRunnerConfig grid_config{
      .budgets = c.budgets,
      .batch_size = c.batch_size,
      .tokens_per_pair = tokens_per_pair,
      .learning_rate = c.learning_rate,
      .seed = c.seed,
      .progress = &std::cout,
      .on_record = [&](const ca::GridRecord& r) {  // a long run keeps what it has done
        const auto same = [&](const ca::GridRecord& k) { return ca::is_cell(k, r.method, r.setting, r.model, r.budget_flops); };
        if (std::none_of(kept.begin(), kept.end(), same)) {
          kept.push_back(r);
          ca::save_grid_records(kept, c.out / "grid.json");
        }
      },
      .done = finished};
  std::cout << "\n  grid: " << c.methods.size() << " method settings x " << models.size() << " models x "
            << c.budgets.size() << " budgets, batch " << c.batch_size << ", symmetric InfoNCE / 0.025\n";
  if (!finished.empty())
    std::cout << "  resuming: " << finished.size() << " cells finished earlier with this setting (" << (c.out / "grid.json").string()
              << "; --fresh starts over)\n";
  const auto trained = ca::run_grid(models, c.methods, pool, held_out, grid_config);
  ca::save_grid_records(kept, c.out / "grid.json");
  // The fits use every cell grid.json holds: this run's and those of earlier runs with the
  // same setting (e.g. budgets run for one method only).
  const auto& records = kept;
  if (kept.size() > trained.size())
    std::cout << "\n  fitting all " << kept.size() << " cells of " << (c.out / "grid.json").string() << " (" << trained.size()
              << " from this run)\n";

  // Fits, table, files.
  const auto fits = ca::fit_planner(records);
  print_table(fits);
  ca::save_planner_fits(fits, c.out / "fits.json");
  const bool reloads = ca::load_planner_fits(c.out / "fits.json") == fits;
  write_plot(fits, records, c.out);
  write_by_model_plot(fits, records, family, c.out);

  // The plan for a budget 4x the largest of the grid, among the micro models.
  const double big = 4 * std::max_element(records.begin(), records.end(), [](const auto& a, const auto& b) {
                           return a.budget_flops < b.budget_flops;
                         })->budget_flops;
  const auto plan = ca::recommend(fits, big, family, {.tokens_per_pair = tokens_per_pair, .pairs_per_step = c.batch_size});
  std::cout << "\n  predicted loss at C = " << sci(big) << ":";
  for (const auto& [m, l] : plan.predicted_losses) std::cout << " " << ca::method_name(m) << " " << sci(l, 4);
  std::cout << "\n";

  // Checks the quick test relies on.
  const bool finite = std::all_of(records.begin(), records.end(), [](const ca::GridRecord& r) { return std::isfinite(r.loss); });
  const auto* full = fits.find(ca::Method::full);
  const bool fell = full != nullptr && full->frontier.back().loss < full->frontier.front().loss;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  std::cout << "\n  " << records.size() << " runs: "
            << (finite ? "every run has a finite held-out loss" : "some runs do NOT have a finite held-out loss") << "\n";
  if (full != nullptr)
    std::cout << "  full fine-tuning: best held-out loss " << sci(full->frontier.front().loss, 4) << " at "
              << sci(full->frontier.front().budget_flops) << " FLOPs, " << sci(full->frontier.back().loss, 4) << " at "
              << sci(full->frontier.back().budget_flops) << (fell ? ": the best loss fell with budget" : ": the best loss did NOT fall with budget") << "\n";
  std::cout << "  fits saved to " << (c.out / "fits.json").string()
            << (reloads ? ": the fits reload identically" : ": the fits do NOT reload identically") << "\n"
            << "  plot: cd " << c.out.string() << " && gnuplot loss_vs_budget.gp by_model.gp\n"
            << "  recommendation for C = " << sci(big) << " FLOPs: " << ca::method_name(plan.method)
            << (plan.setting ? " " + ca::describe_setting(plan.method, plan.setting) : "") << " on " << plan.model << " (N_opt predicted "
            << sci(plan.predicted_model_size) << ", snapped to N = " << plan.non_embedding_params << "), " << plan.pairs
            << " pairs, predicted loss " << sci(plan.predicted_loss, 4) << (plan.extrapolated ? " (extrapolated)" : "")
            << (plan.loss_below_zero ? "; a loss below zero cannot happen: the straight-line fit is extrapolated past "
                                          "its range, so trust the ranking of methods, not this value"
                                        : "")
            << "\n"
            << "  done in " << sci(secs) << " s\n";
  return finite && reloads && fell ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "\nerror: " << e.what() << "\n";
  return 1;
}
