#pragma once
/// \file
/// \brief sentence-transformers directories: read the pooling set-up of a model
///        (modules.json, 1_Pooling/config.json, sentence_bert_config.json), check that it
///        is the pooling reader the user compiled in, and export a trained encoder (BERT,
///        RoBERTa, XLM-R, GPT-NeoX, Llama, Qwen2) so `SentenceTransformer(dir)` loads it
///        with the same embeddings.
///
/// \code
/// using Reader = contaccum::Normalized<contaccum::MeanPooling>;
/// auto st = contaccum::read_sentence_transformer_config("models/all-MiniLM-L6-v2");
/// contaccum::require_pooling<Reader>(st);            // error if the folder says otherwise
/// contaccum::save_sentence_transformer<Reader>(bert, "models/all-MiniLM-L6-v2", "out/model");
/// \endcode

#include <contaccum/checkpoint/load_bert.hpp>
#include <contaccum/checkpoint/load_gpt_neox.hpp>
#include <contaccum/checkpoint/load_llama.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/detail/json_file.hpp>
#include <contaccum/pooling/cls.hpp>
#include <contaccum/pooling/last_token.hpp>
#include <contaccum/pooling/max.hpp>
#include <contaccum/pooling/mean.hpp>
#include <contaccum/pooling/normalized.hpp>

#include <nlohmann/json.hpp>

#include <contaccum/version.hpp>

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>
#include <string_view>
#include <concepts>
#include <type_traits>

namespace contaccum {

/// \brief What a sentence-transformers folder says about reading out embeddings.
struct SentenceTransformerConfig {
  std::string pooling_mode = "mean";  ///< "mean", "cls", "max" or "lasttoken"
  bool normalize = false;             ///< a Normalize module follows the pooling
  int64_t max_seq_length = 256;       ///< tokens per text, specials included
  int64_t embedding_dimension = 0;
  /// config_sentence_transformers.json's `prompts`: the text prepended to queries ("query")
  /// and to documents ("document", else "passage", else "corpus"); empty when absent.
  std::string query_prompt;
  std::string document_prompt;
};

namespace detail {

/// \brief sentence-transformers' name of each pooling reader.
template <class P> struct st_pooling;
template <> struct st_pooling<MeanPooling> { static constexpr std::string_view mode = "mean"; static constexpr bool normalize = false; };
template <> struct st_pooling<ClsPooling> { static constexpr std::string_view mode = "cls"; static constexpr bool normalize = false; };
template <> struct st_pooling<MaxPooling> { static constexpr std::string_view mode = "max"; static constexpr bool normalize = false; };
template <> struct st_pooling<LastTokenPooling> { static constexpr std::string_view mode = "lasttoken"; static constexpr bool normalize = false; };
template <class P> struct st_pooling<Normalized<P>> { static constexpr std::string_view mode = st_pooling<P>::mode; static constexpr bool normalize = true; };

// Field `key` of the JSON object `obj` read as T (a string, an integer or a boolean), or
// `fallback` when it is absent or null; a value of another type is an error naming the file
// `where` and the field `what` (e.g. "modules[1].type").
template <class T>
[[nodiscard]] T st_field(const nlohmann::json& obj, const char* key, T fallback, const std::string& where,
                         const std::string& what) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  bool ok = false;
  const char* expected = "";
  if constexpr (std::is_same_v<T, std::string>) ok = it->is_string(), expected = "a string";
  else if constexpr (std::is_same_v<T, bool>) ok = it->is_boolean(), expected = "true or false";
  else ok = it->is_number_integer(), expected = "an integer";
  require(ok, where, ": \"", what, "\" must be ", expected, ", got ", it->dump());
  return it->template get<T>();
}

}  // namespace detail

