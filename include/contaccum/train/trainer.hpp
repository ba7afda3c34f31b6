#pragma once
/// \file
/// \brief Trainer: a trainer *type* assembled from policies.
///
/// \code
/// using Model = contaccum::DualEncoder<contaccum::Bert, contaccum::ClsPooling>;
/// using Trainer = contaccum::Trainer<Model, contaccum::ContAccum<contaccum::DualBank>>;
/// Trainer trainer(Model(bert_config), {.micro_batch_size = 8, .learning_rate = 2e-5},
///                 contaccum::ContAccum<>({.capacity = 1024}));
/// contaccum::StepStats s = trainer.step(batch);  // one optimizer update over batch.size() pairs
/// \endcode
///
/// One step: accumulate gradients with the strategy (K micro-batches of N_local), every
/// backward through the Trainer's seam; reduce the gradients with the collective (once);
/// check the loss and gradients are finite (else: no update, the strategy rolls back, an
/// error names the step); measure each tower's gradient norm, clip, schedule the learning
/// rate, update, and report StepStats.
///
/// The policies, in template and constructor order: Model (a BiEncoder), Strategy, Adapter
/// (AdapterFor<A, Model>), Loss (a ContrastiveLoss), Collective (SingleProcess).

#include <contaccum/adapters/concepts.hpp>
#include <contaccum/adapters/full_fine_tune.hpp>
#include <contaccum/compute/memory.hpp>
#include <contaccum/detail/banner.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/concepts.hpp>
#include <contaccum/dist/concepts.hpp>
#include <contaccum/dist/single_process.hpp>
#include <contaccum/loss/concepts.hpp>
#include <contaccum/loss/info_nce.hpp>
#include <contaccum/precision/loss_scaler.hpp>
#include <contaccum/precision/precision.hpp>
#include <contaccum/strategy/concepts.hpp>
#include <contaccum/strategy/seam.hpp>
#include <contaccum/state/state_dict.hpp>
#include <contaccum/train/detail/trainer_state.hpp>
#include <contaccum/train/loss_watch.hpp>
#include <contaccum/train/optim.hpp>
#include <contaccum/train/stats.hpp>

#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <string>

namespace contaccum {

/// \brief Runtime knobs of a Trainer (the ContAccum paper's defaults where it has them).
struct TrainerConfig {
  int64_t micro_batch_size = 8;  ///< N_local: pairs per forward/backward
  double learning_rate = 2e-5;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  ///< for the decay; 0 = constant after warmup
  Decay decay = Decay::linear;
  double max_grad_norm = 2.0;  ///< clip the global gradient norm to this; 0 = no clipping
  /// >= 0: seed each forward chunk's dropout from (seed, step, global chunk), so a step split
  /// over W processes draws the masks one process would (EncodeContext). -1: the generators run
  /// on in one process; seed 0 on several.
  int64_t dropout_seed = -1;
  /// The encoders' compute type: fp32, or bf16 / fp16 autocast with fp32 weights, optimizer
  /// state, loss and banks (precision/precision.hpp). fp16 scales the loss (loss_scaler).
  Precision precision = Precision::fp32;
  double loss_scale_init = 65536.0;          ///< fp16 only: the first loss scale (GradScaler's 2^16)
  int64_t loss_scale_growth_interval = 2000;  ///< fp16 only: finite steps in a row that double the scale
};

/// \brief A TrainerConfig as JSON, field by field (the checkpoint's config fingerprint).
[[nodiscard]] inline nlohmann::json to_json(const TrainerConfig& c) {
  return {{"micro_batch_size", c.micro_batch_size}, {"learning_rate", c.learning_rate},
          {"weight_decay", c.weight_decay},         {"adam_beta1", c.adam_beta1},
          {"adam_beta2", c.adam_beta2},             {"adam_eps", c.adam_eps},
          {"warmup_steps", c.warmup_steps},         {"total_steps", c.total_steps},
          {"decay", c.decay},                       {"max_grad_norm", c.max_grad_norm},
          {"dropout_seed", c.dropout_seed},         {"precision", c.precision}};
}

namespace detail {
/// The Trainer's backward seam: the collective's exchange, plain backward. On the way it
/// measures how spread out the step's embeddings are (the collapse check), on the device
/// and without a host read until the step asks for it.
template <class C>
class collective_seam final : public BackwardSeam {
public:
  collective_seam(const C& c, double loss_scale) : collective_(&c), scale_(loss_scale) {}
  [[nodiscard]] LossInputs exchange(const LossInputs& in) override {
    auto global = collective_->exchange(in);  // every rank measures the same gathered rows
    observe(global.queries);
    observe(global.positives);
    return global;
  }
  /// The mean cosine between distinct rows of the embeddings seen this step (queries and
  /// positives, each side on its own rows); 0 when none had two rows.
  [[nodiscard]] double mean_cosine() const { return observed_ == 0 ? 0.0 : cosine_sum_.item<double>() / observed_; }
  /// fp16: the loss times the scale (GradCache's replay needs nothing more: the gradients it
  /// pushes come from this backward and already carry the scale).
  void backward(const torch::Tensor& loss, int64_t units) override {
    if (scale_ == 1.0) return BackwardSeam::backward(loss, units);
    ++calls_;
    (loss * (scale_ / static_cast<double>(units))).backward();
  }
  using BackwardSeam::backward;

private:
  // x: (n, H). ||sum of the unit rows||^2 = n + sum over i != j of cos(x_i, x_j), so the
  // mean over the n(n-1) distinct pairs costs one normalisation and one sum, not n^2.
  void observe(const torch::Tensor& x) {
    if (!x.defined() || x.dim() != 2 || x.size(0) < 2) return;
    torch::NoGradGuard no_grad;
    const auto v = x.detach().to(torch::promote_types(x.scalar_type(), torch::kFloat));
    const auto s = torch::nn::functional::normalize(v, torch::nn::functional::NormalizeFuncOptions().dim(1)).sum(0);
    const double n = static_cast<double>(x.size(0));
    auto c = (s.dot(s) - n) / (n * (n - 1.0));  // ()
    cosine_sum_ = cosine_sum_.defined() ? cosine_sum_ + c : c;
    ++observed_;
  }

