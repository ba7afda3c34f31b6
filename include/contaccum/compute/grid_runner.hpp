#pragma once
/// \file
/// \brief The grid runner: trains every cell of (budget, model, method, method setting)
///        with the real contaccum::Trainer and records its final held-out loss: the runs
///        the planner (compute/planner.hpp) fits its laws on.
///
/// Each cell, as the compute-optimal recipe (Ziarko et al. 2024, arXiv 2406.04165) trains:
///  * a fresh copy of the model's starting weights, one shared tower, mean pooling over
///    real tokens, L2-normalised (DualEncoder<GptNeox, Normalized<MeanPooling>, SharedTower>);
///  * InfoNCE with in-batch negatives only, cosine / temperature (0.025: logits x 40),
///    symmetric (q->d and d->q averaged);
///  * AdamW (weight decay 0.1), warmup over the first 10% of steps, cosine decay to 0;
///  * pairs = pairs_for_budget(C, flops_per_token(adapter, model), tokens per pair,
///    batch size): the budget in the paper's FLOP accounting, counted on the prepared
///    model; a budget that does not buy one step skips the cell (reported, not recorded);
///  * the pairs are read in order from the start of one tokenized training pool, the
///    same for every cell, cycling when the pool runs out;
///  * the score is the mean in-batch loss over the held-out pairs, in chunks of the
///    training batch size (so a chunk has as many negatives as a training batch).
/// A run whose loss or gradient turns NaN/Inf stops and is recorded with loss NaN; the
/// planner never picks it.
///
/// \code
/// std::vector<contaccum::GridModel> models{{"micro-32", contaccum::GptNeox(cfg32)}, ...};
/// std::vector<contaccum::GridMethod> methods{{contaccum::Method::full}, {contaccum::Method::lora, 8}};
/// auto records = contaccum::run_grid(models, methods, train_pool, held_out,
///                                    {.budgets = {1e10, 4e10}, .batch_size = 32, .progress = &std::cout});
/// auto fits = contaccum::fit_planner(records);
/// \endcode

#include <contaccum/adapters/bias_only.hpp>
#include <contaccum/adapters/block_freeze.hpp>
#include <contaccum/detail/banner.hpp>
#include <contaccum/adapters/concepts.hpp>
#include <contaccum/adapters/full_fine_tune.hpp>
#include <contaccum/adapters/lora.hpp>
#include <contaccum/compute/adapter_cost.hpp>
#include <contaccum/compute/flops.hpp>
#include <contaccum/compute/grid.hpp>
#include <contaccum/compute/method.hpp>
#include <contaccum/data/batch.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/dual_encoder.hpp>
#include <contaccum/encoders/gpt_neox.hpp>
#include <contaccum/loss/info_nce.hpp>
#include <contaccum/loss/similarity.hpp>
#include <contaccum/pooling/mean.hpp>
#include <contaccum/pooling/normalized.hpp>
#include <contaccum/strategy/full_batch.hpp>
#include <contaccum/strategy/grad_accum.hpp>
#include <contaccum/train/fit.hpp>
#include <contaccum/train/trainer.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace contaccum {

/// \brief The embedding model every grid cell trains.
using GridEmbeddingModel = DualEncoder<GptNeox, Normalized<MeanPooling>, SharedTower>;
/// \brief The loss every grid cell trains with: InfoNCE over cosine similarities.
using GridLoss = InfoNCE<Cosine>;

/// \brief A model of the grid: a name and its starting weights (random or loaded). The
///        runner trains copies; these weights are never changed.
struct GridModel {
  std::string name;
  GptNeox model{nullptr};
};

/// \brief A method with its setting (k for block_freeze, r for lora, none otherwise).
struct GridMethod {
  Method method = Method::full;
  std::optional<int64_t> setting;
};

/// \brief Peak learning rate per method (adapters that train few parameters usually want
///        a larger one); a user method's by its name in `others`.
struct MethodLearningRates {
  double full = 1e-4;
  double block_freeze = 1e-4;
  double lora = 1e-3;
  double bias_only = 1e-3;
  std::map<std::string, double, std::less<>> others;  ///< by method name, for methods beyond the paper's four

