// The compute-optimal planner (Ziarko et al. 2024): it recovers known scaling laws from a
// synthetic grid (with worse runs at other sizes and settings, diverged runs and noise),
// picks full fine-tuning below a crossover and LoRA above it, snaps N_opt to the nearest
// family member in log space, counts N_t per method as the adapters do, round-trips its
// JSON files, names the file and field of a malformed one, and the grid runner trains
// every cell of a tiny grid with the real Trainer; a user-defined adapter enters the grid
// and the planner as a method of its own.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"
#include "support/layer_norm_only.hpp"

#include <contaccum/compute/grid.hpp>
#include <contaccum/compute/grid_runner.hpp>
#include <contaccum/compute/planner.hpp>
#include <contaccum/compute/planner_io.hpp>
#include <contaccum/compute/planner_models.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace contaccum;
using test::error_of;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// The laws a synthetic grid is generated from: loss = a + b log10 C and
// log10 N_opt = c + d log10 C, per method.
struct Law {
  Method method;
  double a, b, c, d;
  std::optional<int64_t> best_setting, other_setting;
};

// full beats LoRA below C = 1e14 and LoRA wins above (5.2 - 0.25x = 6.6 - 0.35x at x = 14),
// as the paper found; block freezing trails full slightly, bias-only is never best.
const std::vector<Law> laws{{Method::full, 5.2, -0.25, -1.0, 0.60, {}, {}},
                            {Method::block_freeze, 5.3, -0.25, -1.5, 0.62, 2, 1},
                            {Method::lora, 6.6, -0.35, -2.5, 0.70, 16, 4},
                            {Method::bias_only, 5.8, -0.25, -0.5, 0.55, {}, {}}};
const std::vector<double> log_budgets{12, 13, 14, 15, 16};

// The best run of each (method, budget) sits exactly on the laws (plus noise of 1e-4);
// worse runs at 3x larger and smaller models, at the other setting, and a diverged run
// with a NaN loss surround it.
std::vector<GridRecord> synthetic_grid(uint64_t seed = 7) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> noise(-1e-4, 1e-4);
  std::vector<GridRecord> out;
  for (const auto& law : laws) {
    for (std::size_t i = 0; i < log_budgets.size(); ++i) {
      const double x = log_budgets[i], c = std::pow(10.0, x);
      const auto n_opt = static_cast<int64_t>(std::llround(std::pow(10.0, law.c + law.d * x)));
      const double best = law.a + law.b * x;
      // LoRA's best setting is r = 16 at three budgets and r = 4 at two (the largest one
      // included): the most frequent, 16, must win.
      auto setting = law.best_setting;
      if (law.method == Method::lora && (i == 1 || i == 4)) setting = law.other_setting;
      auto other = setting == law.best_setting ? law.other_setting : law.best_setting;
      out.push_back({law.method, setting, "opt", n_opt, c, 1000, best + noise(rng)});
      out.push_back({law.method, setting, "bigger", n_opt * 3, c, 300, best + 0.08 + noise(rng)});
      out.push_back({law.method, setting, "smaller", std::max<int64_t>(1, n_opt / 3), c, 3000, best + 0.05 + noise(rng)});
      if (other) out.push_back({law.method, other, "opt", n_opt, c, 1000, best + 0.03 + noise(rng)});
      out.push_back({law.method, setting, "diverged", n_opt * 9, c, 100, std::numeric_limits<double>::quiet_NaN()});
    }
  }
  return out;
}

// A family whose sizes are spread finely enough for any N_opt of the laws above.
std::vector<PlannerModel> fine_family() {
  std::vector<PlannerModel> out;
  for (int64_t layers : {1, 2, 4, 8, 16, 32, 64})
    for (int64_t d : {64, 128, 256, 512, 1024, 2048, 4096})
      out.push_back({"L" + std::to_string(layers) + "-d" + std::to_string(d), pythia_shaped_config(layers, d, d / 64)});
  return out;
}