/// \brief Reads modules.json and the pooling / Normalize modules it lists. Both the classic
///        layout (pooling_mode_mean_tokens flags) and sentence-transformers 6's
///        (`pooling_mode: "mean"`) are read. Modules other than Transformer, Pooling and
///        Normalize (Dense, LayerNorm, ...) are refused with their name.
[[nodiscard]] inline SentenceTransformerConfig read_sentence_transformer_config(const std::filesystem::path& dir) {
  SentenceTransformerConfig c;
  const auto modules_file = dir / "modules.json";
  detail::require(std::filesystem::exists(modules_file), dir.string(),
                  " is not a sentence-transformers folder (no modules.json)");
  const auto modules = detail::read_json_file(modules_file, "sentence-transformers modules file");
  const std::string where = modules_file.string();
  detail::require(modules.is_array(), where, ": must be a list of modules");
  bool seen_pooling = false;
  for (std::size_t i = 0; i < modules.size(); ++i) {
    const auto at = detail::cat("modules[", i, "]");
    detail::require(modules[i].is_object(), where, ": ", at, " must be an object with \"type\" and \"path\", got ",
                    modules[i].dump());
    const auto type = detail::st_field<std::string>(modules[i], "type", "", where, at + ".type");
    const auto path = detail::st_field<std::string>(modules[i], "path", "", where, at + ".path");
    auto is = [&](std::string_view name) { return type.ends_with(name); };
    if (is(".Transformer")) {
      const auto cfg = dir / path / "sentence_bert_config.json";
      if (std::filesystem::exists(cfg)) {
        const auto j = detail::read_json_file(cfg, "sentence-transformers config");
        detail::require(j.is_object(), cfg.string(), ": not a JSON object");
        c.max_seq_length = detail::st_field(j, "max_seq_length", c.max_seq_length, cfg.string(), "max_seq_length");
        detail::require(c.max_seq_length > 0, cfg.string(), ": \"max_seq_length\" must be positive, got ",
                        c.max_seq_length);
      }
    } else if (is(".Pooling")) {
      const auto cfg_file = dir / path / "config.json";
      const auto p = detail::read_json_file(cfg_file, "sentence-transformers pooling config");
      const auto pw = cfg_file.string();
      detail::require(p.is_object(), pw, ": not a JSON object");
      c.embedding_dimension = detail::st_field(
          p, "word_embedding_dimension", detail::st_field(p, "embedding_dimension", int64_t{0}, pw, "embedding_dimension"),
          pw, "word_embedding_dimension");
      std::vector<std::string> modes;
      if (const auto mode = detail::st_field<std::string>(p, "pooling_mode", "", pw, "pooling_mode"); !mode.empty()) {
        modes.push_back(mode);
      } else {
        for (const auto& [flag, mode] : {std::pair{"pooling_mode_mean_tokens", "mean"}, {"pooling_mode_cls_token", "cls"},
                                         {"pooling_mode_max_tokens", "max"}, {"pooling_mode_lasttoken", "lasttoken"},
                                         {"pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"},
                                         {"pooling_mode_weightedmean_tokens", "weightedmean"}})
          if (detail::st_field(p, flag, false, pw, flag)) modes.emplace_back(mode);
      }
      detail::require(modes.size() == 1, cfg_file.string(), ": exactly one pooling mode must be set, found ", modes.size());
      c.pooling_mode = modes.front();
      detail::require(c.pooling_mode == "mean" || c.pooling_mode == "cls" || c.pooling_mode == "max" ||
                          c.pooling_mode == "lasttoken",
                      cfg_file.string(), ": pooling mode '", c.pooling_mode,
                      "' has no contaccum reader (mean, cls, max, lasttoken)");
      seen_pooling = true;
    } else if (is(".Normalize")) {
      c.normalize = true;
    } else {
      throw invalid_input(detail::cat("contaccum: ", where, ": module ", i, " has type '", type,
                                      "', which contaccum does not implement (Transformer, Pooling, Normalize)"));
    }
  }
  detail::require(seen_pooling, where, ": no Pooling module");
  if (const auto st_file = dir / "config_sentence_transformers.json"; std::filesystem::exists(st_file)) {
    const auto j = detail::read_json_file(st_file, "sentence-transformers config");
    const auto sw = st_file.string();
    detail::require(j.is_object(), sw, ": not a JSON object");
    if (const auto it = j.find("prompts"); it != j.end() && !it->is_null()) {
      detail::require(it->is_object(), sw, ": \"prompts\" must be an object of name -> text, got ", it->dump());
      c.query_prompt = detail::st_field<std::string>(*it, "query", "", sw, "prompts.query");
      for (const auto* name : {"document", "passage", "corpus"}) {
        c.document_prompt = detail::st_field<std::string>(*it, name, "", sw, std::string("prompts.") + name);
        if (!c.document_prompt.empty()) break;
      }
    }
  }
  return c;
}