  const C* collective_;
  double scale_;
  torch::Tensor cosine_sum_;
  int64_t observed_ = 0;
};

/// The mean cosine between a step's embeddings from which the Trainer reports a collapse:
/// every embedding then points the same way, and no ranking is possible, although the loss
/// can stay finite (the main job with --lr 1000 reaches 0.997 at its third step). Pretrained text
/// encoders sit far below it (all-MiniLM-L6-v2 on the Debian passages: about 0.1).
inline constexpr double collapse_cosine = 0.99;
}  // namespace detail

template <class Model, class S, class A = FullFineTune, class Loss = InfoNCE<DotProduct>, class C = SingleProcess>
class Trainer {
  static_assert(BiEncoder<Model>, CONTACCUM_BANNER
                "Trainer's first parameter must satisfy BiEncoder (encode_queries, encode_passages, "
                "query_parameters, passage_parameters), e.g. DualEncoder<Bert, ClsPooling>");
  static_assert(Strategy<S>, CONTACCUM_BANNER
                "Trainer's second parameter must satisfy Strategy: FullBatch, GradAccum, GradCache, ContAccum<Bank>, "
                "ContAccumOverGradCache<Bank> or another Accumulate<Schedule, Pool>");
  static_assert(Adapter<A>, CONTACCUM_BANNER "Trainer's third parameter must satisfy Adapter, e.g. FullFineTune");
  static_assert(AdapterFor<A, Model>, CONTACCUM_BANNER
                "Trainer's third parameter must satisfy AdapterFor<A, Model>: the adapter cannot prepare this model "
                "(e.g. BlockFreeze needs encoders with Transformer blocks)");
  static_assert(ContrastiveLoss<Loss>, CONTACCUM_BANNER
                "Trainer's fourth parameter must satisfy ContrastiveLoss, e.g. InfoNCE<Cosine>");
  static_assert(Collective<C>, CONTACCUM_BANNER
                "Trainer's fifth parameter must satisfy Collective (exchange, reduce_gradients, world_size, rank), "
                "e.g. SingleProcess");
  static_assert(StrategyFor<S, Model, Loss>, CONTACCUM_BANNER
                "the strategy cannot train this model with this loss (StrategyFor not satisfied)");

public:
  using model_type = Model;
  using strategy_type = S;
  using loss_type = Loss;
  using adapter_type = A;
  using collective_type = C;