// torch on one intra-op thread for the scope, restored after.
struct OneThread {
  int saved = torch::get_num_threads();
  OneThread() { torch::set_num_threads(1); }
  ~OneThread() { torch::set_num_threads(saved); }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;
};

fs::path scratch() { return test::scratch_dir("contaccum_planner"); }


void write(const fs::path& file, const std::string& text) { std::ofstream(file, std::ios::trunc) << text; }

}  // namespace

TEST_CASE("The planner recovers the scaling laws a synthetic grid was made from", "[planner]") {
  const auto fits = fit_planner(synthetic_grid());
  REQUIRE(fits.methods.size() == 4);
  for (const auto& law : laws) {
    const auto* f = fits.find(law.method);
    REQUIRE(f != nullptr);
    INFO(method_name(law.method) << ": loss = " << f->loss.intercept << " + " << f->loss.slope
                                 << " log10 C, log10 N_opt = " << f->model_size.intercept << " + "
                                 << f->model_size.slope << " log10 C");
    CHECK(f->loss.intercept == Approx(law.a).margin(2e-3));
    CHECK(f->loss.slope == Approx(law.b).margin(2e-4));
    CHECK(f->model_size.intercept == Approx(law.c).margin(1e-4));
    CHECK(f->model_size.slope == Approx(law.d).margin(1e-5));
    REQUIRE(f->frontier.size() == log_budgets.size());
    for (std::size_t i = 0; i < f->frontier.size(); ++i) {
      CHECK(f->frontier[i].budget_flops == std::pow(10.0, log_budgets[i]));  // ascending
      CHECK(f->frontier[i].model == "opt");                                  // never a worse or diverged run
      CHECK(std::isfinite(f->frontier[i].loss));
    }
    CHECK(f->setting == law.best_setting);  // LoRA: r = 16 (3 budgets) beats r = 4 (2, the largest included)
    CHECK(f->predicted_loss(1e14) == Approx(law.a + 14 * law.b).margin(1e-3));
    CHECK(std::log10(f->predicted_model_size(1e14)) == Approx(law.c + 14 * law.d).margin(1e-4));
  }
}

TEST_CASE("A tie between settings goes to the setting of the largest budget", "[planner]") {
  std::vector<GridRecord> r{{Method::lora, 4, "m", 1000, 1e9, 10, 2.0},
                            {Method::lora, 8, "m", 1000, 1e10, 10, 1.5},
                            {Method::lora, 4, "m", 1000, 1e11, 10, 1.2},
                            {Method::lora, 8, "m", 1000, 1e12, 10, 1.0}};
  CHECK(fit_method(r, Method::lora).setting == 8);
  r.back().setting = 4;  // now 4 is the most frequent
  CHECK(fit_method(r, Method::lora).setting == 4);
}

