#pragma once
/// \file
/// \brief fit(trainer, loader, options): the training loop users expect instead of writing
///        their own, and one that survives: checkpoints every N steps (atomic, verified,
///        keep-last-N, `latest`, `best` by a dev metric), exact resume (the same batches,
///        dropout masks, bank and optimizer moments as an unbroken run), evaluation every N
///        steps, callbacks, log.jsonl and TensorBoard event files, a progress bar, and
///        SIGINT/SIGTERM finishing the current step and checkpointing before exiting.
///
/// \code
/// contaccum::FitOptions o{.steps = 1000, .out = "out/run", .save_every = 100, .resume = true,
///                         .eval_every = 100, .evaluate = [&](int64_t) { return dev_metrics(); },
///                         .checkpoints = {.keep_last = 2, .best_metric = "nDCG@10"}};
/// contaccum::FitResult r = contaccum::fit(trainer, loader, o);
/// if (r.stopped_by_signal) return r.exit_code();   // 130 after Ctrl-C, with a checkpoint
/// \endcode
///
/// The run folder `out` holds checkpoints/ (CheckpointFolder), log.jsonl (one JSON object
/// per line: {"event": "step", "step", "loss", ...} and {"event": "eval", "steps_done",
/// metrics...}) and tensorboard/ (event files: train/loss, train/grad_norm, ...,
/// eval/<metric>). On resume the log keeps exactly the records up to the checkpoint (a
/// line torn by a kill is dropped) and continues; every step appears exactly once.
///
/// Several ranks (a Trainer with C10dCollective): every rank trains and resumes from the
/// same `latest`; rank 0 alone writes checkpoints, the log, event files and the progress
/// bar, and calls `evaluate`; a stop signal on any rank stops every rank after the same
/// step (one agreement per step).

#include <contaccum/data/batch.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/dist/concepts.hpp>
#include <contaccum/state/checkpoint.hpp>
#include <contaccum/state/detail/files.hpp>
#include <contaccum/state/state_dict.hpp>
#include <contaccum/train/detail/signals.hpp>
#include <contaccum/train/progress.hpp>
#include <contaccum/train/stats.hpp>
#include <contaccum/train/tensorboard.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace contaccum {

/// \brief What fit() draws step batches from: next() and a saved position (PairLoader).
template <class L>
concept StepLoader = Stateful<L> && requires(L& l) {
  { l.next() } -> std::convertible_to<PairBatch>;
};

/// \brief What fit() trains: a Trainer (step, steps_done, save_state, load_state).
template <class T>
concept FitTrainer = Stateful<T> && requires(T& t, const PairBatch& b) {
  { t.step(b) } -> std::convertible_to<StepStats>;
  { t.steps_done() } -> std::convertible_to<int64_t>;
};

/// \brief A trainer whose collective spans processes (the Trainer: collective()).
template <class T>
concept DistributedFitTrainer = FitTrainer<T> && requires(T& t) {
  requires MultiProcessCollective<std::remove_cvref_t<decltype(t.collective())>>;
};

struct FitOptions {
  int64_t steps = 0;                 ///< optimizer steps of the whole run (a resumed run counts from 0 too)
  int64_t epochs = 0;                ///< instead of steps: passes over the data (the loader's steps_per_epoch())
  std::filesystem::path out;         ///< run folder; empty = no checkpoint, log or event file
  int64_t save_every = 0;            ///< checkpoint every N steps (0 = only at the end and on a signal)
  bool save_at_end = true;           ///< checkpoint after the last step
  bool resume = false;               ///< continue from out/checkpoints/latest when there is one
  int64_t eval_every = 0;            ///< call `evaluate` every N steps (0 = never)
  std::function<nlohmann::json(int64_t steps_done)> evaluate;  ///< dev metrics {"nDCG@10": ...}
  CheckpointOptions checkpoints{};   ///< keep_last, best_metric (one of evaluate's keys)
  std::function<void(const StepStats&)> on_step;
  std::function<void(int64_t steps_done, const nlohmann::json& metrics)> on_eval;
  std::function<void(const std::filesystem::path& checkpoint)> on_checkpoint;
  bool log_jsonl = true;             ///< out/log.jsonl
  bool tensorboard = true;           ///< out/tensorboard/
  bool progress = true;              ///< a progress bar on stderr
  std::string label = "train";       ///< the progress bar's name
  bool handle_signals = true;        ///< SIGINT/SIGTERM: finish the step, checkpoint, stop
};