  explicit Trainer(Model model, TrainerConfig config = {}, S strategy = S{}, A adapter = A{}, Loss loss = Loss{},
                   C collective = C{})
      : model_(std::move(model)), config_(config), strategy_(std::move(strategy)), adapter_(std::move(adapter)),
        loss_(std::move(loss)), collective_(std::move(collective)) {
    detail::require(config_.micro_batch_size > 0, "TrainerConfig.micro_batch_size must be positive, got ",
                    config_.micro_batch_size);
    detail::require(config_.learning_rate > 0, "TrainerConfig.learning_rate must be positive, got ",
                    config_.learning_rate);
    detail::require(config_.max_grad_norm >= 0, "TrainerConfig.max_grad_norm must be >= 0, got ",
                    config_.max_grad_norm);
    detail::require(config_.dropout_seed >= -1, "TrainerConfig.dropout_seed must be >= 0 or -1, got ",
                    config_.dropout_seed);
    scaler_ = LossScaler(config_.precision == Precision::fp16,
                         {.init_scale = config_.loss_scale_init, .growth_interval = config_.loss_scale_growth_interval});
    MemoryMeter::install();
    adapter_.prepare(model_);
    auto named = model_->named_parameters();
    for (const auto& p : named)
      if (p.value().requires_grad()) trainable_.push_back(p.value());
    detail::require(!trainable_.empty(), "Trainer: the adapter left no trainable parameter");
    auto keep_trainable = [](std::vector<torch::Tensor> v) {
      std::erase_if(v, [](const torch::Tensor& t) { return !t.requires_grad(); });
      return v;
    };
    query_params_ = keep_trainable(model_->query_parameters());
    passage_params_ = keep_trainable(model_->passage_parameters());
    optimizer_ = make_adamw(named, {config_.learning_rate, config_.weight_decay, config_.adam_beta1,
                                    config_.adam_beta2, config_.adam_eps});
    device_ = trainable_.front().device();
  }

  /// \brief One optimizer update over `batch` (N_total pairs, K = ceil(N_total / N_local)
  ///        micro-batches). Throws non_finite_loss (nothing updated) on NaN/Inf.
  StepStats step(const PairBatch& batch) {
    batch.validate();
    const auto m = batch.negatives_per_query();
    if (negatives_per_query_ < 0) negatives_per_query_ = m;
    detail::require(m == negatives_per_query_, "step ", step_, ": ", m,
                    " hard negatives per query, but earlier steps had ", negatives_per_query_,
                    " (the count must stay fixed during a run)");
    const auto on_device = batch.to(device_);

    MemoryMeter::reset_peak(device_);
    const auto t0 = std::chrono::steady_clock::now();
    model_->train(true);
    optimizer_->zero_grad(true);

    Accumulation acc;
    StepStats stats{.step = step_, .pairs = batch.size() * collective_.world_size()};  // global N_total
    stats.loss_scale = scaler_.enabled() ? scaler_.scale() : 0.0;
    detail::collective_seam<C> seam(collective_, scaler_.scale());  // one per step: it never outlives the collective
    GradientNorms norms;
    bool overflow = false;  // fp16: the scaled gradients were not finite; the step is skipped
    try {
      if constexpr (MultiProcessCollective<C>) collective_.begin_step(step_);
      const auto world = collective_.world_size();
      acc = strategy_.accumulate(
          model_, loss_, on_device,
          StepContext{.step = step_, .micro_batch_size = config_.micro_batch_size, .seam = &seam,
                      .world_size = world, .rank = collective_.rank(),
                      .dropout_seed = config_.dropout_seed >= 0 ? config_.dropout_seed : (world > 1 ? 0 : -1),
                      .precision = config_.precision});
      try {
        collective_.reduce_gradients(trainable_);  // once per step, before the norms and the clip
      } catch (const non_finite_loss&) {
        if (!scaler_.enabled()) throw;  // every rank saw the same flag: every rank skips
        overflow = true;
      }
      if (!overflow) {
        scaler_.unscale(trainable_);
        norms = gradient_norms(trainable_, query_params_, passage_params_);
        stats.grad_norm_query = norms.query;
        stats.grad_norm_passage = norms.passage;
        stats.grad_norm = norms.total;
        overflow = scaler_.enabled() && !std::isfinite(stats.grad_norm);
        if (!overflow && !std::isfinite(stats.grad_norm))
          throw non_finite_loss(detail::cat("contaccum: step ", step_, ": gradient norm is ", stats.grad_norm,
                                            " (loss ", acc.loss, "); no parameter was updated"),
                                step_);
      }
    } catch (...) {
      backward_calls_ += seam.calls();
      optimizer_->zero_grad(true);
      strategy_.finish_step(false);
      throw;
    }
    backward_calls_ += seam.calls();
    scaler_.update(overflow);
    stats.loss = acc.loss;
    stats.micro_batches = acc.micro_batches;
    if (overflow) {  // GradScaler's skip: nothing updated, the bank keeps its rows, the scale backs off
      optimizer_->zero_grad(true);
      strategy_.finish_step(false);
      stats.overflow = true;
      stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      stats.peak_memory_bytes = MemoryMeter::peak_bytes(device_);
      ++step_;
      return stats;
    }
    if (config_.max_grad_norm > 0) clip_gradients(trainable_, config_.max_grad_norm, norms);
    stats.learning_rate =
        config_.learning_rate * lr_factor(step_, config_.warmup_steps, config_.total_steps, config_.decay);
    set_learning_rate(*optimizer_, stats.learning_rate);
    optimizer_->step();
    strategy_.finish_step(true);

    if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
    stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    stats.peak_memory_bytes = MemoryMeter::peak_bytes(device_);
    stats.negatives_per_query = acc.negatives_per_query;
    stats.score_cache_hits = acc.score_cache_hits;
    stats.score_cache_fallbacks = acc.score_cache_fallbacks;
    stats.score_cache_note = std::move(acc.score_cache_note);
    stats.grad_norm_ratio = stats.grad_norm_query > 0 ? stats.grad_norm_passage / stats.grad_norm_query : 0.0;
    stats.embedding_cosine = seam.mean_cosine();
    // a loss that sums several InfoNCE terms (Matryoshka) says how many: chance is that times log(1 + m)
    double terms = 1.0;
    if constexpr (requires { loss_.chance_terms(); }) terms = loss_.chance_terms();
    auto loss_warning = loss_watch_.observe(stats.loss / terms, stats.negatives_per_query);
    if (stats.embedding_cosine > detail::collapse_cosine)
      stats.collapse = detail::cat("the embeddings have collapsed: their mean pairwise cosine is ", stats.embedding_cosine,
                                   " (every text maps to nearly one direction; is the learning rate ",
                                   stats.learning_rate, " too high?)");
    else
      stats.collapse = std::move(loss_warning);
    ++step_;
    return stats;
  }