TEST_CASE("The plan picks full fine-tuning below the crossover and LoRA above it", "[planner]") {
  const auto fits = fit_planner(synthetic_grid());
  const auto family = fine_family();
  const PlanOptions options{.tokens_per_pair = 78.0, .pairs_per_step = 64};

  const auto low = recommend(fits, 1e13, family, options);
  CHECK(low.method == Method::full);
  CHECK_FALSE(low.setting);
  CHECK(low.predicted_loss == Approx(5.2 - 0.25 * 13).margin(1e-3));
  CHECK_FALSE(low.extrapolated);
  REQUIRE(low.predicted_losses.size() == 4);
  CHECK(low.predicted_losses.front().first == Method::full);
  CHECK(low.predicted_losses.back().first == Method::bias_only);

  const auto high = recommend(fits, 1e17, family, options);
  CHECK(high.method == Method::lora);
  CHECK(high.setting == 16);
  CHECK(high.predicted_loss == Approx(6.6 - 0.35 * 17).margin(2e-3));
  CHECK(high.extrapolated);  // fitted up to 1e16
  CHECK_FALSE(high.loss_below_zero);
  CHECK_FALSE(low.loss_below_zero);
  // Far past the fitted budgets LoRA's line (6.6 - 0.35 x 19 = -0.05) goes below zero: flagged.
  const auto far = recommend(fits, 1e19, family, options);
  CHECK(far.method == Method::lora);
  CHECK(far.predicted_loss < 0);
  CHECK(far.loss_below_zero);
  CHECK(high.predicted_model_size == Approx(std::pow(10.0, -2.5 + 0.7 * 17)).epsilon(1e-3));
  // the snapped model is the family member nearest in log space
  CHECK(high.model == snap_model_size(high.predicted_model_size, family).name);
  CHECK(high.non_embedding_params == non_embedding_parameters(high.config));
  // pairs: C / (cost per token of LoRA r = 16 on that model x 78), whole steps of 64
  const double fpt = method_flops_per_token(high.config, Method::lora, 16);
  CHECK(high.flops_per_token == fpt);
  CHECK(high.pairs == pairs_for_budget(1e17, fpt, 78.0, 64));
  CHECK(high.pairs % 64 == 0);
  CHECK(static_cast<double>(high.pairs) * fpt * 78.0 <= 1e17);
  CHECK(static_cast<double>(high.pairs + 64) * fpt * 78.0 > 1e17);

  // bias-only is never the plan; restricted to the memory-light methods, block freezing wins
  for (double c : {1e12, 1e14, 1e16, 1e18}) CHECK(recommend(fits, c, family, options).method != Method::bias_only);
  const auto light = recommend(fits, 1e14, family,
                               {.tokens_per_pair = 78.0, .methods = {Method::bias_only, Method::block_freeze}});
  CHECK(light.method == Method::block_freeze);
  CHECK(light.setting == 2);
  CHECK(light.predicted_losses.size() == 2);
}

TEST_CASE("Model sizes snap to the nearest family member in log space", "[planner]") {
  const auto family = pythia_family();
  REQUIRE(family.size() == 8);
  CHECK(non_embedding_parameters(family[2].config) == 18915328);  // pythia-70m, the model card's count
  const double n70 = 18915328, n160 = static_cast<double>(non_embedding_parameters(family[3].config));
  const double mid = std::sqrt(n70 * n160);  // the log-space midpoint
  CHECK(snap_model_size(mid * 0.99, family).name == "pythia-70m");
  // Just above the log midpoint, still far below the arithmetic one ((n70 + n160) / 2 = 52m):
  // nearest in log space is 160m, nearest in N would be 70m.
  REQUIRE(mid * 1.01 < (n70 + n160) / 2);
  CHECK(snap_model_size(mid * 1.01, family).name == "pythia-160m");
  CHECK(snap_model_size(n70, family).name == "pythia-70m");
  CHECK(snap_model_size(1.0, family).name == "pythia-14m");
  CHECK(snap_model_size(1e15, family).name == "pythia-2.8b");
  CHECK_THROWS_WITH(snap_model_size(1e6, {}), Catch::Contains("family is empty"));
  CHECK_THROWS_WITH(snap_model_size(0, family), Catch::Contains("must be positive"));
}

TEST_CASE("N_t per method counted from the config equals the adapters' count", "[planner]") {
  const auto cfg = pythia_shaped_config(3, 32, 2, 101, 64);
  const auto counted = [&](auto adapter) {
    GptNeox model(cfg);
    adapter.prepare(model);
    return count_trainable_non_embedding(model);
  };
  CHECK(method_trainable_non_embedding(cfg, Method::full, {}) == non_embedding_parameters(cfg));
  CHECK(method_trainable_non_embedding(cfg, Method::block_freeze, 2) == counted(BlockFreeze{.trainable_blocks = 2}));
  CHECK(method_trainable_non_embedding(cfg, Method::lora, 4) ==
        counted(LoRA{.rank = 4, .target_modules = "query_key_value|dense|dense_h_to_4h|dense_4h_to_h"}));
  CHECK(method_trainable_non_embedding(cfg, Method::bias_only, {}) == counted(BiasOnly{}));
  GptNeox full(cfg);
  CHECK(non_embedding_parameters(cfg) == count_non_embedding(full));

  // Pythia-70m: LoRA r = 8 on the four linears trains 6 x 8192 x 8; bias-only 34,304
  const auto p70 = pythia_family()[2].config;
  CHECK(method_trainable_non_embedding(p70, Method::lora, 8) == 393216);
  CHECK(method_trainable_non_embedding(p70, Method::bias_only, {}) == 34304);
  CHECK(method_flops_per_token(p70, Method::lora, 8) == flops_per_token<LoRA>(18915328, 393216));
  CHECK(method_flops_per_token(p70, Method::full, {}) == 6.0 * 18915328);
  CHECK_THROWS_WITH(method_trainable_non_embedding(p70, Method::block_freeze, 7),
                    Catch::Contains("k) = 7") && Catch::Contains("has 6 blocks"));
  CHECK_THROWS_WITH(method_trainable_non_embedding(p70, Method::lora, {}), Catch::Contains("needs a setting (r)"));
  CHECK_THROWS_WITH(method_trainable_non_embedding(p70, Method::full, 3), Catch::Contains("takes no setting"));
}

