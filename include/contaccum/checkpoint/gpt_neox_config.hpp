#pragma once
/// \file
/// \brief Hugging Face `config.json` <-> contaccum::GptNeoxConfig (model_type "gpt_neox").
///
/// The rotary settings have had three spellings; they resolve as transformers 5.23 does:
///  * `rope_parameters.partial_rotary_factor` / `rope_parameters.rope_theta` (what
///    transformers 5 writes) win;
///  * else the old top-level `rotary_pct` / `rotary_emb_base` (Pythia's files);
///  * else 0.25 / 10000.
/// transformers 4.x also wrote top-level `partial_rotary_factor` / `rope_theta` beside the
/// old keys; transformers 5.23 ignores them. They are accepted when they agree with the
/// resolved value and rejected by name when they do not, since the file is then ambiguous.
/// Settings GptNeox does not implement (RoPE scaling, another model type, activation or
/// head size) are errors that name the setting, never silently ignored.

#include <contaccum/checkpoint/hf_config.hpp>  // read_config_field for integers and numbers
#include <contaccum/detail/error.hpp>
#include <contaccum/detail/json_file.hpp>
#include <contaccum/encoders/gpt_neox.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

namespace contaccum {
namespace detail {

// A boolean config.json field, when present and not null.
inline void read_config_field(const nlohmann::json& j, const char* key, bool& out, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return;
  require(j[key].is_boolean(), where, ": \"", key, "\" must be true or false, got ", j[key].dump());
  out = j[key].get<bool>();
}

// A string config.json field, when present and not null.
inline void read_config_field(const nlohmann::json& j, const char* key, std::string& out, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return;
  require(j[key].is_string(), where, ": \"", key, "\" must be a string, got ", j[key].dump());
  out = j[key].get<std::string>();
}

// A token id: an integer, or null (stored as -1).
inline void read_token_id(const nlohmann::json& j, const char* key, int64_t& out, const std::string& where) {
  if (!j.contains(key)) return;
  if (j[key].is_null()) {
    out = -1;
    return;
  }
  require(j[key].is_number_integer(), where, ": \"", key, "\" must be one integer token id or null, got ",
          j[key].dump(), " (GptNeoxConfig holds a single id)");
  out = j[key].get<int64_t>();
}

[[nodiscard]] inline nlohmann::json token_id_json(int64_t id) { return id < 0 ? nlohmann::json() : nlohmann::json(id); }

// The rotary settings, resolved as transformers 5.23 does (see the file comment).
inline void read_gpt_neox_rope(const nlohmann::json& j, GptNeoxConfig& c, const std::string& where) {
  require(!j.contains("rope_scaling") || j["rope_scaling"].is_null(), where, ": rope_scaling ",
          j.contains("rope_scaling") ? j["rope_scaling"].dump() : "", " is not supported (contaccum's GptNeox ",
          "implements plain RoPE, rope_type \"default\")");
  read_config_field(j, "rotary_pct", c.rotary_pct, where);
  read_config_field(j, "rotary_emb_base", c.rotary_emb_base, where);
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    const auto& rope = j["rope_parameters"];
    const auto rope_where = where + ": rope_parameters";
    require(rope.is_object(), rope_where, " must be an object, got ", rope.dump());
    for (const auto& [key, value] : rope.items()) {
      require(!value.is_object(), rope_where, ".", key, " is a per-layer-type RoPE setting; contaccum's GptNeox ",
              "uses one RoPE for every layer");
    }
    for (const char* key : {"rope_type", "type"}) {
      require(!rope.contains(key) || rope[key] == "default", rope_where, ".", key, " ",
              rope.contains(key) ? rope[key].dump() : "",
              " is not supported (contaccum's GptNeox implements rope_type \"default\")");
    }
    read_config_field(rope, "partial_rotary_factor", c.rotary_pct, rope_where);
    read_config_field(rope, "rope_theta", c.rotary_emb_base, rope_where);
  }
  // transformers 4.x's copies of the same two values: only consistent ones are accepted.
  for (auto [key, resolved] : {std::pair{"partial_rotary_factor", c.rotary_pct},
                               std::pair{"rope_theta", c.rotary_emb_base}}) {
    double top = resolved;
    read_config_field(j, key, top, where);
    require(top == resolved, where, ": top-level \"", key, "\" ", top, " disagrees with the value transformers 5.23 ",
            "uses, ", resolved, " (from rope_parameters, rotary_pct/rotary_emb_base or the default); make them equal");
  }
}

}  // namespace detail

