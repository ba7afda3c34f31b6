#pragma once
/// \file
/// \brief The compute-optimal planner of Ziarko et al. 2024 (arXiv 2406.04165), analysis
///        side: from a grid of runs, per fine-tuning method, fit
///
///     loss(C)          = a + b log10 C        (the best loss reachable with budget C)
///     log10 N_opt(C)   = c + d log10 C        (the model size that reached it)
///
/// by least squares over the method's *frontier*: at each budget the best run over all
/// models and method settings. For a new budget the planner picks the method with the
/// lowest predicted loss, snaps its predicted N_opt to the nearest model of a family (in
/// log space), and spends the budget on pairs = C / (cost per token x tokens per pair).
///
/// \code
/// auto fits = contaccum::fit_planner(records);            // records: std::vector<GridRecord>
/// auto plan = contaccum::recommend(fits, 1e18, contaccum::pythia_family());
/// // plan.method, plan.setting, plan.model, plan.pairs, plan.predicted_loss
/// \endcode
///
/// The paper's coefficients are not published as numbers; the planner fits them from runs,
/// yours or the grid runner's (compute/grid_runner.hpp).

#include <contaccum/compute/flops.hpp>
#include <contaccum/compute/grid.hpp>
#include <contaccum/compute/method.hpp>
#include <contaccum/compute/planner_models.hpp>
#include <contaccum/detail/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace contaccum {

/// \brief y = intercept + slope x with x = log10 C.
struct LogLinear {
  double intercept = 0;
  double slope = 0;

  [[nodiscard]] double at(double budget_flops) const { return intercept + slope * std::log10(budget_flops); }
  bool operator==(const LogLinear&) const = default;
};

/// \brief The best run of a method at one budget.
struct FrontierPoint {
  double budget_flops = 0;
  double loss = 0;
  std::string model;
  int64_t non_embedding_params = 0;
  std::optional<int64_t> setting;
  int64_t pairs = 0;

  bool operator==(const FrontierPoint&) const = default;
};

/// \brief One method's scaling laws, fitted on its frontier.
struct MethodFit {
  Method method = Method::full;
  LogLinear loss;        ///< loss = a + b log10 C
  LogLinear model_size;  ///< log10 N_opt = c + d log10 C
  /// The setting to recommend: the one most frequent on the frontier; a tie goes to the
  /// setting of the largest budget among the tied (plans are usually extrapolations to
  /// larger budgets). Empty for a method without a setting (full, bias_only).
  std::optional<int64_t> setting;
  std::vector<FrontierPoint> frontier;  ///< ascending budget, one point per distinct budget

  /// \brief Predicted best loss at budget C.
  [[nodiscard]] double predicted_loss(double budget_flops) const { return loss.at(budget_flops); }
  /// \brief Predicted compute-optimal N (non-embedding parameters) at budget C, unsnapped.
  [[nodiscard]] double predicted_model_size(double budget_flops) const {
    return std::pow(10.0, model_size.at(budget_flops));
  }
  bool operator==(const MethodFit&) const = default;
};

/// \brief Every fitted method: the paper's four in its order (full, block_freeze, lora,
///        bias_only), then any other method (a user adapter's) in the order the records
///        first name it.
struct PlannerFits {
  std::vector<MethodFit> methods;

  /// \brief The fit of `m`, or nullptr when it was not fitted.
  [[nodiscard]] const MethodFit* find(Method m) const {
    for (const auto& f : methods)
      if (f.method == m) return &f;
    return nullptr;
  }
  bool operator==(const PlannerFits&) const = default;
};

namespace detail {

// Least squares y = intercept + slope x over (x, y); needs two distinct x.
[[nodiscard]] inline LogLinear least_squares(const std::vector<std::pair<double, double>>& xy) {
  double mx = 0, my = 0;
  for (const auto& [x, y] : xy) {
    mx += x;
    my += y;
  }
  mx /= static_cast<double>(xy.size());
  my /= static_cast<double>(xy.size());
  double sxx = 0, sxy = 0;
  for (const auto& [x, y] : xy) {
    sxx += (x - mx) * (x - mx);
    sxy += (x - mx) * (y - my);
  }
  const double slope = sxy / sxx;
  return {my - slope * mx, slope};
}

// Two budgets are the same grid column when they agree to 1e-9 relative: budgets written
// and read back through text may differ in the last bit.
[[nodiscard]] inline bool same_budget(double a, double b) { return std::abs(a - b) <= 1e-9 * std::max(a, b); }

// The setting most frequent on the frontier; ties go to the largest budget's.
[[nodiscard]] inline std::optional<int64_t> frontier_setting(const std::vector<FrontierPoint>& frontier) {
  std::map<int64_t, int> count;
  for (const auto& p : frontier)
    if (p.setting) ++count[*p.setting];
  std::optional<int64_t> best;
  int best_count = 0;
  for (const auto& p : frontier) {  // ascending budget: a later tie wins
    if (!p.setting) continue;
    if (count[*p.setting] >= best_count) {
      best_count = count[*p.setting];
      best = p.setting;
    }
  }
  return best;
}

}  // namespace detail