TEST_CASE("Fits and grid records round-trip through JSON", "[planner]") {
  const auto records = synthetic_grid();
  const auto fits = fit_planner(records);
  const auto dir = scratch();
  save_planner_fits(fits, dir / "fits.json");
  const auto again = load_planner_fits(dir / "fits.json");
  CHECK(again == fits);  // bit for bit, every coefficient and frontier point
  CHECK(recommend(again, 1e17, fine_family()).pairs == recommend(fits, 1e17, fine_family()).pairs);
  CHECK(json::parse(std::ifstream(dir / "fits.json"))["format"] == "contaccum.planner_fits");

  save_grid_records(records, dir / "grid.json");
  const auto loaded = load_grid_records(dir / "grid.json");
  REQUIRE(loaded.size() == records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (std::isnan(records[i].loss)) {  // NaN is written as null and read back as NaN
      CHECK(std::isnan(loaded[i].loss));
      auto a = records[i], b = loaded[i];
      a.loss = b.loss = 0;
      CHECK(a == b);
    } else {
      CHECK(loaded[i] == records[i]);
    }
  }
  CHECK(fit_planner(loaded) == fits);
}

TEST_CASE("A malformed fits or grid file is an error naming the file and the field", "[planner]") {
  const auto dir = scratch();
  const auto file = dir / "bad.json";
  const auto good = to_json(fit_planner(synthetic_grid()));
  const auto name = file.string();
  auto load_text = [&](const std::string& text) {
    write(file, text);
    return error_of([&] { (void)load_planner_fits(file); });
  };
  auto load_json = [&](const json& j) { return load_text(j.dump()); };

  CHECK_THAT(load_text("{\"format\": "), Catch::Contains(name) && Catch::Contains("not valid JSON"));
  CHECK_THAT(load_text("[1, 2]"), Catch::Contains(name) && Catch::Contains("not a contaccum.planner_fits file"));
  CHECK_THAT(load_json(json{{"model_type", "gpt_neox"}}),
             Catch::Contains(name) && Catch::Contains("\"format\" is missing"));
  {  // a grid-records file is not a fits file
    save_grid_records(synthetic_grid(), file);
    CHECK_THAT(error_of([&] { (void)load_planner_fits(file); }),
               Catch::Contains("not a contaccum.planner_fits file") && Catch::Contains("contaccum.grid_records"));
  }
  auto j = good;
  j["version"] = 2;
  CHECK_THAT(load_json(j), Catch::Contains(name + ": contaccum.planner_fits version 2 is not supported"));
  j = good;
  j.erase("fits");
  CHECK_THAT(load_json(j), Catch::Contains(name + ": fits is missing"));
  j = good;
  j["fits"][1]["loss"].erase("slope");
  CHECK_THAT(load_json(j), Catch::Contains(name + ": fits[1].loss.slope is missing"));
  j = good;
  j["fits"][2]["setting"] = "sixteen";
  CHECK_THAT(load_json(j), Catch::Contains(name + ": fits[2].setting must be an integer or null"));
  j = good;
  j["fits"][2]["setting"] = nullptr;  // LoRA without a rank
  CHECK_THAT(load_json(j), Catch::Contains("fits[2].setting") && Catch::Contains("needs a setting (r)"));
  j = good;
  j["fits"][0]["method"] = "prefix_tuning";
  CHECK_THAT(load_json(j), Catch::Contains("fits[0].method") && Catch::Contains("unknown fine-tuning method"));
  j = good;
  j["fits"][3]["frontier"][4].erase("non_embedding_params");
  CHECK_THAT(load_json(j), Catch::Contains(name + ": fits[3].frontier[4].non_embedding_params is missing"));
  j = good;
  j["fits"][1] = j["fits"][0];
  CHECK_THAT(load_json(j), Catch::Contains("fits[1]: method full is fitted twice"));
  CHECK_THAT(error_of([&] { (void)load_planner_fits(dir / "absent.json"); }),
             Catch::Contains("cannot be opened") && Catch::Contains("absent.json"));

  // grid records
  save_grid_records(synthetic_grid(), file);
  auto g = json::parse(std::ifstream(file));
  g["records"][3].erase("budget_flops");
  write(file, g.dump());
  CHECK_THAT(error_of([&] { (void)load_grid_records(file); }),
             Catch::Contains(name + ": records[3].budget_flops is missing"));
  g["records"][3]["budget_flops"] = -5;
  write(file, g.dump());
  CHECK_THAT(error_of([&] { (void)load_grid_records(file); }),
             Catch::Contains(name + ": records[3]") && Catch::Contains("budget_flops must be positive"));
  write(file, good.dump());
  CHECK_THAT(error_of([&] { (void)load_grid_records(file); }), Catch::Contains("not a contaccum.grid_records file"));
}