struct FitResult {
  int64_t first_step = 0;            ///< steps already done when this call started (resumed from)
  int64_t steps_done = 0;            ///< steps done when it returned
  int stopped_by_signal = 0;         ///< SIGINT/SIGTERM that stopped it (0: ran to the end)
  std::optional<std::filesystem::path> resumed_from;  ///< the checkpoint loaded, if any
  std::optional<std::filesystem::path> last_checkpoint;
  std::vector<StepStats> history;    ///< the steps this call ran
  nlohmann::json last_eval;          ///< the last evaluation's metrics (null if none)
  /// \brief The conventional exit status: 0, or 128 + the signal (130 for SIGINT).
  [[nodiscard]] int exit_code() const { return stopped_by_signal ? 128 + stopped_by_signal : 0; }
};

namespace detail {

/// One step's log record.
[[nodiscard]] inline nlohmann::json step_record(const StepStats& s, double pairs_per_s) {
  nlohmann::json r = {{"event", "step"},
          {"step", s.step},
          {"loss", s.loss},
          {"pairs", s.pairs},
          {"micro_batches", s.micro_batches},
          {"negatives_per_query", s.negatives_per_query},
          {"grad_norm", s.grad_norm},
          {"grad_norm_query", s.grad_norm_query},
          {"grad_norm_passage", s.grad_norm_passage},
          {"grad_norm_ratio", s.grad_norm_ratio},
          {"lr", s.learning_rate},
          {"seconds", s.seconds},
          {"pairs_per_s", pairs_per_s},
          {"peak_memory_mib", static_cast<double>(s.peak_memory_bytes) / (1 << 20)},
          {"score_cache_fallbacks", s.score_cache_fallbacks}};
  r["embedding_cosine"] = s.embedding_cosine;
  if (!s.collapse.empty()) r["collapse"] = s.collapse;
  if (s.loss_scale > 0) {  // fp16 runs only
    r["loss_scale"] = s.loss_scale;
    r["overflow"] = s.overflow;
  }
  return r;
}

/// Rewrites log.jsonl to the records a run that stopped after `steps_done` steps wrote
/// (complete lines only; a torn last line is dropped), atomically. Returns the records kept.
inline int64_t truncate_log(const std::filesystem::path& log, int64_t steps_done) {
  std::string kept;
  int64_t n = 0;
  if (std::filesystem::exists(log)) {
    const auto text = read_file_bytes(log);
    std::size_t begin = 0;
    while (begin < text.size()) {
      const auto end = text.find('\n', begin);
      if (end == std::string::npos) break;  // torn by a kill
      const auto line = text.substr(begin, end - begin);
      begin = end + 1;
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) continue;
      const auto event = j.value("event", std::string{});
      const bool keep = (event == "step" && j.value("step", int64_t{-1}) < steps_done) ||
                        (event == "eval" && j.value("steps_done", int64_t{-1}) <= steps_done);
      if (!keep) continue;
      kept += line;
      kept += '\n';
      ++n;
    }
  }
  write_file_atomically(log, kept);
  return n;
}

