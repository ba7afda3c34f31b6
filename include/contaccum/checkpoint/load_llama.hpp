#pragma once
/// \file
/// \brief Hugging Face Llama / Qwen2 checkpoints <-> contaccum::Llama: a folder with
///        config.json and model.safetensors (or shards). Both LlamaModel's / Qwen2Model's
///        layout (the body, no prefix) and the ...ForCausalLM layout ("model." body +
///        lm_head) load; the LM head is not part of an encoder and is skipped. Settings the
///        encoder does not implement (rope scaling, sliding-window layers, another
///        activation) are errors that name the setting.

#include <contaccum/checkpoint/detail/assign_tensors.hpp>
#include <contaccum/checkpoint/hf_config.hpp>
#include <contaccum/checkpoint/safetensors.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/detail/json_file.hpp>
#include <contaccum/encoders/linear.hpp>
#include <contaccum/encoders/llama.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <system_error>

namespace contaccum {
namespace detail {

inline void read_config_flag(const nlohmann::json& j, const char* key, bool& out, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return;
  require(j[key].is_boolean(), where, ": \"", key, "\" must be true or false, got ", j[key].dump());
  out = j[key].get<bool>();
}

}  // namespace detail

/// \brief A LlamaConfig from parsed config.json (model_type "llama" or "qwen2").
[[nodiscard]] inline LlamaConfig llama_config_from_json(const nlohmann::json& j, const std::string& where = "config.json") {
  using detail::require;
  require(j.is_object(), where, ": not a JSON object");
  LlamaConfig c;
  const auto type = j.value("model_type", std::string());
  require(type == "llama" || type == "qwen2", where, ": model_type \"", type,
          "\" is not supported (contaccum's Llama loads \"llama\" and \"qwen2\")");
  c.model_type = type;
  if (type == "qwen2") {  // Qwen2Config's defaults where the file is silent
    c.vocab_size = 151936;
    c.hidden_size = 4096;
    c.intermediate_size = 22016;
    c.num_key_value_heads = 32;
    c.max_position_embeddings = 32768;
    c.rope_theta = 10000.0;
  }
  detail::require_config_string(j, "hidden_act", "silu", where);
  detail::read_config_field(j, "vocab_size", c.vocab_size, where);
  detail::read_config_field(j, "hidden_size", c.hidden_size, where);
  detail::read_config_field(j, "intermediate_size", c.intermediate_size, where);
  detail::read_config_field(j, "num_hidden_layers", c.num_hidden_layers, where);
  detail::read_config_field(j, "num_attention_heads", c.num_attention_heads, where);
  c.num_key_value_heads = c.num_attention_heads;  // transformers' default: plain multi-head attention
  detail::read_config_field(j, "num_key_value_heads", c.num_key_value_heads, where);
  detail::read_config_field(j, "head_dim", c.head_dim, where);
  detail::read_config_field(j, "max_position_embeddings", c.max_position_embeddings, where);
  detail::read_config_field(j, "rms_norm_eps", c.rms_norm_eps, where);
  detail::read_config_field(j, "rope_theta", c.rope_theta, where);
  detail::read_config_field(j, "attention_dropout", c.attention_dropout, where);
  detail::read_config_field(j, "initializer_range", c.initializer_range, where);
  detail::read_config_flag(j, "attention_bias", c.attention_bias, where);
  detail::read_config_flag(j, "mlp_bias", c.mlp_bias, where);
  detail::read_config_flag(j, "tie_word_embeddings", c.tie_word_embeddings, where);
  // Rotary settings: the old rope_theta / rope_scaling, or transformers 5's rope_parameters.
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    const auto& r = j[key];
    require(r.is_object(), where, ": ", key, " must be an object");
    const auto rope_type = r.value("rope_type", r.value("type", std::string("default")));
    require(rope_type == "default", where, ": ", key, ".rope_type \"", rope_type,
            "\" is not supported (contaccum's Llama implements the default RoPE)");
    if (r.contains("rope_theta")) detail::read_config_field(r, "rope_theta", c.rope_theta, where);
  }
  bool sliding = false;
  detail::read_config_flag(j, "use_sliding_window", sliding, where);
  require(!sliding, where, ": use_sliding_window = true is not supported (contaccum's Llama attends to every earlier token)");
  if (j.contains("layer_types") && j["layer_types"].is_array()) {
    for (const auto& l : j["layer_types"])
      require(l == "full_attention", where, ": layer_types holds ", l.dump(), " (only \"full_attention\" is supported)");
  }
  detail::validate_llama_config(c, where);
  return c;
}