/// \brief The frontier of `method` in `records`: per distinct budget, the run with the
///        lowest finite loss (diverged runs, NaN/Inf, never win), ascending budget.
[[nodiscard]] inline std::vector<FrontierPoint> method_frontier(const std::vector<GridRecord>& records, Method method) {
  std::vector<FrontierPoint> out;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    if (r.method != method) continue;
    validate(r, detail::cat("grid record ", i, " (", method_name(r.method), ", ", r.model, ")"));
    if (!std::isfinite(r.loss)) continue;
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const FrontierPoint& p) { return detail::same_budget(p.budget_flops, r.budget_flops); });
    const FrontierPoint point{r.budget_flops, r.loss, r.model, r.non_embedding_params, r.setting, r.pairs};
    if (it == out.end()) out.push_back(point);
    else if (r.loss < it->loss) *it = point;
  }
  std::sort(out.begin(), out.end(),
            [](const FrontierPoint& a, const FrontierPoint& b) { return a.budget_flops < b.budget_flops; });
  return out;
}

/// \brief Fits `method`'s two laws on its frontier. Throws invalid_input naming the method
///        when it has finite-loss runs at fewer than 2 distinct budgets.
[[nodiscard]] inline MethodFit fit_method(const std::vector<GridRecord>& records, Method method) {
  MethodFit fit{.method = method, .frontier = method_frontier(records, method)};
  if (fit.frontier.size() < 2) {
    std::ostringstream budgets;
    for (const auto& p : fit.frontier) budgets << " " << p.budget_flops;
    detail::require(false, "fit_method: method ", method_name(method), " has runs with a finite loss at ",
                    fit.frontier.size(), " distinct budget(s)", fit.frontier.empty() ? "" : " (", budgets.str(),
                    fit.frontier.empty() ? "" : " FLOPs)",
                    "; fitting loss and N_opt as lines in log10(budget) needs at least 2");
  }
  std::vector<std::pair<double, double>> loss_xy, size_xy;
  for (const auto& p : fit.frontier) {
    loss_xy.emplace_back(std::log10(p.budget_flops), p.loss);
    size_xy.emplace_back(std::log10(p.budget_flops), std::log10(static_cast<double>(p.non_embedding_params)));
  }
  fit.loss = detail::least_squares(loss_xy);
  fit.model_size = detail::least_squares(size_xy);
  fit.setting = detail::frontier_setting(fit.frontier);
  return fit;
}

/// \brief Fits every method that has runs in `records` (the paper's four in its order, then
///        the others in order of appearance). Throws invalid_input for no records, or naming
///        the first method with fewer than 2 distinct budgets.
[[nodiscard]] inline PlannerFits fit_planner(const std::vector<GridRecord>& records) {
  detail::require(!records.empty(), "fit_planner: no grid records to fit");
  std::vector<Method> order(std::begin(all_methods), std::end(all_methods));
  for (const auto& r : records)
    if (std::find(order.begin(), order.end(), r.method) == order.end()) order.push_back(r.method);
  PlannerFits fits;
  for (const auto& m : order)
    if (std::any_of(records.begin(), records.end(), [&m](const GridRecord& r) { return r.method == m; }))
      fits.methods.push_back(fit_method(records, m));
  return fits;
}

/// \brief The family member whose N is nearest to `n` in log space (ties: the first).
///        Throws invalid_input for an empty family or a non-positive n.
[[nodiscard]] inline const PlannerModel& snap_model_size(double n, const std::vector<PlannerModel>& family) {
  detail::require(!family.empty(), "snap_model_size: the model family is empty");
  detail::require(std::isfinite(n) && n > 0, "snap_model_size: the model size must be positive and finite, got ", n);
  const PlannerModel* best = nullptr;
  double best_distance = 0;
  for (const auto& m : family) {
    const double distance = std::abs(std::log(static_cast<double>(non_embedding_parameters(m.config))) - std::log(n));
    if (best == nullptr || distance < best_distance) {
      best = &m;
      best_distance = distance;
    }
  }
  return *best;
}

