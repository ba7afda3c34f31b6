#pragma once
/// \file
/// \brief Hugging Face GPT-NeoX checkpoints <-> contaccum::GptNeox: a folder with
///        config.json and model.safetensors (or shards). Our parameter names are
///        GPTNeoXForCausalLM's, so loading is a name-for-name copy.
///
/// Two layouts are read: GPTNeoXForCausalLM's ("gpt_neox." body + "embed_out.weight"; the
/// head is also accepted as "lm_head.weight", transformers 5's in-memory name) and
/// GPTNeoXModel's (the body without prefix and without a head). A checkpoint without a
/// head is an error unless the caller asks for GptNeoxHead::optional: then the body loads
/// and embed_out keeps its initial values (fine for training an encoder, meaningless for
/// lm_logits until trained). Buffers old checkpoints carry (rotary inv_freq, the causal
/// attention.bias / masked_bias) and task heads of other architectures are skipped.

#include <contaccum/checkpoint/detail/assign_tensors.hpp>
#include <contaccum/checkpoint/gpt_neox_config.hpp>
#include <contaccum/checkpoint/safetensors.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/encoders/gpt_neox.hpp>
#include <contaccum/encoders/linear.hpp>

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace contaccum {

/// \brief Whether a checkpoint must carry the language-model head (embed_out).
enum class GptNeoxHead {
  required,  ///< a checkpoint without embed_out is an error (the default)
  optional,  ///< a GPTNeoXModel checkpoint loads; embed_out keeps its initial values
};

namespace detail {

inline constexpr std::string_view gpt_neox_head_name = "embed_out.weight";

// Entries of old GPT-NeoX state dicts that are recomputed, not learned: the rotary
// frequencies and the causal-mask buffers of transformers 4.x.
[[nodiscard]] inline bool is_gpt_neox_extra(std::string_view name) {
  return name.ends_with("rotary_emb.inv_freq") || name.ends_with("rotary_emb.original_inv_freq") ||
         name.ends_with("attention.bias") || name.ends_with("attention.masked_bias");
}

// Names of GPTNeoXModel's own modules (the body), without the "gpt_neox." prefix.
[[nodiscard]] inline bool is_gpt_neox_body(std::string_view name) {
  return name.starts_with("embed_in.") || name.starts_with("layers.") || name.starts_with("final_layer_norm.") ||
         name.starts_with("rotary_emb.");
}

/// \brief Checkpoint names mapped to GptNeox's names: a body without "gpt_neox." gets the
///        prefix; "lm_head.weight" is embed_out; the head is dropped when our model ties it
///        to embed_in; other heads and recomputed buffers are left out.
[[nodiscard]] inline CheckpointNameMap map_gpt_neox_names(const std::map<std::string, torch::Tensor>& tensors,
                                                          const std::map<std::string, torch::Tensor>& ours,
                                                          bool tied_head) {
  const bool prefixed = any_name_starts_with(tensors, "gpt_neox.");
  CheckpointNameMap m;
  for (const auto& entry : tensors) {
    const auto& source = entry.first;
    std::string name = source;
    if (name == "embed_out.weight" || name == "lm_head.weight") {
      if (tied_head) continue;  // transformers ties it to embed_in as well
      name = gpt_neox_head_name;
    } else if (!prefixed && is_gpt_neox_body(name)) {
      name = "gpt_neox." + name;
    } else if (!name.starts_with("gpt_neox.")) {
      continue;  // a task head we do not have (score.*, classifier.*, qa_outputs.*)
    }
    if (is_gpt_neox_extra(name)) continue;
    m.add(name, source, ours, /*in_body=*/true);  // every name left is the body's (or the head's)
  }
  return m;
}

}  // namespace detail

/// \brief Copies a Hugging Face GPT-NeoX state dict into `model` (dtype converted, device kept).
///
/// Nothing is copied unless everything fits: otherwise one invalid_input lists every
/// missing tensor, every shape mismatch ("name: expected [a, b], got [c, d]") and every
/// unexpected body tensor. `head` says whether a missing embed_out is one of them.
/// \code
/// contaccum::GptNeox lm(contaccum::load_gpt_neox_config(dir / "config.json"));
/// contaccum::load_gpt_neox_weights(lm, contaccum::load_checkpoint(dir));
/// \endcode
inline void load_gpt_neox_weights(GptNeox& model, const std::map<std::string, torch::Tensor>& tensors,
                                  std::string_view source = "checkpoint", GptNeoxHead head = GptNeoxHead::required) {
  auto ours = detail::base_parameters(*model);  // an installed adapter's own tensors are not the checkpoint's
  for (const auto& b : model->named_buffers()) ours.emplace(b.key(), b.value());
  const auto& c = model->config();
  const auto names = detail::map_gpt_neox_names(tensors, ours, c.tie_word_embeddings);

  const std::string head_name(detail::gpt_neox_head_name);
  const bool head_missing = ours.contains(head_name) && !names.to_source.contains(head_name);
  std::vector<std::string> notes;
  if (head_missing && head == GptNeoxHead::optional) {
    ours.erase(head_name);  // keeps its initial values
  } else if (head_missing) {
    notes.push_back(
        "embed_out.weight (the language-model head) is missing: a GPTNeoXModel checkpoint has none. "
        "Pass GptNeoxHead::optional to load the encoder alone (embed_out then keeps its initial values).");
  }
  detail::assign_checkpoint_tensors(ours, tensors, names, source,
                                    detail::cat("GptNeox(hidden_size ", c.hidden_size, ", ", c.num_hidden_layers,
                                                " layers, vocab_size ", c.vocab_size, ")"),
                                    notes);
}

/// \brief A GptNeox from a Hugging Face model folder (config.json + safetensors weights),
///        in eval mode as transformers' from_pretrained returns it.
///
/// \code
/// auto lm = contaccum::load_gpt_neox("pythia-160m");
/// auto h = lm(ids, mask);  // (B, T, 768)
/// \endcode
[[nodiscard]] inline GptNeox load_gpt_neox(const std::filesystem::path& dir, GptNeoxHead head = GptNeoxHead::required) {
  GptNeox model(load_gpt_neox_config(dir / "config.json"));
  load_gpt_neox_weights(model, load_checkpoint(dir), detail::cat("checkpoint '", dir.string(), "'"), head);
  model->eval();
  return model;
}

/// \brief Writes `model` as a Hugging Face model folder: config.json and model.safetensors
///        with GPTNeoXForCausalLM's names, loadable by transformers' from_pretrained.
///        A model with LoRA layers must be merged first (merge_lora); adapter tensors are
///        never written (save them with save_peft_adapter).
///
/// \code
/// contaccum::save_gpt_neox(lm, "out/my-pythia");
/// \endcode
inline void save_gpt_neox(const GptNeox& model, const std::filesystem::path& dir) {
  detail::require_branches_merged(*model, "save_gpt_neox");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  detail::require(!ec, "cannot create '", dir.string(), "': ", ec.message());
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [name, p] : detail::base_parameters(*model)) tensors.emplace(name, p.detach());
  const auto type = model->gpt_neox->embed_in->weight.scalar_type();
  const char* dtype = type == torch::kBFloat16 ? "bfloat16"
                      : type == torch::kHalf   ? "float16"
                      : type == torch::kDouble ? "float64"
                                               : "float32";
  save_gpt_neox_config(model->config(), dir / "config.json", dtype);
  // transformers refuses safetensors files whose metadata lacks format "pt".
  save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
}

}  // namespace contaccum
