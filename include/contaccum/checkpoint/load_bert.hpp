#pragma once
/// \file
/// \brief Hugging Face BERT, RoBERTa and XLM-RoBERTa checkpoints <-> contaccum::Bert: a
///        folder with config.json and model.safetensors (or shards). Our Bert's parameter
///        names are Hugging Face's, so loading is a name-for-name copy after undoing the
///        historical spellings (a "bert." or "roberta." prefix, LayerNorm.gamma/beta);
///        heads we do not have are skipped.

#include <contaccum/checkpoint/detail/assign_tensors.hpp>
#include <contaccum/checkpoint/hf_config.hpp>
#include <contaccum/checkpoint/safetensors.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/bert.hpp>
#include <contaccum/encoders/linear.hpp>

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace contaccum {
namespace detail {

// Old (TF-converted) checkpoints call LayerNorm's weight/bias gamma/beta.
[[nodiscard]] inline std::string modern_layer_norm_name(std::string name) {
  using Rename = std::pair<std::string_view, std::string_view>;
  for (auto [old_suffix, new_suffix] :
       {Rename{"LayerNorm.gamma", "LayerNorm.weight"}, Rename{"LayerNorm.beta", "LayerNorm.bias"}}) {
    if (name.ends_with(old_suffix)) return name.substr(0, name.size() - old_suffix.size()) + std::string(new_suffix);
  }
  return name;
}

// Entries of BertModel's state dict that are not parameters of our Bert and carry nothing
// it needs: the pooler (we pool outside the encoder) and the position/type id buffers.
[[nodiscard]] inline bool is_bert_extra(std::string_view name) {
  return name.starts_with("pooler.") || name == "embeddings.position_ids" || name == "embeddings.token_type_ids";
}

/// \brief Checkpoint names mapped to our Bert's parameter names: the family's prefix
///        ("bert." or "roberta.", as the ...ForMaskedLM classes save the body) is dropped
///        (everything outside it is a task head: cls.*, lm_head.*, classifier.*, ...), and
///        LayerNorm.gamma/beta become weight/bias. Entries that belong to no parameter of
///        the body (pooler, id buffers) and heads are left out.
[[nodiscard]] inline CheckpointNameMap map_bert_names(const std::map<std::string, torch::Tensor>& tensors,
                                                      const std::map<std::string, torch::Tensor>& ours,
                                                      std::string_view prefix = "bert.") {
  const bool prefixed = any_name_starts_with(tensors, prefix);
  CheckpointNameMap m;
  for (const auto& entry : tensors) {
    const auto& source = entry.first;
    std::string name = source;
    if (prefixed) {
      if (!name.starts_with(prefix)) continue;  // a task head beside the encoder
      name.erase(0, prefix.size());
    }
    name = modern_layer_norm_name(name);
    if (is_bert_extra(name)) continue;
    m.add(name, source, ours, name.starts_with("embeddings.") || name.starts_with("encoder."));
  }
  return m;
}

}  // namespace detail

/// \brief Copies a Hugging Face BERT (or RoBERTa, XLM-RoBERTa: the config's model_type)
///        state dict into `model` (dtype converted, device kept).
///
/// Accepts the "bert." / "roberta." prefix, LayerNorm.gamma/beta and ignores heads we do not have
/// (pooler.*, cls.*, embeddings.position_ids, ...). Nothing is copied unless everything
/// fits: otherwise one invalid_input lists every missing tensor, every shape mismatch
/// ("name: expected [a, b], got [c, d]") and every unexpected encoder tensor.
/// \code
/// contaccum::Bert bert(contaccum::load_bert_config(dir / "config.json"));
/// contaccum::load_bert_weights(bert, contaccum::load_checkpoint(dir));
/// \endcode
inline void load_bert_weights(Bert& model, const std::map<std::string, torch::Tensor>& tensors,
                              std::string_view source = "checkpoint") {
  auto ours = detail::base_parameters(*model);  // an installed adapter's own tensors are not the checkpoint's
  for (const auto& b : model->named_buffers()) ours.emplace(b.key(), b.value());
  const auto& c = model->config();
  const auto names = detail::map_bert_names(tensors, ours, uses_roberta_positions(c) ? "roberta." : "bert.");
  detail::assign_checkpoint_tensors(ours, tensors, names, source,
                                    detail::cat("Bert(", c.model_type, ", hidden_size ", c.hidden_size, ", ", c.num_hidden_layers,
                                                " layers, vocab_size ", c.vocab_size, ")"));
}

/// \brief A Bert from a Hugging Face model folder (config.json + safetensors weights),
///        in eval mode as transformers' from_pretrained returns it.
///
/// \code
/// auto bert = contaccum::load_bert("bge-small-en");
/// auto h = bert(ids, mask);  // (B, T, hidden)
/// \endcode
[[nodiscard]] inline Bert load_bert(const std::filesystem::path& dir) {
  Bert model(load_bert_config(dir / "config.json"));
  load_bert_weights(model, load_checkpoint(dir), detail::cat("checkpoint '", dir.string(), "'"));
  model->eval();
  return model;
}

/// \brief Writes `model` as a Hugging Face model folder: config.json and model.safetensors
///        with Hugging Face's names, loadable by transformers' AutoModel.from_pretrained
///        (BertModel, RobertaModel or XLMRobertaModel, from the config's model_type).
///        A model with LoRA layers must be merged first (merge_lora); adapter tensors are
///        never written (save them with save_peft_adapter).
///
///        The folder also holds the pooler transformers' model class expects
///        (pooler.dense.*), as zeros: contaccum trains no pooler and sentence-transformers
///        never reads it, and with it present loading warns of no newly initialised
///        weights. Its pooler_output is therefore 0; read last_hidden_state.
///
/// \code
/// contaccum::save_bert(bert, "out/my-bert");
/// \endcode
inline void save_bert(const Bert& model, const std::filesystem::path& dir) {
  detail::require_branches_merged(*model, "save_bert");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  detail::require(!ec, "cannot create '", dir.string(), "': ", ec.message());
  save_bert_config(model->config(), dir / "config.json");
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [name, p] : detail::base_parameters(*model)) tensors.emplace(name, p.detach());
  const auto h = model->hidden_size();
  const auto like = model->embeddings->word_embeddings->weight.options();
  tensors.emplace("pooler.dense.weight", torch::zeros({h, h}, like));  // (H, H)
  tensors.emplace("pooler.dense.bias", torch::zeros({h}, like));       // (H)
  // transformers refuses safetensors files whose metadata lacks format "pt".
  save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
}

}  // namespace contaccum