TEST_CASE("Planner errors name the method, the budget or what is missing", "[planner]") {
  // one distinct budget for LoRA (two records at the same budget do not make a line)
  std::vector<GridRecord> r{{Method::full, {}, "m", 1000, 1e9, 10, 2.0},
                            {Method::full, {}, "m", 1000, 1e10, 10, 1.5},
                            {Method::lora, 8, "m", 1000, 1e9, 10, 2.0},
                            {Method::lora, 8, "n", 3000, 1e9, 10, 1.9},
                            {Method::lora, 8, "n", 3000, 1e10, 10, std::numeric_limits<double>::infinity()}};
  CHECK_THROWS_WITH(fit_method(r, Method::lora), Catch::Contains("method lora") && Catch::Contains("1 distinct budget"));
  CHECK_THROWS_WITH(fit_planner(r), Catch::Contains("method lora"));
  CHECK_THROWS_WITH(fit_method(r, Method::bias_only), Catch::Contains("method bias_only") && Catch::Contains("0 distinct"));
  CHECK_THROWS_WITH(fit_planner({}), Catch::Contains("no grid records"));
  CHECK_NOTHROW(fit_method(r, Method::full));
  r[0].budget_flops = -1;
  CHECK_THROWS_WITH(fit_method(r, Method::full), Catch::Contains("budget_flops must be positive"));

  const auto fits = fit_planner(synthetic_grid());
  const auto family = pythia_family();
  CHECK_THROWS_WITH(recommend(PlannerFits{}, 1e18, family), Catch::Contains("no method has been fitted"));
  for (double bad : {0.0, -1e18, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()})
    CHECK_THROWS_WITH(recommend(fits, bad, family), Catch::Contains("budget must be a positive, finite number"));
  CHECK_THROWS_WITH(recommend(fits, 1e18, {}), Catch::Contains("family is empty"));
  PlannerFits only_full{{*fits.find(Method::full)}};
  CHECK_THROWS_WITH(recommend(only_full, 1e18, family, {.methods = {Method::lora}}),
                    Catch::Contains("method lora is allowed but was not fitted"));
  // a budget too small for one step on the chosen model
  CHECK_THROWS_WITH(recommend(fits, 1e3, family, {.pairs_per_step = 1024}), Catch::Contains("too small for one optimizer step"));
  CHECK_THROWS_WITH(parse_method("adapterfusion", "cli --method"),
                    Catch::Contains("cli --method: unknown fine-tuning method \"adapterfusion\""));
}