/// \brief A GptNeoxConfig from parsed config.json; `where` names the source in errors.
///
/// \code
/// auto cfg = contaccum::gpt_neox_config_from_json(nlohmann::json::parse(text), "pythia-70m/config.json");
/// \endcode
[[nodiscard]] inline GptNeoxConfig gpt_neox_config_from_json(const nlohmann::json& j,
                                                             const std::string& where = "config.json") {
  using detail::require;
  require(j.is_object(), where, ": not a JSON object");
  if (j.contains("model_type")) {
    const auto& t = j["model_type"];
    require(t == "gpt_neox", where, ": model_type ", t.dump(),
            " is not supported (contaccum's GptNeox loads model_type \"gpt_neox\")");
  }
  if (j.contains("architectures") && j["architectures"].is_array()) {
    for (const auto& a : j["architectures"]) {
      const auto name = a.is_string() ? a.get<std::string>() : std::string();
      require(name.starts_with("GPTNeoX") && !name.starts_with("GPTNeoXJapanese"), where, ": architecture ", a.dump(),
              " is not a GPT-NeoX architecture (GPTNeoXForCausalLM, GPTNeoXModel, ...)");
    }
  }

  GptNeoxConfig c;
  detail::read_config_field(j, "vocab_size", c.vocab_size, where);
  detail::read_config_field(j, "hidden_size", c.hidden_size, where);
  detail::read_config_field(j, "num_hidden_layers", c.num_hidden_layers, where);
  detail::read_config_field(j, "num_attention_heads", c.num_attention_heads, where);
  detail::read_config_field(j, "intermediate_size", c.intermediate_size, where);
  detail::read_config_field(j, "max_position_embeddings", c.max_position_embeddings, where);
  detail::read_config_field(j, "layer_norm_eps", c.layer_norm_eps, where);
  detail::read_config_field(j, "attention_dropout", c.attention_dropout, where);
  detail::read_config_field(j, "hidden_dropout", c.hidden_dropout, where);
  detail::read_config_field(j, "initializer_range", c.initializer_range, where);
  detail::read_config_field(j, "use_parallel_residual", c.use_parallel_residual, where);
  detail::read_config_field(j, "attention_bias", c.attention_bias, where);
  detail::read_config_field(j, "tie_word_embeddings", c.tie_word_embeddings, where);
  detail::read_config_field(j, "hidden_act", c.hidden_act, where);
  detail::read_token_id(j, "bos_token_id", c.bos_token_id, where);
  detail::read_token_id(j, "eos_token_id", c.eos_token_id, where);
  detail::read_token_id(j, "pad_token_id", c.pad_token_id, where);
  detail::read_gpt_neox_rope(j, c, where);

  detail::validate_gpt_neox_config(c, where);
  // transformers' rotary table reads head_dim while its attention uses hidden/heads:
  // only a head_dim equal to that is meaningful.
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    require(j["head_dim"] == c.hidden_size / c.num_attention_heads, where, ": head_dim ", j["head_dim"].dump(),
            " is not hidden_size / num_attention_heads = ", c.hidden_size / c.num_attention_heads,
            " (not supported)");
  }
  return c;
}

/// \brief config.json contents for a GptNeoxConfig, as transformers 5 writes them
///        (rope_parameters), plus the old rotary_pct / rotary_emb_base keys so that
///        transformers 4.x reads the same rotary settings.
[[nodiscard]] inline nlohmann::json gpt_neox_config_to_json(const GptNeoxConfig& c) {
  return {{"architectures", nlohmann::json::array({"GPTNeoXForCausalLM"})},
          {"model_type", "gpt_neox"},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"num_hidden_layers", c.num_hidden_layers},
          {"num_attention_heads", c.num_attention_heads},
          {"intermediate_size", c.intermediate_size},
          {"hidden_act", c.hidden_act},
          {"rope_parameters",
           {{"rope_type", "default"}, {"partial_rotary_factor", c.rotary_pct}, {"rope_theta", c.rotary_emb_base}}},
          {"rotary_pct", c.rotary_pct},
          {"rotary_emb_base", c.rotary_emb_base},
          {"max_position_embeddings", c.max_position_embeddings},
          {"layer_norm_eps", c.layer_norm_eps},
          {"attention_dropout", c.attention_dropout},
          {"hidden_dropout", c.hidden_dropout},
          {"initializer_range", c.initializer_range},
          {"use_parallel_residual", c.use_parallel_residual},
          {"attention_bias", c.attention_bias},
          {"tie_word_embeddings", c.tie_word_embeddings},
          {"bos_token_id", detail::token_id_json(c.bos_token_id)},
          {"eos_token_id", detail::token_id_json(c.eos_token_id)},
          {"pad_token_id", detail::token_id_json(c.pad_token_id)},
          {"dtype", "float32"}};
}

/// \brief Reads a config.json file into a GptNeoxConfig.
///
/// \code
/// auto cfg = contaccum::load_gpt_neox_config("pythia-160m/config.json");
/// \endcode
[[nodiscard]] inline GptNeoxConfig load_gpt_neox_config(const std::filesystem::path& file) {
  return gpt_neox_config_from_json(detail::read_json_file(file, "config file"), file.string());
}

/// \brief Writes a GptNeoxConfig as config.json (indented, as save_pretrained does);
///        `dtype` is the weights' dtype as transformers names it.
inline void save_gpt_neox_config(const GptNeoxConfig& c, const std::filesystem::path& file,
                                 const std::string& dtype = "float32") {
  auto j = gpt_neox_config_to_json(c);
  j["dtype"] = dtype;
  detail::write_json_file(file, j);
}

}  // namespace contaccum