/// \brief Checks that pooling reader `P` is the one the folder describes.
template <Pooler P>
void require_pooling(const SentenceTransformerConfig& c, const std::string& where = "sentence-transformers folder") {
  detail::require(c.pooling_mode == detail::st_pooling<P>::mode && c.normalize == detail::st_pooling<P>::normalize,
                  where, " pools with '", c.pooling_mode, "'", c.normalize ? " + Normalize" : "",
                  " but the reader compiled in is '", detail::st_pooling<P>::mode, "'",
                  detail::st_pooling<P>::normalize ? " + Normalize" : "");
}

namespace detail {
inline void save_encoder_folder(const Bert& model, const std::filesystem::path& dir) { save_bert(model, dir); }
inline void save_encoder_folder(const GptNeox& model, const std::filesystem::path& dir) { save_gpt_neox(model, dir); }
inline void save_encoder_folder(const Llama& model, const std::filesystem::path& dir) { save_llama(model, dir); }
}  // namespace detail

/// \brief An encoder sentence-transformers can load from the folder its save_* writes.
template <class E>
concept SentenceTransformerEncoder = std::same_as<E, Bert> || std::same_as<E, GptNeox> || std::same_as<E, Llama>;

/// \brief What a model card README says about the training run that made the model.
struct ModelCard {
  std::string base_model;  ///< e.g. "sentence-transformers/all-MiniLM-L6-v2"
  std::string datasets;    ///< the training data, e.g. "Debian package descriptions (BEIR folder)"
  std::string training;    ///< strategy and its settings, e.g. "ContAccum, N_local 16, N_total 64"
  std::vector<std::pair<std::string, double>> metrics;  ///< e.g. {"nDCG@10", 0.902}
  std::string evaluated_on;  ///< what the metrics were measured on
};

/// \brief What save_sentence_transformer writes besides the weights and the tokenizer.
struct SentenceTransformerExport {
  int64_t max_seq_length = 256;  ///< tokens per text, specials included
  std::string query_prompt;      ///< written as prompts.query (what encode_query prepends)
  std::string document_prompt;   ///< written as prompts.document (what encode_document prepends)
  std::optional<ModelCard> card; ///< a README.md model card when given
};

namespace detail {
// The model card: a YAML header the Hugging Face hub reads (library, tags, base model),
// then how to load the model, the prompts, the training run and its metrics.
[[nodiscard]] inline std::string model_card_text(const ModelCard& card, const SentenceTransformerExport& e,
                                                 std::string_view pooling, bool normalize, int64_t dim) {
  std::ostringstream os;
  os << "---\nlibrary_name: sentence-transformers\npipeline_tag: sentence-similarity\ntags:\n"
     << "- sentence-transformers\n- sentence-similarity\n- contaccum\n";
  if (!card.base_model.empty()) os << "base_model: " << card.base_model << "\n";
  os << "---\n\n# " << (card.base_model.empty() ? std::string("A contaccum model") : card.base_model + ", fine-tuned")
     << "\n\nTrained with contaccum " << CONTACCUM_VERSION_MAJOR << "." << CONTACCUM_VERSION_MINOR << "."
     << CONTACCUM_VERSION_PATCH << ". Embeddings of " << dim << " dimensions, "
     << pooling << " pooling" << (normalize ? ", normalised (cosine similarity)" : " (dot-product similarity)")
     << ", at most " << e.max_seq_length << " tokens per text.\n\n";
  os << "```python\nfrom sentence_transformers import SentenceTransformer\nmodel = SentenceTransformer(\"path/to/this/folder\")\n"
     << "queries = model.encode_query([\"...\"])\ndocuments = model.encode_document([\"...\"])\n"
     << "scores = model.similarity(queries, documents)\n```\n\n";
  if (!e.query_prompt.empty() || !e.document_prompt.empty()) {
    os << "## Prompts\n\n`encode_query` prepends \"" << e.query_prompt << "\", `encode_document` prepends \""
       << e.document_prompt << "\" (config_sentence_transformers.json, `prompts`). Plain `encode` adds none.\n\n";
  }
  os << "## Training\n\n";
  if (!card.base_model.empty()) os << "- Base model: " << card.base_model << "\n";
  if (!card.datasets.empty()) os << "- Data: " << card.datasets << "\n";
  if (!card.training.empty()) os << "- Strategy: " << card.training << "\n";
  if (!card.metrics.empty()) {
    os << "\n## Evaluation\n\n";
    if (!card.evaluated_on.empty()) os << card.evaluated_on << "\n\n";
    os << "| metric | value |\n|---|---:|\n";
    for (const auto& [name, value] : card.metrics) os << "| " << name << " | " << std::fixed << std::setprecision(4) << value << " |\n";
  }
  return os.str();
}
}  // namespace detail