  /// \brief The rate of `m`; throws invalid_input for a user method missing from `others`.
  [[nodiscard]] double of(const Method& m) const {
    if (m == Method::full) return full;
    if (m == Method::block_freeze) return block_freeze;
    if (m == Method::lora) return lora;
    if (m == Method::bias_only) return bias_only;
    const auto it = others.find(m.name);
    detail::require(it != others.end(), "MethodLearningRates: no learning rate for method ", m.name,
                    " (set learning_rate.others[\"", m.name, "\"])");
    return it->second;
  }
};

/// \brief How the grid runner trains and scores each cell.
struct GridRunnerConfig {
  std::vector<double> budgets;         ///< C per column, in FLOPs
  int64_t batch_size = 32;             ///< pairs per optimizer step (batch_size - 1 in-batch negatives)
  int64_t micro_batch_size = 0;        ///< N_local for GradAccum; 0 = batch_size (FullBatch ignores it)
  double tokens_per_pair = 0;          ///< FLOP accounting; 0 = measured on the pool (real query + passage tokens)
  MethodLearningRates learning_rate{};
  double weight_decay = 0.1;
  double warmup_fraction = 0.1;        ///< of the cell's steps, then cosine decay to 0
  double max_grad_norm = 1.0;          ///< 0 = no clipping
  double temperature = 0.025;          ///< cosine / temperature (the paper's scale 40)
  bool symmetric = true;               ///< average q->d and d->q InfoNCE
  double lora_alpha_over_rank = 1.0;   ///< LoRA alpha = this x r (scaling alpha / r)
  uint64_t seed = 0;                   ///< torch seed at the start of every cell
  std::ostream* progress = nullptr;    ///< one line per cell, when set
  std::function<void(const GridRecord&)> on_record;  ///< called after each recorded cell
  /// Cells already run (e.g. a stopped run's grid.json): a cell with the same method,
  /// setting, model and budget is not trained again; its record is returned (and passed to
  /// on_record) as it is, and its progress line says "resumed". The caller must make sure
  /// these records come from the same models, pool and settings.
  std::vector<GridRecord> done;
};

/// \brief An adapter a grid cell can train: costed (compute/adapter_cost.hpp), able to
///        prepare a GptNeox (to count its cost) and the grid's embedding model (to train).
///        The paper's four are; a user adapter is passed to run_grid as an extra type.
template <class A>
concept GridAdapter = CostedAdapter<A> && AdapterFor<A, GptNeox> && AdapterFor<A, GridEmbeddingModel>;

/// \brief Mean real tokens of a query plus its positive over `pairs` (what one training
///        pair costs in tokens, the paper's "78 tokens per pair").
[[nodiscard]] inline double mean_tokens_per_pair(const PairBatch& pairs) {
  detail::require(pairs.size() > 0, "mean_tokens_per_pair: no pairs");
  const auto tokens = pairs.queries.attention_mask.sum().item<double>() + pairs.positives.attention_mask.sum().item<double>();
  return tokens / static_cast<double>(pairs.size());
}

namespace detail {

// A fresh GptNeox with the same shape and weights (the module is not Cloneable).
[[nodiscard]] inline GptNeox copy_gpt_neox(const GptNeox& source) {
  GptNeox copy(source->config());
  torch::NoGradGuard no_grad;
  const auto from = source->named_parameters();
  for (auto& p : copy->named_parameters()) p.value().copy_(from[p.key()]);
  const auto from_buffers = source->named_buffers();
  for (auto& b : copy->named_buffers()) b.value().copy_(from_buffers[b.key()]);
  copy->to(source->parameters().front().device());
  return copy;
}

// Training batch `step` of a cell: consecutive slices of the pool from its start, cycling.
[[nodiscard]] inline PairBatch pool_batch(const PairBatch& pool, int64_t step, int64_t batch_size) {
  const int64_t per_pass = pool.size() / batch_size;
  const int64_t begin = (step % per_pass) * batch_size;
  const auto b = pool.slice(begin, begin + batch_size);
  return {trim_padding(b.queries), trim_padding(b.positives), {}};
}

// The cell's step batches for fit(): pool_batch(pool, s) for s = 0, 1, ... (a StepLoader).
class pool_loader {
public:
  pool_loader(const PairBatch& pool, int64_t batch_size) : pool_(&pool), batch_size_(batch_size) {}
  [[nodiscard]] PairBatch next() { return pool_batch(*pool_, position_++, batch_size_); }
  void save_state(StateDict& s, const std::string& prefix) const { s.set(prefix + "position", position_); }
  void load_state(const StateReader& r, const std::string& prefix) { position_ = r.value<int64_t>(prefix + "position"); }

private:
  const PairBatch* pool_;
  int64_t batch_size_;
  int64_t position_ = 0;
};

// Mean in-batch loss over `held_out` in chunks of `chunk` pairs (a short tail chunk is
// left out when there is a full one, so every chunk has the same number of negatives).
template <class Loss>
[[nodiscard]] double held_out_loss(GridEmbeddingModel& model, const Loss& loss, const PairBatch& held_out,
                                   int64_t chunk) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const auto device = model->parameters().front().device();
  const int64_t n = held_out.size(), step = std::min(chunk, n);
  double sum = 0;
  int64_t chunks = 0;
  for (int64_t begin = 0; begin + step <= n; begin += step) {
    const auto b = held_out.slice(begin, begin + step);
    const auto q = model->encode_queries(trim_padding(b.queries).to(device));      // (n, H)
    const auto d = model->encode_passages(trim_padding(b.positives).to(device));   // (n, H)
    sum += loss(q, d).template item<double>();
    ++chunks;
  }
  model->train(was_training);
  return sum / static_cast<double>(chunks);
}