/// Appends lines to log.jsonl, each written whole and flushed; a failed write throws.
class jsonl_log {
public:
  explicit jsonl_log(const std::filesystem::path& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "ab");
    if (file_ == nullptr) io_failure("opening", path, errno);
  }
  ~jsonl_log() {
    if (file_ != nullptr) std::fclose(file_);
  }
  jsonl_log(const jsonl_log&) = delete;
  jsonl_log& operator=(const jsonl_log&) = delete;
  void write(const nlohmann::json& j) {
    const auto line = j.dump() + "\n";
    if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0)
      io_failure("writing", path_, errno);
  }

private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

}  // namespace detail

/// \brief Trains `trainer` on `loader` for `options.steps` optimizer steps (see the file
///        comment). Exceptions from a step (a non-finite loss, bad input) propagate with
///        the last checkpoint intact.
template <FitTrainer T, StepLoader L>
FitResult fit(T& trainer, L& loader, const FitOptions& o) {
  namespace fs = std::filesystem;
  if (o.epochs != 0) {  // epochs are a number of steps
    detail::require(o.steps == 0, "FitOptions.steps and FitOptions.epochs exclude each other (steps ", o.steps,
                    ", epochs ", o.epochs, ")");
    detail::require(o.epochs > 0, "FitOptions.epochs must be positive, got ", o.epochs);
    if constexpr (requires { loader.steps_per_epoch(); }) {
      FitOptions by_steps = o;
      by_steps.steps = o.epochs * static_cast<int64_t>(loader.steps_per_epoch());
      by_steps.epochs = 0;
      return fit(trainer, loader, by_steps);
    } else {
      throw invalid_input("contaccum: FitOptions.epochs needs a loader with steps_per_epoch() (PairLoader); "
                          "this one has no epochs: give FitOptions.steps");
    }
  }
  detail::require(o.steps > 0, "FitOptions.steps must be positive, got ", o.steps);
  detail::require(o.save_every >= 0 && o.eval_every >= 0, "FitOptions.save_every and eval_every must be >= 0");
  detail::require(o.eval_every == 0 || static_cast<bool>(o.evaluate),
                  "FitOptions.eval_every is set but FitOptions.evaluate is empty");
  detail::require(o.checkpoints.best_metric.empty() || static_cast<bool>(o.evaluate),
                  "FitOptions.checkpoints.best_metric is set but FitOptions.evaluate is empty");
  const bool has_out = !o.out.empty();
  detail::require(has_out || (o.save_every == 0 && !o.resume),
                  "FitOptions.save_every and resume need FitOptions.out (the run folder)");
  FitResult result;
  int64_t rank = 0, world = 1;
  if constexpr (DistributedFitTrainer<T>) {
    rank = trainer.collective().rank();
    world = trainer.collective().world_size();
  }
  const bool main_rank = rank == 0;
  // every rank at the same point (a no-op on one process)
  auto agree = [&](bool flag) {
    if constexpr (DistributedFitTrainer<T>) return world > 1 ? trainer.collective().any_rank(flag) : flag;
    else return flag;
  };

  std::optional<CheckpointFolder> checkpoints;
  if (has_out && main_rank) {
    detail::require_writable_folder(o.out);  // an unwritable folder is refused before any work
    checkpoints.emplace(o.out / "checkpoints", o.checkpoints);  // recovers a killed writer's leftovers
  }
  agree(false);  // the other ranks look at the folder only once rank 0 has recovered it
  if (has_out && !main_rank) checkpoints.emplace(o.out / "checkpoints", o.checkpoints);
  if (o.resume && checkpoints) {
    if (const auto latest = checkpoints->latest()) {
      const Checkpoint c = read_checkpoint(*latest);  // verified before anything changes
      const auto device = trainer.trainable_parameters().front().device();
      const StateReader r = c.reader(device);
      // check the loader's part first: the trainer's load is the last thing that can fail
      auto probe = loader;
      probe.load_state(r, "loader.");
      trainer.load_state(r);
      loader = std::move(probe);
      result.resumed_from = *latest;
    }
  }
  const int64_t start = trainer.steps_done();
  result.first_step = start;
  detail::require(start <= o.steps, "fit: the trainer has done ", start, " steps, more than FitOptions.steps (",
                  o.steps, ")");

  std::unique_ptr<detail::jsonl_log> log;
  std::unique_ptr<TensorBoardWriter> events;
  if (has_out && o.log_jsonl && main_rank) {
    detail::truncate_log(o.out / "log.jsonl", start);
    log = std::make_unique<detail::jsonl_log>(o.out / "log.jsonl");
  }
  if (has_out && o.tensorboard && main_rank) {
    events = std::make_unique<TensorBoardWriter>(o.out / "tensorboard");
    events->session_start(start);  // TensorBoard drops what a killed run logged from this step on
  }

  int64_t saved_at = result.resumed_from ? start : -1;
  auto save = [&](int64_t done, const nlohmann::json& metrics) {
    if (!checkpoints || saved_at == done) return;
    if (!main_rank) {  // the state is the same on every rank: rank 0 writes it
      saved_at = done;
      return;
    }
    StateDict s;
    trainer.save_state(s);
    loader.save_state(s, "loader.");
    s.set("fit.steps", o.steps);
    result.last_checkpoint = checkpoints->save(done, s, metrics);
    saved_at = done;
    if (o.on_checkpoint) o.on_checkpoint(*result.last_checkpoint);
  };

  detail::stop_signals signals(o.handle_signals);
  std::optional<ProgressBar> bar;
  if (o.progress && main_rank) bar.emplace(o.label, o.steps, start);
  int64_t pairs = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t s = start; s < o.steps; ++s) {
    const StepStats st = trainer.step(loader.next());
    pairs += st.pairs;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double rate = secs > 0 ? static_cast<double>(pairs) / secs : 0.0;
    if (log) log->write(detail::step_record(st, rate));
    if (events) {
      events->scalar("train/loss", st.loss, st.step);
      events->scalar("train/grad_norm", st.grad_norm, st.step);
      events->scalar("train/grad_norm_ratio", st.grad_norm_ratio, st.step);
      events->scalar("train/learning_rate", st.learning_rate, st.step);
      events->scalar("train/negatives_per_query", st.negatives_per_query, st.step);
      events->scalar("train/pairs_per_s", rate, st.step);
      if (st.loss_scale > 0) events->scalar("train/loss_scale", st.loss_scale, st.step);
    }
    result.history.push_back(st);
    if (o.on_step) o.on_step(st);
    if (bar) {
      char note[96];
      std::snprintf(note, sizeof note, "loss %.3f neg/q %.0f %.1f pairs/s", st.loss, st.negatives_per_query, rate);
      bar->update(s + 1, note);
    }
    const int64_t done = s + 1;
    nlohmann::json metrics;
    if (o.eval_every > 0 && done % o.eval_every == 0 && main_rank) {
      metrics = o.evaluate(done);
      result.last_eval = metrics;
      if (log) {
        auto rec = metrics;
        rec["event"] = "eval";
        rec["steps_done"] = done;
        log->write(rec);
      }
      if (events)
        for (const auto& [k, v] : metrics.items())
          if (v.is_number()) events->scalar("eval/" + k, v.template get<double>(), done);
      if (o.on_eval) o.on_eval(done, metrics);
    }
    const bool may_be_best = !o.checkpoints.best_metric.empty() && metrics.contains(o.checkpoints.best_metric);
    if ((o.save_every > 0 && done % o.save_every == 0) || may_be_best) save(done, metrics);
    const int local_sig = detail::stop_signals::pending();
    if (agree(local_sig != 0)) {
      save(done, {});
      if (events) events->flush();
      result.stopped_by_signal = local_sig != 0 ? local_sig : SIGTERM;
      result.steps_done = done;
      return result;
    }
  }
  if (o.save_at_end) save(o.steps, {});
  if (events) events->flush();
  result.steps_done = trainer.steps_done();
  return result;
}

}  // namespace contaccum