  /// \brief Saves everything a resumed run needs to continue bit for bit: the step and
  ///        counters, the config fingerprint, the model's tensors ("model."), AdamW's moments
  ///        and step counts ("optimizer."), the strategy's bank ("strategy.") and every
  ///        random generator ("rng."). Call it between steps.
  template <class S2 = S>
  void save_state(StateDict& s, const std::string& prefix = "") const {
    static_assert(Stateful<S2>, CONTACCUM_BANNER
                  "Trainer::save_state: the strategy is not Stateful (save_state/load_state): its pool or "
                  "memory bank cannot be checkpointed");
    s.set(prefix + "trainer.step", step_);
    s.set(prefix + "trainer.negatives_per_query", negatives_per_query_);
    s.set(prefix + "trainer.backward_calls", backward_calls_);
    s.set_all(prefix + "trainer.config.", to_json(config_));
    for (const auto& [field, name] : policy_names()) s.set(prefix + "trainer.types." + field, name);
    s.set_all(prefix + "trainer.loss.", loss_settings());
    detail::save_module_tensors(s, prefix + "model.", *model_);
    detail::save_adamw(s, prefix + "optimizer.", *optimizer_, parameter_names());
    strategy_.save_state(s, prefix + "strategy.");
    detail::save_generators(s, prefix + "rng.");
    if (scaler_.enabled()) scaler_.save_state(s, prefix + "trainer.loss_scaler.");
    loss_watch_.save_state(s, prefix + "trainer.loss_watch.");
  }