struct CellOutcome {
  bool trained = false;
  int64_t pairs = 0, steps = 0;
  double loss = std::numeric_limits<double>::quiet_NaN();
  double flops_per_token = 0;
  bool diverged = false;
};

template <class S, GridAdapter A>
CellOutcome train_cell(const A& adapter, const GptNeox& start, double budget, const PairBatch& pool,
                       const PairBatch& held_out, double tokens_per_pair, const GridRunnerConfig& c,
                       const Method& method) {
  // The cost per token is counted once the adapter has marked what trains; a throwaway
  // prepare on a copy is cheaper than building a trainer for a cell that is skipped.
  CellOutcome out;
  {
    GptNeox probe = copy_gpt_neox(start);
    adapter.prepare(probe);
    out.flops_per_token = flops_per_token(adapter, probe);
  }
  const double per_step = out.flops_per_token * tokens_per_pair * static_cast<double>(c.batch_size);
  if (budget < per_step) return out;
  torch::manual_seed(c.seed);  // after the probe: LoRA's A draws the same numbers in every cell
  GridEmbeddingModel model(copy_gpt_neox(start));
  const GridLoss loss{.similarity = Cosine{c.temperature}, .symmetric = c.symmetric};
  const int64_t micro = c.micro_batch_size > 0 ? c.micro_batch_size : c.batch_size;
  out.pairs = pairs_for_budget(budget, out.flops_per_token, tokens_per_pair, c.batch_size);
  out.steps = out.pairs / c.batch_size;
  out.trained = true;
  const TrainerConfig tc{.micro_batch_size = micro,
                         .learning_rate = c.learning_rate.of(method),
                         .weight_decay = c.weight_decay,
                         .warmup_steps = static_cast<int64_t>(std::round(c.warmup_fraction * static_cast<double>(out.steps))),
                         .total_steps = out.steps,
                         .decay = Decay::cosine,
                         .max_grad_norm = c.max_grad_norm};
  Trainer<GridEmbeddingModel, S, A, GridLoss> trainer(model, tc, S{}, adapter, loss);
  try {
    pool_loader loader(pool, c.batch_size);
    fit(trainer, loader, {.steps = out.steps, .progress = false, .handle_signals = false});  // no run folder: a cell is short
  } catch (const non_finite_loss&) {
    out.diverged = true;
    return out;
  }
  out.loss = held_out_loss(model, loss, held_out, c.batch_size);
  return out;
}

// The adapter a cell of `method` trains before its setting: the planner's prototype
// (compute/method.hpp), LoRA's alpha set so that alpha / r = lora_alpha_over_rank.
template <class A>
[[nodiscard]] A grid_prototype(const GridRunnerConfig&) {
  return method_prototype<A>();
}
template <>
[[nodiscard]] inline LoRA grid_prototype<LoRA>(const GridRunnerConfig& c) {
  auto lora = method_prototype<LoRA>();
  lora.rank = 1;
  lora.alpha = c.lora_alpha_over_rank;  // with_setting(., r): alpha = lora_alpha_over_rank x r
  return lora;
}

