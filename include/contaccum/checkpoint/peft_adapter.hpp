#pragma once
/// \file
/// \brief LoRA adapters as PEFT saves them: a folder with adapter_config.json and
///        adapter_model.safetensors (peft 0.21's PeftModel.save_pretrained layout), read
///        and written for an encoder whose names are Hugging Face's (Bert = BertModel,
///        GptNeox = GPTNeoXForCausalLM).
///
/// File names are PEFT's: "base_model.model." + layer path + ".lora_A.weight" (r, in) and
/// ".lora_B.weight" (out, r). Only plain LoRA is read: rsLoRA, DoRA, per-layer rank or
/// alpha patterns, trained biases and fan_in_fan_out layers are rejected by name.

#include <contaccum/adapters/detail/modules.hpp>
#include <contaccum/adapters/lora.hpp>
#include <contaccum/checkpoint/detail/assign_tensors.hpp>
#include <contaccum/checkpoint/safetensors.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/detail/json_file.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace contaccum {
namespace detail {

inline constexpr std::string_view peft_prefix = "base_model.model.";

// `name` with regular-expression metacharacters escaped.
[[nodiscard]] inline std::string regex_escape(const std::string& name) {
  static const std::regex special(R"([.^$|()\[\]{}*+?\\])");
  return std::regex_replace(name, special, R"(\$&)");
}

}  // namespace detail

/// \brief Writes the LoRA layers of `model` (an encoder, module or holder) as a PEFT adapter
///        folder: PeftModel.from_pretrained(<the base model>, dir) loads it. target_modules
///        lists the adapted layers' full paths, so PEFT adapts exactly those layers.
///
/// \code
/// contaccum::save_peft_adapter(model->query_encoder, "out/query-adapter", "EleutherAI/pythia-70m");
/// \endcode
template <class Model>
void save_peft_adapter(Model& model, const std::filesystem::path& dir,
                       const std::string& base_model_name_or_path = "") {
  const auto layers = detail::lora_layers(detail::module_of(model));
  detail::require(!layers.empty(), "save_peft_adapter: the model has no LoRA layer (prepare it with contaccum::LoRA)");
  const auto& first = *layers.front().branch;
  std::map<std::string, torch::Tensor> tensors;
  nlohmann::json targets = nlohmann::json::array();
  for (const auto& l : layers) {
    detail::require(l.branch->rank() == first.rank() && l.branch->alpha() == first.alpha() &&
                        l.branch->dropout() == first.dropout(),
                    "save_peft_adapter: layer ", l.path, " has rank ", l.branch->rank(), ", alpha ", l.branch->alpha(),
                    ", dropout ", l.branch->dropout(), " but ", layers.front().path, " has ", first.rank(), ", ",
                    first.alpha(), ", ", first.dropout(), "; one adapter file holds one setting");
    const auto key = std::string(detail::peft_prefix) + l.path;
    tensors.emplace(key + ".lora_A.weight", l.branch->lora_A->weight.detach());
    tensors.emplace(key + ".lora_B.weight", l.branch->lora_B->weight.detach());
    targets.push_back(l.path);
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  detail::require(!ec, "cannot create '", dir.string(), "': ", ec.message());
  const nlohmann::json config = {
      {"peft_type", "LORA"},
      {"task_type", nullptr},
      {"base_model_name_or_path", base_model_name_or_path.empty() ? nlohmann::json(nullptr)
                                                                  : nlohmann::json(base_model_name_or_path)},
      {"r", first.rank()},
      {"lora_alpha", first.alpha()},
      {"lora_dropout", first.dropout()},
      {"target_modules", targets},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"init_lora_weights", true},
      {"inference_mode", true},
      {"modules_to_save", nullptr},
      {"layers_to_transform", nullptr},
      {"rank_pattern", nlohmann::json::object()},
      {"alpha_pattern", nlohmann::json::object()},
      {"use_rslora", false},
      {"use_dora", false},
  };
  detail::write_json_file(dir / "adapter_config.json", config);
  save_safetensors(dir / "adapter_model.safetensors", tensors, {{"format", "pt"}});
}