  /// \brief Restores a saved state. Everything is checked before anything changes: a config
  ///        field, policy, model tensor, optimizer entry or bank setting that differs gives
  ///        one invalid_input naming it, and the trainer is left as it was.
  template <class S2 = S>
  void load_state(const StateReader& r, const std::string& prefix = "") {
    static_assert(Stateful<S2>, CONTACCUM_BANNER
                  "Trainer::load_state: the strategy is not Stateful (save_state/load_state)");
    std::string differing;
    const auto config = to_json(config_);  // named: items() does not extend its life
    for (const auto& [field, now] : config.items()) {
      const auto key = prefix + "trainer.config." + field;
      if (!r.has_value(key)) r.fail(key, "is missing");
      const auto saved = r.value<nlohmann::json>(key);
      if (saved != now) differing += detail::cat("\n  TrainerConfig.", field, ": ", saved.dump(), " in the checkpoint, ",
                                                 now.dump(), " in this trainer");
    }
    if (!differing.empty())
      throw invalid_input(detail::cat("contaccum: checkpoint ", r.source(),
                                      ": the trainer's config differs from the one that wrote it:", differing));
    for (const auto& [field, name] : policy_names()) r.require_same(prefix + "trainer.types." + field, name);
    r.require_same_all(prefix + "trainer.loss.", loss_settings());
    const auto step = r.value<int64_t>(prefix + "trainer.step");
    const auto m = r.value<int64_t>(prefix + "trainer.negatives_per_query");
    const auto calls = r.value<int64_t>(prefix + "trainer.backward_calls");
    if (step < 0) r.fail(prefix + "trainer.step", "is ", step);
    const auto copies = detail::check_module_tensors(r, prefix + "model.", *model_);
    auto moments = detail::check_adamw(r, prefix + "optimizer.", *optimizer_, parameter_names());
    const auto generators = detail::check_generators(r, prefix + "rng.");
    LossScaler scaler = scaler_;
    if (scaler.enabled()) scaler.load_state(r, prefix + "trainer.loss_scaler.");
    LossWatch watch;
    watch.load_state(r, prefix + "trainer.loss_watch.");
    strategy_.load_state(r, prefix + "strategy.");  // all or nothing; the last check that can fail
    detail::apply_tensor_copies(copies);
    detail::apply_adamw(*optimizer_, moments);
    detail::apply_generators(generators);
    step_ = step;
    scaler_ = scaler;
    loss_watch_ = watch;
    negatives_per_query_ = m;
    backward_calls_ = calls;
  }

  Model& model() { return model_; }
  S& strategy() { return strategy_; }
  const Loss& loss() const { return loss_; }
  const A& adapter() const { return adapter_; }
  C& collective() { return collective_; }
  /// \brief Backward calls that went through the Trainer's seam so far.
  [[nodiscard]] int64_t backward_calls() const { return backward_calls_; }
  const TrainerConfig& config() const { return config_; }
  torch::optim::AdamW& optimizer() { return *optimizer_; }
  [[nodiscard]] int64_t steps_done() const { return step_; }
  /// \brief fp16's loss scaler (disabled, scale 1, for fp32 and bf16).
  [[nodiscard]] const LossScaler& loss_scaler() const { return scaler_; }
  [[nodiscard]] const std::vector<torch::Tensor>& trainable_parameters() const { return trainable_; }

private:
  [[nodiscard]] static std::map<std::string, std::string> policy_names() {
    return {{"model", detail::type_name<Model>()}, {"strategy", detail::type_name<S>()},
            {"adapter", detail::type_name<A>()},   {"loss", detail::type_name<Loss>()}};
  }
  // What a similarity-aware loss scores with (temperature, direction); {} for other losses.
  [[nodiscard]] nlohmann::json loss_settings() const {
    if constexpr (SimilarityAwareLoss<Loss>)
      return {{"scale", loss_.similarity.scale()}, {"symmetric", loss_.symmetric}};
    else
      return nlohmann::json::object();
  }
  [[nodiscard]] std::map<const void*, std::string> parameter_names() const {
    std::map<const void*, std::string> names;
    for (const auto& p : model_->named_parameters()) names[p.value().unsafeGetTensorImpl()] = p.key();
    return names;
  }

  Model model_;
  TrainerConfig config_;
  S strategy_;
  A adapter_;
  Loss loss_;
  C collective_;
  int64_t backward_calls_ = 0;
  std::vector<torch::Tensor> trainable_, query_params_, passage_params_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  torch::Device device_{torch::kCPU};
  int64_t step_ = 0;
  int64_t negatives_per_query_ = -1;
  LossScaler scaler_;
  LossWatch loss_watch_;  // the loss half of the collapse check (train/loss_watch.hpp)
};

}  // namespace contaccum