// Whether one of Adapters is named `method`.
template <GridAdapter... Adapters>
[[nodiscard]] bool has_grid_adapter(const Method& method) {
  return ((method.name == std::string_view(Adapters::name)) || ...);
}

// Trains the cell with the adapter among Adapters named by m.method.
template <class S, GridAdapter... Adapters>
CellOutcome run_cell(const GridMethod& m, const GptNeox& start, double budget, const PairBatch& pool,
                     const PairBatch& held_out, double tokens_per_pair, const GridRunnerConfig& c) {
  CellOutcome out;
  bool found = false;
  auto try_adapter = [&]<class A>(std::type_identity<A>) {
    if (found || m.method.name != std::string_view(A::name)) return;
    found = true;
    out = train_cell<S>(with_method_setting(grid_prototype<A>(c), m.setting), start, budget, pool, held_out,
                        tokens_per_pair, c, m.method);
  };
  (try_adapter(std::type_identity<Adapters>{}), ...);
  require(found, "internal: run_grid has no adapter for method ", m.method.name);
  return out;
}

// ", 2.3 passes" when a cell reads the pool more than once (repeated pairs: a larger pool
// keeps the runs single-pass, as the paper's are).
inline std::string passes_note(int64_t steps, int64_t pool, int64_t batch_size) {
  const double passes = static_cast<double>(steps) / static_cast<double>(pool / batch_size);
  if (passes <= 1.0) return "";
  char note[32];
  std::snprintf(note, sizeof note, ", %.1f passes", passes);
  return note;
}

inline std::string fixed_width(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

}  // namespace detail

