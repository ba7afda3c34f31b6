#pragma once
/// \file
/// \brief Hugging Face `config.json` <-> contaccum::BertConfig. Fields keep config.json's
///        names; missing fields keep BertConfig's defaults; settings our Bert does not
///        implement (another model type, activation or position embedding) are errors that
///        name the setting, never silently ignored.

#include <contaccum/detail/error.hpp>
#include <contaccum/detail/json_file.hpp>
#include <contaccum/encoders/bert.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>

namespace contaccum {
namespace detail {

// config.json field `key`, when present, into `out`; `where` names the file for errors.
inline void read_config_field(const nlohmann::json& j, const char* key, int64_t& out, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return;
  require(j[key].is_number_integer(), where, ": \"", key, "\" must be an integer, got ", j[key].dump());
  out = j[key].get<int64_t>();
}

inline void read_config_field(const nlohmann::json& j, const char* key, double& out, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return;
  require(j[key].is_number(), where, ": \"", key, "\" must be a number, got ", j[key].dump());
  out = j[key].get<double>();
}

// A string setting that, when present, must be one our Bert implements.
inline void require_config_string(const nlohmann::json& j, const char* key, std::string_view supported,
                                  const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return;
  require(j[key].is_string() && j[key].get<std::string>() == supported, where, ": ", key, " ", j[key].dump(),
          " is not supported (contaccum's Bert implements \"", supported, "\")");
}

}  // namespace detail

/// \brief A BertConfig from parsed config.json; `where` names the source in errors.
///
/// \code
/// auto cfg = contaccum::bert_config_from_json(nlohmann::json::parse(text), "my/config.json");
/// \endcode
[[nodiscard]] inline BertConfig bert_config_from_json(const nlohmann::json& j,
                                                      const std::string& where = "config.json") {
  using detail::require;
  require(j.is_object(), where, ": not a JSON object");
  BertConfig c;
  if (j.contains("model_type")) {
    const auto& t = j["model_type"];
    const auto type = t.is_string() ? t.get<std::string>() : std::string();
    const bool known = std::ranges::any_of(bert_family, [&](const auto& f) { return f.first == type; });
    require(known, where, ": model_type ", t.dump(),
            " is not supported (contaccum's Bert loads model_type \"bert\", \"roberta\" and \"xlm-roberta\")");
    c.model_type = type;
    if (uses_roberta_positions(c)) c.pad_token_id = 1;  // RobertaConfig's default
  }
  // The architecture prefix of the family (Bert..., Roberta..., XLMRoberta...).
  const auto model_name = bert_architecture(c);
  const auto family = model_name.substr(0, model_name.size() - 5);  // less "Model"
  if (j.contains("architectures") && j["architectures"].is_array()) {
    for (const auto& a : j["architectures"]) {
      const bool fits = a.is_string() && a.get<std::string>().starts_with(family);
      require(fits, where, ": architecture ", a.dump(), " is not a ", c.model_type, " architecture (", family,
              "Model, ", family, "ForMaskedLM, ...)");
    }
  }
  detail::require_config_string(j, "hidden_act", "gelu", where);
  detail::require_config_string(j, "position_embedding_type", "absolute", where);
  for (const char* flag : {"is_decoder", "add_cross_attention"}) {
    require(!j.contains(flag) || j[flag].is_null() || j[flag] == false, where, ": ", flag,
            " = true is not supported (contaccum's Bert is an encoder)");
  }

  detail::read_config_field(j, "vocab_size", c.vocab_size, where);
  detail::read_config_field(j, "hidden_size", c.hidden_size, where);
  detail::read_config_field(j, "num_hidden_layers", c.num_hidden_layers, where);
  detail::read_config_field(j, "num_attention_heads", c.num_attention_heads, where);
  detail::read_config_field(j, "intermediate_size", c.intermediate_size, where);
  detail::read_config_field(j, "max_position_embeddings", c.max_position_embeddings, where);
  detail::read_config_field(j, "type_vocab_size", c.type_vocab_size, where);
  detail::read_config_field(j, "hidden_dropout_prob", c.hidden_dropout_prob, where);
  detail::read_config_field(j, "attention_probs_dropout_prob", c.attention_probs_dropout_prob, where);
  detail::read_config_field(j, "layer_norm_eps", c.layer_norm_eps, where);
  detail::read_config_field(j, "initializer_range", c.initializer_range, where);
  detail::read_config_field(j, "pad_token_id", c.pad_token_id, where);

  detail::validate_bert_config(c, where);
  return c;
}

/// \brief config.json contents for a BertConfig, as transformers' BertConfig writes them.
[[nodiscard]] inline nlohmann::json bert_config_to_json(const BertConfig& c) {
  return {{"architectures", nlohmann::json::array({std::string(bert_architecture(c))})},
          {"model_type", c.model_type},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"num_hidden_layers", c.num_hidden_layers},
          {"num_attention_heads", c.num_attention_heads},
          {"intermediate_size", c.intermediate_size},
          {"max_position_embeddings", c.max_position_embeddings},
          {"type_vocab_size", c.type_vocab_size},
          {"hidden_dropout_prob", c.hidden_dropout_prob},
          {"attention_probs_dropout_prob", c.attention_probs_dropout_prob},
          {"layer_norm_eps", c.layer_norm_eps},
          {"initializer_range", c.initializer_range},
          {"hidden_act", "gelu"},  // erf GELU, what BertIntermediate computes
          {"position_embedding_type", "absolute"},
          {"pad_token_id", c.pad_token_id},
          {"dtype", "float32"}};
}

/// \brief Reads a config.json file into a BertConfig.
///
/// \code
/// auto cfg = contaccum::load_bert_config("bge-small-en/config.json");
/// \endcode
[[nodiscard]] inline BertConfig load_bert_config(const std::filesystem::path& file) {
  return bert_config_from_json(detail::read_json_file(file, "config file"), file.string());
}

/// \brief Writes a BertConfig as config.json (indented, as save_pretrained does).
inline void save_bert_config(const BertConfig& c, const std::filesystem::path& file) {
  detail::write_json_file(file, bert_config_to_json(c));
}

}  // namespace contaccum