/// \brief As below, with the prompts and the model card of `e`: prompts go to
///        config_sentence_transformers.json (sentence-transformers' encode_query and
///        encode_document prepend them), the card to README.md.
template <Pooler P, SentenceTransformerEncoder E>
void save_sentence_transformer(const E& model, const std::filesystem::path& tokenizer_dir,
                               const std::filesystem::path& dir, const SentenceTransformerExport& e) {
  namespace fs = std::filesystem;
  const int64_t max_seq_length = e.max_seq_length;
  detail::require(max_seq_length > 0, "save_sentence_transformer: max_seq_length must be positive, got ", max_seq_length);
  detail::save_encoder_folder(model, dir);
  bool copied = false;
  for (const auto* name : {"tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model",
                            "tokenizer_config.json", "special_tokens_map.json"}) {
    if (fs::exists(tokenizer_dir / name)) {
      if (!fs::equivalent(tokenizer_dir, dir))  // a checked, atomic copy: a full disk names the file
        detail::write_file_atomically(dir / name, detail::read_file_bytes(tokenizer_dir / name));
      copied = true;
    }
  }
  detail::require(copied, tokenizer_dir.string(), " has no tokenizer files (tokenizer.json or vocab.txt)");
  using names = detail::st_pooling<P>;
  nlohmann::json modules = nlohmann::json::array();
  modules.push_back({{"idx", 0}, {"name", "0"}, {"path", ""}, {"type", "sentence_transformers.models.Transformer"}});
  modules.push_back({{"idx", 1}, {"name", "1"}, {"path", "1_Pooling"}, {"type", "sentence_transformers.models.Pooling"}});
  if (names::normalize) {
    modules.push_back({{"idx", 2}, {"name", "2"}, {"path", "2_Normalize"}, {"type", "sentence_transformers.models.Normalize"}});
    fs::create_directories(dir / "2_Normalize");
  }
  detail::write_json_file(dir / "modules.json", modules);
  fs::create_directories(dir / "1_Pooling");
  detail::write_json_file(dir / "1_Pooling" / "config.json",
                     {{"word_embedding_dimension", model->hidden_size()},
                      {"pooling_mode_cls_token", names::mode == "cls"},
                      {"pooling_mode_mean_tokens", names::mode == "mean"},
                      {"pooling_mode_max_tokens", names::mode == "max"},
                      {"pooling_mode_mean_sqrt_len_tokens", false},
                      {"pooling_mode_lasttoken", names::mode == "lasttoken"}});
  detail::write_json_file(dir / "sentence_bert_config.json", {{"max_seq_length", max_seq_length}, {"do_lower_case", false}});
  nlohmann::json prompts = nlohmann::json::object();
  if (!e.query_prompt.empty()) prompts["query"] = e.query_prompt;
  if (!e.document_prompt.empty()) prompts["document"] = e.document_prompt;
  detail::write_json_file(dir / "config_sentence_transformers.json",
                          {{"similarity_fn_name", names::normalize ? "cosine" : "dot"},
                           {"prompts", prompts},
                           {"default_prompt_name", nullptr}});
  if (e.card) {
    const auto text = detail::model_card_text(*e.card, e, names::mode, names::normalize, model->hidden_size());
    detail::write_file_atomically(dir / "README.md", text);
  }
}

/// \brief Writes a sentence-transformers folder: the encoder's checkpoint (save_bert,
///        save_gpt_neox or save_llama), the tokenizer files copied from `tokenizer_dir`,
///        modules.json, 1_Pooling/config.json for reader `P`, 2_Normalize when `P`
///        normalises, sentence_bert_config.json. The classic layout is written, which
///        sentence-transformers 2 to 6 all read. For a decoder read with LastTokenPooling,
///        give the tokenizer a padding token (tokenizer_config.json's pad_token):
///        sentence-transformers pads batches.
template <Pooler P, SentenceTransformerEncoder E>
void save_sentence_transformer(const E& model, const std::filesystem::path& tokenizer_dir,
                               const std::filesystem::path& dir, int64_t max_seq_length = 256) {
  save_sentence_transformer<P>(model, tokenizer_dir, dir, SentenceTransformerExport{.max_seq_length = max_seq_length});
}

}  // namespace contaccum