/// \brief The LoRA setting an adapter_config.json describes: r, lora_alpha, lora_dropout,
///        and target_modules as a pattern (a list of names becomes "name1|name2|...", which
///        our suffix rule reads as PEFT reads the list; a string is used as is).
[[nodiscard]] inline LoRA load_peft_lora_config(const std::filesystem::path& file) {
  const auto j = detail::read_json_file(file, "PEFT adapter config");
  const auto where = detail::cat("PEFT adapter config '", file.string(), "'");
  detail::require(j.value("peft_type", std::string()) == "LORA", where, ": peft_type is \"",
                  j.value("peft_type", std::string()), "\", only \"LORA\" is supported");
  for (const char* key : {"r", "lora_alpha", "target_modules"})
    detail::require(j.contains(key) && !j[key].is_null(), where, ": field \"", key, "\" is missing");
  for (const char* flag : {"use_rslora", "use_dora", "fan_in_fan_out"})
    detail::require(!j.value(flag, false), where, ": \"", flag, "\": true is not supported");
  for (const char* pattern : {"rank_pattern", "alpha_pattern"})
    detail::require(!j.contains(pattern) || j[pattern].is_null() || j[pattern].empty(), where, ": \"", pattern,
                    "\" (per-layer settings) is not supported");
  detail::require(j.value("bias", std::string("none")) == "none", where, ": bias \"", j.value("bias", std::string()),
                  "\" is not supported (only \"none\")");
  detail::require(!j.contains("layers_to_transform") || j["layers_to_transform"].is_null(), where,
                  ": \"layers_to_transform\" is not supported; put the layers in target_modules");
  LoRA lora{.rank = j["r"].get<int64_t>(),
            .alpha = j["lora_alpha"].get<double>(),
            .dropout = j.value("lora_dropout", 0.0)};
  const auto& t = j["target_modules"];
  if (t.is_string()) {
    lora.target_modules = t.get<std::string>();
  } else {
    detail::require(t.is_array() && !t.empty(), where, ": target_modules must be a string or a non-empty list");
    lora.target_modules.clear();
    for (const auto& name : t) lora.target_modules += (lora.target_modules.empty() ? "" : "|") +
                                                      detail::regex_escape(name.get<std::string>());
  }
  lora.validate();
  return lora;
}

/// \brief Installs the LoRA adapter saved in `dir` (PEFT's layout) on `model` (an encoder
///        with Hugging Face names, holding the base weights): the layers of its
///        target_modules get branches with the saved A and B; every other parameter is
///        frozen, A and B train. Nothing changes unless every tensor fits: otherwise one
///        invalid_input lists the missing, mismatched and unexpected tensors.
///
/// \code
/// auto bert = contaccum::load_bert("bert-base");
/// contaccum::load_peft_adapter(bert, "my-adapter");  // forward now equals PeftModel's
/// \endcode
template <LoraAdaptable Model>
LoRA load_peft_adapter(Model& model, const std::filesystem::path& dir) {
  const auto lora = load_peft_lora_config(dir / "adapter_config.json");
  const auto tensors = load_safetensors(dir / "adapter_model.safetensors");
  auto& root = detail::module_of(model);
  // Everything is checked against the layers the config selects before the model changes.
  const auto pattern = detail::compile_module_pattern(lora.target_modules, "target_modules");
  std::map<std::string, torch::Tensor> staged;  // our name -> a tensor of the expected shape
  for (const auto& [path, module] : detail::linear_layers(root)) {
    if (!detail::module_path_matches(pattern, path)) continue;
    const auto& w = dynamic_cast<torch::nn::LinearImpl&>(*module).weight;  // (out, in)
    staged.emplace(path + ".lora_A.weight", torch::empty({lora.rank, w.size(1)}, w.options()));
    staged.emplace(path + ".lora_B.weight", torch::empty({w.size(0), lora.rank}, w.options()));
  }
  detail::CheckpointNameMap names;
  for (const auto& entry : tensors) {
    std::string name = entry.first;
    if (name.starts_with(detail::peft_prefix)) name.erase(0, detail::peft_prefix.size());
    if (staged.contains(name)) names.to_source.emplace(name, entry.first);
    else names.unexpected.push_back(entry.first);
  }
  detail::assign_checkpoint_tensors(staged, tensors, names, detail::cat("PEFT adapter '", dir.string(), "'"),
                                    detail::cat("the layers its target_modules select (r = ", lora.rank, ")"));
  lora.prepare(model);
  torch::NoGradGuard no_grad;
  for (const auto& l : detail::lora_layers(root)) {
    l.branch->lora_A->weight.copy_(staged.at(l.path + ".lora_A.weight"));
    l.branch->lora_B->weight.copy_(staged.at(l.path + ".lora_B.weight"));
  }
  return lora;
}

}  // namespace contaccum