/// \brief Trains every (budget, model, method) cell and returns one record per trained
///        cell, budgets ascending, then models, then methods in the order given.
///        `train_pool`: tokenized training pairs (positives only; hard negatives are not
///        used), at least one batch; `held_out`: pairs never trained on, at least 2.
///        S is the strategy: FullBatch<> (one InfoNCE over the whole batch, the paper's)
///        or GradAccum<> (micro-batches of micro_batch_size, each its own InfoNCE).
///        `Extra...`: adapter types of methods beyond the paper's four (each a GridAdapter
///        whose `name` is its Method's, method_of<A>()); their learning rates come from
///        config.learning_rate.others.
///        Throws invalid_input, before training anything, for a bad setting, a
///        block_freeze k larger than a model's blocks, a method with no adapter type among
///        the four and Extra..., a method without a learning rate, a budget that is not
///        positive and finite, or too little data.
///
/// \code
/// const auto ln = contaccum::method_of<mine::LayerNormOnly>();
/// config.learning_rate.others["layer_norm_only"] = 3e-3;
/// auto records = contaccum::run_grid<contaccum::FullBatch<>, mine::LayerNormOnly>(
///     models, {{contaccum::Method::full}, {ln}}, train_pool, held_out, config);
/// \endcode
template <class S = FullBatch<>, GridAdapter... Extra>
[[nodiscard]] std::vector<GridRecord> run_grid(const std::vector<GridModel>& models, const std::vector<GridMethod>& methods,
                                               const PairBatch& train_pool, const PairBatch& held_out,
                                               const GridRunnerConfig& config) {
  // Methods are matched by name: a user adapter named like a built-in one would be trained
  // as the built-in while the planner prices the user's.
  static_assert(((Extra::name != std::string_view("full") && Extra::name != std::string_view("block_freeze") &&
                  Extra::name != std::string_view("lora") && Extra::name != std::string_view("bias_only")) &&
                 ...),
                CONTACCUM_BANNER "run_grid: an extra adapter's name clashes with a built-in method's "
                                 "(full, block_freeze, lora, bias_only)");
  detail::require(!models.empty(), "run_grid: no models");
  detail::require(!methods.empty(), "run_grid: no methods");
  detail::require(!config.budgets.empty(), "run_grid: no budgets (GridRunnerConfig.budgets)");
  detail::require(config.batch_size > 1, "run_grid: batch_size must be at least 2 (in-batch negatives), got ",
                  config.batch_size);
  detail::require(train_pool.size() >= config.batch_size, "run_grid: the training pool has ", train_pool.size(),
                  " pairs, fewer than one batch of ", config.batch_size);
  detail::require(held_out.size() >= 2, "run_grid: the held-out set needs at least 2 pairs, got ", held_out.size());
  train_pool.validate();
  held_out.validate();
  for (const auto b : config.budgets)
    detail::require(std::isfinite(b) && b > 0, "run_grid: every budget must be positive and finite, got ", b);
  for (const auto& m : models) detail::require(!m.model.is_empty(), "run_grid: model ", m.name, " is null");
  for (const auto& m : methods) {
    validate_setting(m.method, m.setting, "run_grid");
    detail::require(detail::has_grid_adapter<FullFineTune, BlockFreeze, LoRA, BiasOnly, Extra...>(m.method),
                    "run_grid: method ", method_name(m.method), " has no adapter type here: pass it as ",
                    "run_grid<Strategy, YourAdapter>(...)");
    (void)config.learning_rate.of(m.method);  // throws for a user method without one
    if (m.method == Method::block_freeze)
      for (const auto& model : models)
        detail::require(*m.setting <= model.model->num_layers(), "run_grid: block_freeze k = ", *m.setting,
                        " but model ", model.name, " has ", model.model->num_layers(), " blocks");
  }
  const double tokens_per_pair = config.tokens_per_pair > 0 ? config.tokens_per_pair : mean_tokens_per_pair(train_pool);
  auto budgets = config.budgets;
  std::sort(budgets.begin(), budgets.end());

  std::vector<GridRecord> records;
  const auto cells = budgets.size() * models.size() * methods.size();
  std::size_t cell = 0;
  for (const auto budget : budgets)
    for (const auto& model : models)
      for (const auto& method : methods) {
        ++cell;
        const auto n = non_embedding_parameters(model.model->config());
        char head[160];  // the progress line's cell: index, budget, model, N, method
        std::snprintf(head, sizeof head, "[%3zu/%zu] C %.3g  %s N %-9lld %s ", cell, cells, budget,
                      detail::fixed_width(model.name, 10).c_str(), static_cast<long long>(n),
                      detail::fixed_width(std::string(method_name(method.method)) + " " +
                                              describe_setting(method.method, method.setting), 17)
                          .c_str());
        const auto previous = std::find_if(config.done.begin(), config.done.end(), [&](const GridRecord& r) {
          return is_cell(r, method.method, method.setting, model.name, budget);
        });
        if (previous != config.done.end()) {
          detail::require(previous->non_embedding_params == n, "run_grid: the finished cell of model ", model.name,
                          " records N = ", previous->non_embedding_params, " but the model has N = ", n,
                          " (the finished cells come from other models)");
          records.push_back(*previous);
          if (config.progress != nullptr) {
            char tail[80];
            std::snprintf(tail, sizeof tail, "resumed: held-out loss %.4f", previous->loss);
            *config.progress << head << tail << std::endl;
          }
          if (config.on_record) config.on_record(records.back());
          continue;
        }
        const auto t0 = std::chrono::steady_clock::now();
        const auto out = detail::run_cell<S, FullFineTune, BlockFreeze, LoRA, BiasOnly, Extra...>(
            method, model.model, budget, train_pool, held_out, tokens_per_pair, config);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (config.progress != nullptr) {
          char tail[160];
          if (!out.trained)
            std::snprintf(tail, sizeof tail, "skipped: one step costs %.3g FLOPs",
                          out.flops_per_token * tokens_per_pair * static_cast<double>(config.batch_size));
          else
            std::snprintf(tail, sizeof tail, "pairs %7lld (%5lld steps%s)  held-out loss %s%.4f  %6.1f s",
                          static_cast<long long>(out.pairs), static_cast<long long>(out.steps),
                          detail::passes_note(out.steps, train_pool.size(), config.batch_size).c_str(),
                          out.diverged ? "DIVERGED " : "", out.loss, secs);
          *config.progress << head << tail << std::endl;
        }
        if (!out.trained) continue;
        records.push_back({.method = method.method, .setting = method.setting, .model = model.name,
                           .non_embedding_params = n, .budget_flops = budget, .pairs = out.pairs, .loss = out.loss});
        if (config.on_record) config.on_record(records.back());
      }
  return records;
}

}  // namespace contaccum
