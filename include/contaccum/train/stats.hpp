#pragma once
/// \file
/// \brief What each optimizer step reports.

#include <cstdint>
#include <ostream>
#include <string>

namespace contaccum {

struct StepStats {
  int64_t step = 0;                ///< 0-based optimizer step just applied
  int64_t pairs = 0;               ///< N_total pairs consumed
  int64_t micro_batches = 0;       ///< K
  double loss = 0;                 ///< mean training loss of the step
  double negatives_per_query = 0;  ///< negatives each query was scored against (mean over micro-batches)
  double grad_norm = 0;            ///< global gradient norm before clipping
  double grad_norm_query = 0;      ///< query tower's gradient norm
  double grad_norm_passage = 0;    ///< passage tower's gradient norm
  double grad_norm_ratio = 0;      ///< GradNormRatio = passage / query (the ContAccum paper's stability metric)
  double learning_rate = 0;        ///< learning rate used for this update
  double seconds = 0;              ///< wall time of the step
  int64_t peak_memory_bytes = 0;   ///< peak tensor memory during the step (device of the model)
  int64_t score_cache_hits = 0;       ///< loss evaluations whose banked rows the bank's score cache served
  int64_t score_cache_fallbacks = 0;  ///< loss evaluations that streamed the bank scores instead
  std::string score_cache_note;       ///< why the score cache could not serve (empty without fallbacks)
  double loss_scale = 0;  ///< fp16: the loss scale this step's backward used (0 without loss scaling)
  bool overflow = false;  ///< fp16: the scaled gradients were not finite, so nothing was updated
                          ///< and the scale was backed off (GradScaler's skip)
  double embedding_cosine = 0;  ///< mean cosine between distinct query (and passage) embeddings of the step
  std::string collapse;         ///< a warning when they have collapsed to one direction or the loss has
                                ///< risen to chance level (LossWatch); empty: healthy
};

inline std::ostream& operator<<(std::ostream& os, const StepStats& s) {
  os << "step " << s.step << " loss " << s.loss << " negatives/query " << s.negatives_per_query
            << " grad_norm " << s.grad_norm << " GradNormRatio " << s.grad_norm_ratio << " lr " << s.learning_rate
            << " time " << s.seconds << "s peak " << (s.peak_memory_bytes >> 20) << " MiB";
  if (s.overflow) os << " [fp16 overflow at loss scale " << s.loss_scale << ": step skipped]";
  if (s.score_cache_fallbacks > 0)
    os << " [score cache fell back " << s.score_cache_fallbacks << "x: " << s.score_cache_note << "]";
  if (!s.collapse.empty()) os << " [warning: " << s.collapse << "]";
  return os;
}

}  // namespace contaccum