TEST_CASE("The grid runner trains every cell with the Trainer and more budget lowers the loss", "[planner][grid]") {
  // Tiny models run fastest on one thread (and are not slowed by other work on the cores).
  const OneThread one_thread;
  // Two tiny Pythia-shaped models on the learnable synthetic task (vocab 120).
  torch::manual_seed(3);
  std::vector<GridModel> models{{"tiny-16", GptNeox(pythia_shaped_config(1, 16, 2, 120, 32))},
                                {"tiny-32", GptNeox(pythia_shaped_config(1, 32, 2, 120, 32))}};
  std::vector<torch::Tensor> start;
  for (const auto& m : models)
    for (const auto& p : m.model->parameters()) start.push_back(p.detach().clone());
  const std::vector<GridMethod> methods{{Method::full, {}}, {Method::block_freeze, 1}, {Method::lora, 2},
                                        {Method::bias_only, {}}};
  auto data = SyntheticPairs({.vocab_size = 120, .passage_length = 12, .query_length = 6, .hard_negatives = 0, .seed = 11});
  const auto pool = data.next(512), held_out = data.next(256);
  const double tokens_per_pair = mean_tokens_per_pair(pool);
  CHECK(tokens_per_pair > 4);
  CHECK(tokens_per_pair < 18);

  std::ostringstream progress;
  int calls = 0;
  const GridRunnerConfig config{.budgets = {1.6e8, 4e7},
                                .batch_size = 16,
                                .learning_rate = {.full = 1e-3, .block_freeze = 1e-3, .lora = 3e-3, .bias_only = 3e-3},
                                .temperature = 0.05,
                                .progress = &progress,
                                .on_record = [&](const GridRecord&) { ++calls; }};
  const auto t0 = std::chrono::steady_clock::now();
  const auto records = run_grid(models, methods, pool, held_out, config);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  WARN("grid runner: " << records.size() << " cells in " << secs << " s\n" << progress.str());

  REQUIRE(records.size() == 2 * 2 * 4);
  CHECK(calls == 16);
  int lines = 0;
  std::istringstream in(progress.str());
  for (std::string line; std::getline(in, line);) lines += line.find("held-out loss") != std::string::npos ? 1 : 0;
  CHECK(lines == 16);  // one progress line per cell
  for (const auto& r : records) {
    INFO(method_name(r.method) << " " << r.model << " C " << r.budget_flops);
    CHECK(std::isfinite(r.loss));
    CHECK(r.pairs > 0);
    CHECK(r.pairs % 16 == 0);
    // the runner's cost per token, counted on the prepared model, is the config count
    const auto& cfg = r.model == "tiny-16" ? models[0].model->config() : models[1].model->config();
    CHECK(r.pairs == pairs_for_budget(r.budget_flops, method_flops_per_token(cfg, r.method, r.setting), tokens_per_pair, 16));
    CHECK(r.non_embedding_params == non_embedding_parameters(cfg));
  }
  CHECK(records.front().budget_flops == 4e7);  // budgets ascending

  // More budget, lower held-out loss: full fine-tuning, for each model.
  auto loss_of = [&](Method m, const std::string& model, double c) {
    for (const auto& r : records)
      if (r.method == m && r.model == model && r.budget_flops == c) return r.loss;
    return std::numeric_limits<double>::quiet_NaN();
  };
  for (const auto* model : {"tiny-16", "tiny-32"}) {
    INFO(model << ": full " << loss_of(Method::full, model, 4e7) << " -> " << loss_of(Method::full, model, 1.6e8));
    CHECK(loss_of(Method::full, model, 1.6e8) < loss_of(Method::full, model, 4e7));
  }
  // The records fit and plan.
  const auto fits = fit_planner(records);
  CHECK(fits.methods.size() == 4);
  std::vector<PlannerModel> family{{"tiny-16", models[0].model->config()}, {"tiny-32", models[1].model->config()}};
  const auto plan = recommend(fits, 6.4e8, family, {.tokens_per_pair = tokens_per_pair, .pairs_per_step = 16});
  CHECK(plan.pairs > 0);

  // The starting weights are untouched (every cell trained a copy).
  std::size_t k = 0;
  for (const auto& m : models)
    for (const auto& p : m.model->parameters()) CHECK(torch::equal(p, start[k++]));
  // A budget below one step skips every cell.
  std::ostringstream skipped;
  auto small = config;
  small.budgets = {1e3};
  small.progress = &skipped;
  CHECK(run_grid(models, methods, pool, held_out, small).empty());
  CHECK_THAT(skipped.str(), Catch::Contains("skipped: one step costs"));
  CHECK_THROWS_WITH(run_grid(models, {{Method::block_freeze, 2}}, pool, held_out, config),
                    Catch::Contains("block_freeze k = 2 but model tiny-16 has 1 blocks"));
  CHECK_THROWS_WITH(run_grid(models, {{Method::lora, {}}}, pool, held_out, config), Catch::Contains("needs a setting (r)"));
  CHECK_THROWS_WITH(run_grid(models, methods, pool.slice(0, 8), held_out, config), Catch::Contains("fewer than one batch"));

  // Resuming: cells found in `done` are returned as they are, not trained again; the rest train.
  std::ostringstream resumed;
  auto again = config;
  again.budgets = {4e7, 1.6e8, 3.2e8};
  again.done = records;
  again.progress = &resumed;
  int again_calls = 0;
  again.on_record = [&](const GridRecord&) { ++again_calls; };
  const auto more = run_grid(models, methods, pool, held_out, again);
  REQUIRE(more.size() == 3 * 2 * 4);
  CHECK(again_calls == 24);
  for (std::size_t i = 0; i < records.size(); ++i) CHECK(more[i] == records[i]);  // same order, same values
  int resumed_lines = 0, trained_lines = 0;
  std::istringstream rin(resumed.str());
  for (std::string line; std::getline(rin, line);) {
    resumed_lines += line.find("resumed: held-out loss") != std::string::npos ? 1 : 0;
    trained_lines += line.find("steps") != std::string::npos ? 1 : 0;
  }
  CHECK(resumed_lines == 16);
  CHECK(trained_lines == 8);  // only the new budget trains
  for (std::size_t i = 16; i < more.size(); ++i) CHECK(more[i].budget_flops == 3.2e8);
  // A finished cell whose N is not the model's comes from another model: an error.
  auto wrong = again;
  wrong.done.front().non_embedding_params += 1;
  CHECK_THROWS_WITH(run_grid(models, methods, pool, held_out, wrong), Catch::Contains("come from other models"));
}