/// \brief How a plan turns a budget into pairs.
struct PlanOptions {
  double tokens_per_pair = 78.0;  ///< query + passage tokens per pair (the paper's data: 78)
  int64_t pairs_per_step = 1;     ///< round pairs down to whole steps of this many (the batch size)
  std::vector<Method> methods;    ///< methods allowed (e.g. those that fit in memory); empty = every fitted one
};

/// \brief What to train for a budget.
struct Recommendation {
  Method method = Method::full;
  std::optional<int64_t> setting;  ///< k or r (k clamped to the model's blocks); empty for full / bias_only
  std::string model;               ///< the family member nearest to the predicted N_opt
  GptNeoxConfig config;            ///< its shape
  int64_t non_embedding_params = 0;
  double budget_flops = 0;
  double predicted_model_size = 0;  ///< N_opt before snapping
  double predicted_loss = 0;        ///< the chosen method's a + b log10 C
  double flops_per_token = 0;       ///< of the chosen method and setting on the chosen model
  int64_t pairs = 0;                ///< C / (flops_per_token x tokens_per_pair), whole steps
  bool extrapolated = false;        ///< C lies outside the budgets the chosen method was fitted on
  /// The predicted loss is below zero, which a contrastive (cross-entropy) loss cannot
  /// reach: the straight line is read past where the loss flattens. The ranking of
  /// methods still follows the fits; the value itself is not a forecast.
  bool loss_below_zero = false;
  std::vector<std::pair<Method, double>> predicted_losses;  ///< every candidate method, best first
};

/// \brief The plan for `budget_flops`: the method with the lowest predicted loss, its
///        predicted N_opt snapped to `family`, its setting, and the pairs the budget buys.
///        Throws invalid_input for a budget that is not positive and finite, no fitted
///        method, an allowed method that was not fitted, or an empty family; and (from
///        pairs_for_budget) when the budget does not buy one step on the chosen model.
[[nodiscard]] inline Recommendation recommend(const PlannerFits& fits, double budget_flops,
                                              const std::vector<PlannerModel>& family, const PlanOptions& options = {}) {
  detail::require(std::isfinite(budget_flops) && budget_flops > 0,
                  "recommend: the budget must be a positive, finite number of FLOPs, got ", budget_flops);
  detail::require(!fits.methods.empty(), "recommend: no method has been fitted (fit_planner on grid records first)");
  detail::require(!family.empty(), "recommend: the model family is empty");
  std::vector<const MethodFit*> candidates;
  if (options.methods.empty()) {
    for (const auto& f : fits.methods) candidates.push_back(&f);
  } else {
    for (const auto& m : options.methods) {
      const auto* f = fits.find(m);
      detail::require(f != nullptr, "recommend: method ", method_name(m), " is allowed but was not fitted");
      candidates.push_back(f);
    }
  }
  Recommendation r{.budget_flops = budget_flops};
  for (const auto* f : candidates) r.predicted_losses.emplace_back(f->method, f->predicted_loss(budget_flops));
  std::stable_sort(r.predicted_losses.begin(), r.predicted_losses.end(),
                   [](const auto& a, const auto& b) { return a.second < b.second; });
  const MethodFit& best = *fits.find(r.predicted_losses.front().first);
  r.method = best.method;
  r.predicted_loss = r.predicted_losses.front().second;
  r.predicted_model_size = best.predicted_model_size(budget_flops);
  const PlannerModel& model = snap_model_size(r.predicted_model_size, family);
  r.model = model.name;
  r.config = model.config;
  r.non_embedding_params = non_embedding_parameters(model.config);
  r.setting = best.setting;
  if (r.method == Method::block_freeze && r.setting)
    r.setting = std::min(*r.setting, model.config.num_hidden_layers);  // k fitted on shallower models
  validate_setting(r.method, r.setting, detail::cat("recommend: the fit of ", method_name(r.method)));
  r.flops_per_token = method_flops_per_token(model.config, r.method, r.setting);
  r.pairs = pairs_for_budget(budget_flops, r.flops_per_token, options.tokens_per_pair, options.pairs_per_step);
  r.extrapolated = !best.frontier.empty() && (budget_flops < best.frontier.front().budget_flops * (1 - 1e-9) ||
                                              budget_flops > best.frontier.back().budget_flops * (1 + 1e-9));
  r.loss_below_zero = r.predicted_loss < 0;
  return r;
}

}  // namespace contaccum