[[nodiscard]] inline LlamaConfig load_llama_config(const std::filesystem::path& file) {
  return llama_config_from_json(detail::read_json_file(file, "config file"), file.string());
}

/// \brief config.json contents for a LlamaConfig, as transformers writes them.
[[nodiscard]] inline nlohmann::json llama_config_to_json(const LlamaConfig& c) {
  detail::validate_llama_config(c, "LlamaConfig");
  nlohmann::json j = {{"architectures", nlohmann::json::array({c.model_type == "qwen2" ? "Qwen2Model" : "LlamaModel"})},
                      {"model_type", c.model_type},
                      {"vocab_size", c.vocab_size},
                      {"hidden_size", c.hidden_size},
                      {"intermediate_size", c.intermediate_size},
                      {"num_hidden_layers", c.num_hidden_layers},
                      {"num_attention_heads", c.num_attention_heads},
                      {"num_key_value_heads", c.num_key_value_heads},
                      {"max_position_embeddings", c.max_position_embeddings},
                      {"rms_norm_eps", c.rms_norm_eps},
                      {"rope_theta", c.rope_theta},
                      {"attention_dropout", c.attention_dropout},
                      {"initializer_range", c.initializer_range},
                      {"tie_word_embeddings", c.tie_word_embeddings},
                      {"hidden_act", "silu"},
                      {"dtype", "float32"}};
  if (c.head_dim > 0) j["head_dim"] = c.head_dim;  // else hidden_size / num_attention_heads, as transformers reads it
  if (c.model_type == "llama") {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = c.mlp_bias;
  } else {
    j["use_sliding_window"] = false;
  }
  return j;
}

namespace detail {

/// \brief Checkpoint names mapped to Llama's: a "model." prefix (the ...ForCausalLM body)
///        is dropped; lm_head.* and other heads beside it, and the recomputed rotary
///        frequencies, are left out.
[[nodiscard]] inline CheckpointNameMap map_llama_names(const std::map<std::string, torch::Tensor>& tensors,
                                                       const std::map<std::string, torch::Tensor>& ours) {
  const bool prefixed = any_name_starts_with(tensors, "model.");
  CheckpointNameMap m;
  for (const auto& entry : tensors) {
    const auto& source = entry.first;
    std::string name = source;
    if (prefixed) {
      if (!name.starts_with("model.")) continue;  // lm_head.weight, score.weight, ...
      name.erase(0, 6);
    }
    if (name.ends_with("rotary_emb.inv_freq")) continue;
    m.add(name, source, ours, name.starts_with("embed_tokens.") || name.starts_with("layers.") || name.starts_with("norm."));
  }
  return m;
}

}  // namespace detail

/// \brief Copies a Hugging Face Llama / Qwen2 state dict into `model`; all or nothing, with
///        every missing tensor, shape mismatch and unexpected body tensor named.
inline void load_llama_weights(Llama& model, const std::map<std::string, torch::Tensor>& tensors,
                               std::string_view source = "checkpoint") {
  auto ours = detail::base_parameters(*model);
  const auto& c = model->config();
  detail::assign_checkpoint_tensors(ours, tensors, detail::map_llama_names(tensors, ours), source,
                                    detail::cat("Llama(", c.model_type, ", hidden_size ", c.hidden_size, ", ",
                                                c.num_hidden_layers, " layers, ", c.num_attention_heads, "/",
                                                c.num_key_value_heads, " heads, vocab_size ", c.vocab_size, ")"));
}

/// \brief A Llama from a Hugging Face model folder, in eval mode.
///
/// \code
/// auto enc = contaccum::load_llama("Qwen2-0.5B");
/// auto h = enc(ids, mask);  // (B, T, 896)
/// \endcode
[[nodiscard]] inline Llama load_llama(const std::filesystem::path& dir) {
  Llama model(load_llama_config(dir / "config.json"));
  load_llama_weights(model, load_checkpoint(dir), detail::cat("checkpoint '", dir.string(), "'"));
  model->eval();
  return model;
}

/// \brief Writes `model` as a Hugging Face folder (config.json, model.safetensors) that
///        transformers loads as LlamaModel / Qwen2Model. LoRA layers must be merged first.
inline void save_llama(const Llama& model, const std::filesystem::path& dir) {
  detail::require_branches_merged(*model, "save_llama");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  detail::require(!ec, "cannot create '", dir.string(), "': ", ec.message());
  detail::write_json_file(dir / "config.json", llama_config_to_json(model->config()));
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [name, p] : detail::base_parameters(*model)) tensors.emplace(name, p.detach());
  save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
}

}  // namespace contaccum
