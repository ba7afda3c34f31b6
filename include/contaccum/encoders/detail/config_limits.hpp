#pragma once
/// \file
/// \brief Checks shared by the encoder configs (BertConfig, GptNeoxConfig): every size
///        positive and under a sane bound, the parameter count under a bound, probabilities
///        in [0, 1), epsilons positive and finite. A config.json that asks for a million
///        layers fails here, naming the field, before anything is allocated.

#include <contaccum/detail/error.hpp>

#include <cmath>
#include <cstdint>
#include <string_view>

namespace contaccum::detail {

/// \brief Upper bounds on the shapes an encoder config may ask for. Each is far above every
///        published checkpoint of the family (BERT-large: 24 layers, hidden 1024; Pythia-12B:
///        36 layers, hidden 5120, vocab 50688) and low enough that a corrupted or hostile
///        file is refused before allocating.
struct ConfigLimits {
  static constexpr int64_t vocab_size = int64_t{1} << 22;               // 4,194,304 token ids
  static constexpr int64_t hidden_size = int64_t{1} << 16;              // 65,536
  static constexpr int64_t num_hidden_layers = 1024;
  static constexpr int64_t intermediate_size = int64_t{1} << 18;        // 262,144
  static constexpr int64_t max_position_embeddings = int64_t{1} << 20;  // 1,048,576 positions
  static constexpr int64_t type_vocab_size = 1024;
  static constexpr double parameters = 68719476736.0;                   // 2^36 (256 GiB in fp32)
};

// `value` of size field `name` is in [lo, hi]; the error names the config and the field.
inline void require_size(std::string_view where, std::string_view name, int64_t value, int64_t lo, int64_t hi) {
  require(value >= lo, where, ": ", name, " must be ", lo == 0 ? ">= 0" : "positive", ", got ", value);
  require(value <= hi, where, ": ", name, " ", value, " is beyond the limit of ", hi,
          " (a corrupted config? no published checkpoint comes near it)");
}

// A dropout probability: finite and in [0, 1).
inline void require_probability(std::string_view where, std::string_view name, double p) {
  require(std::isfinite(p) && p >= 0.0 && p < 1.0, where, ": ", name, " must be in [0, 1), got ", p);
}

// A strictly positive finite number (layer_norm_eps, RoPE's base).
inline void require_positive_finite(std::string_view where, std::string_view name, double v) {
  require(std::isfinite(v) && v > 0.0, where, ": ", name, " must be positive and finite, got ", v);
}

// initializer_range: a standard deviation, finite and >= 0.
inline void require_init_range(std::string_view where, double v) {
  require(std::isfinite(v) && v >= 0.0, where, ": initializer_range must be >= 0 and finite, got ", v);
}

// The sizes every transformer config has (vocab_size, hidden_size, num_hidden_layers,
// num_attention_heads, intermediate_size, max_position_embeddings), each in its range, the
// heads dividing the width. Returns the blocks' weight count (attention 4 h^2, MLP 2 h i per
// layer; computed in double) for require_parameter_count.
template <class Config>
[[nodiscard]] double require_transformer_shape(std::string_view where, const Config& c) {
  using L = ConfigLimits;
  require_size(where, "vocab_size", c.vocab_size, 1, L::vocab_size);
  require_size(where, "hidden_size", c.hidden_size, 1, L::hidden_size);
  require_size(where, "num_hidden_layers", c.num_hidden_layers, 0, L::num_hidden_layers);
  require_size(where, "num_attention_heads", c.num_attention_heads, 1, c.hidden_size);
  require_size(where, "intermediate_size", c.intermediate_size, 1, L::intermediate_size);
  require_size(where, "max_position_embeddings", c.max_position_embeddings, 1, L::max_position_embeddings);
  require(c.hidden_size % c.num_attention_heads == 0, where, ": hidden_size ", c.hidden_size,
          " is not a multiple of num_attention_heads ", c.num_attention_heads);
  const double h = static_cast<double>(c.hidden_size);
  return static_cast<double>(c.num_hidden_layers) * (4.0 * h * h + 2.0 * h * static_cast<double>(c.intermediate_size));
}

// The parameter count a config implies (computed in double: the sizes are already bounded,
// their products may not fit in int64) under ConfigLimits::parameters.
inline void require_parameter_count(std::string_view where, double parameters) {
  require(parameters <= ConfigLimits::parameters, where, ": the config describes about ", parameters / 1e9,
          "e9 parameters (", parameters * 4.0 / 1073741824.0, " GiB in fp32), beyond the limit of ",
          ConfigLimits::parameters / 1e9, "e9; check hidden_size, num_hidden_layers, intermediate_size and vocab_size");
}

}  // namespace contaccum::detail