TEST_CASE("A user adapter is a method of the grid and the planner without editing a list", "[planner][grid][customisation]") {
  using user_adapters::LayerNormOnly;
  const auto ln = method_of<LayerNormOnly>();
  CHECK(method_name(ln) == "layer_norm_only");
  CHECK(setting_name(ln).empty());
  CHECK(describe_setting(ln, {}) == "-");

  // Priced on a GPT-NeoX shape by its adapter's customisation: equal to the built model's count.
  const auto cfg = pythia_shaped_config(3, 32, 2, 101, 64);
  GptNeox model(cfg);
  LayerNormOnly{}.prepare(model);
  CHECK(method_trainable_non_embedding(cfg, ln, {}) == count_trainable_non_embedding(model));
  CHECK(method_trainable_non_embedding(cfg, ln, {}) == (2 * 3 + 1) * 2 * 32);
  CHECK(method_flops_per_token(cfg, ln, {}) == flops_per_token(LayerNormOnly{}, model));
  CHECK_THROWS_WITH(method_flops_per_token(cfg, ln, 2), Catch::Contains("method layer_norm_only takes no setting"));
  const Method by_hand{.name = "by_hand"};  // not made by method_of: no cost model
  CHECK_THROWS_WITH(method_flops_per_token(cfg, by_hand, {}), Catch::Contains("by_hand carries no cost model"));

  // Records and fits name it; files round-trip when it is given as a known method.
  auto records = synthetic_grid();
  for (double x : {12.0, 13.0, 14.0})
    records.push_back({ln, {}, "opt", 30000, std::pow(10.0, x), 1000, 6.0 - 0.3 * x});
  const auto fits = fit_planner(records);
  REQUIRE(fits.methods.size() == 5);
  CHECK(fits.methods.front().method == Method::full);
  CHECK(fits.methods.back().method == ln);  // after the paper's four
  CHECK(fits.find(ln)->loss.slope == Approx(-0.3).margin(1e-9));
  const auto dir = scratch();
  save_grid_records(records, dir / "user_grid.json");
  CHECK_THAT(error_of([&] { (void)load_grid_records(dir / "user_grid.json"); }),
             Catch::Contains("unknown fine-tuning method \"layer_norm_only\"") &&
                 Catch::Contains("(expected full, block_freeze, lora or bias_only)"));
  const auto loaded = load_grid_records(dir / "user_grid.json", {ln});
  REQUIRE(loaded.size() == records.size());
  CHECK(loaded.back() == records.back());
  CHECK(fit_planner(loaded) == fits);
  save_planner_fits(fits, dir / "user_fits.json");
  CHECK(load_planner_fits(dir / "user_fits.json", {ln}) == fits);
  CHECK_THAT(error_of([&] { (void)load_planner_fits(dir / "user_fits.json"); }),
             Catch::Contains("fits[4].method") && Catch::Contains("unknown fine-tuning method"));
  CHECK(parse_method("layer_norm_only", "cli", {ln}) == ln);

  // The planner prices it when it is the plan.
  const auto plan = recommend(fits, 1e14, fine_family(), {.tokens_per_pair = 78.0, .methods = {ln}});
  CHECK(plan.method == ln);
  CHECK_FALSE(plan.setting);
  CHECK(plan.flops_per_token == method_flops_per_token(plan.config, ln, {}));
  CHECK(plan.pairs == pairs_for_budget(1e14, plan.flops_per_token, 78.0, 1));

  // The grid runner trains it when given its adapter type (and a learning rate).
  const OneThread one_thread;
  torch::manual_seed(3);
  const std::vector<GridModel> models{{"tiny-16", GptNeox(pythia_shaped_config(1, 16, 2, 120, 32))}};
  auto data =
      SyntheticPairs({.vocab_size = 120, .passage_length = 12, .query_length = 6, .hard_negatives = 0, .seed = 11});
  const auto pool = data.next(128), held_out = data.next(64);
  const std::vector<GridMethod> methods{{Method::full, {}}, {ln, {}}};
  GridRunnerConfig config{.budgets = {4e7}, .batch_size = 16, .temperature = 0.05};
  const auto run_with_adapter = [&] {
    return run_grid<FullBatch<>, LayerNormOnly>(models, methods, pool, held_out, config);
  };
  CHECK_THROWS_WITH(run_with_adapter(), Catch::Contains("no learning rate for method layer_norm_only"));
  config.learning_rate.others["layer_norm_only"] = 3e-3;
  CHECK_THROWS_WITH(run_grid(models, methods, pool, held_out, config),
                    Catch::Contains("method layer_norm_only has no adapter type here"));
  const auto grid = run_with_adapter();
  REQUIRE(grid.size() == 2);
  CHECK(grid[0].method == Method::full);
  CHECK(grid[1].method == ln);
  const double tokens_per_pair = mean_tokens_per_pair(pool);
  for (const auto& r : grid) {
    INFO(method_name(r.method));
    CHECK(std::isfinite(r.loss));
    CHECK(r.pairs == pairs_for_budget(4e7, method_flops_per_token(models[0].model->config(), r.method, r.setting),
                                      tokens_per_pair, 16));
  }
  CHECK(grid[1].pairs > grid[0].pairs);  // 4N + 2N_t per token buys more pairs than 6N
}
