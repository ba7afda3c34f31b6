#pragma once
/// \file
/// \brief `load_tokenizer(dir)`: the tokenizer a Hugging Face directory describes
///        (tokenizer.json's model type: WordPiece, BPE or Unigram; or vocab.txt), behind
///        one type.

#include <contaccum/tokenizers/byte_level_bpe.hpp>
#include <contaccum/tokenizers/unigram.hpp>
#include <contaccum/tokenizers/wordpiece.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace contaccum::tokenizers {

/// \brief WordPiece, byte-level BPE or Unigram, chosen at run time from the files.
class AutoTokenizer {
public:
  explicit AutoTokenizer(WordPiece t) : impl_(std::move(t)) {}
  explicit AutoTokenizer(ByteLevelBpe t) : impl_(std::move(t)) {}
  explicit AutoTokenizer(Unigram t) : impl_(std::move(t)) {}

  [[nodiscard]] std::vector<int64_t> encode(std::string_view text, EncodeOptions o = {}) const {
    return std::visit([&](const auto& t) { return t.encode(text, o); }, impl_);
  }
  [[nodiscard]] std::vector<std::string> tokenize(std::string_view text) const {
    return std::visit([&](const auto& t) { return t.tokenize(text); }, impl_);
  }
  [[nodiscard]] int64_t pad_id() const { return std::visit([](const auto& t) { return t.pad_id(); }, impl_); }
  [[nodiscard]] std::size_t vocab_size() const { return std::visit([](const auto& t) { return t.vocab_size(); }, impl_); }
  [[nodiscard]] std::string id_to_token(int64_t id) const {
    return std::visit([&](const auto& t) { return t.id_to_token(id); }, impl_);
  }
  [[nodiscard]] std::optional<int64_t> token_to_id(std::string_view token) const {
    return std::visit([&](const auto& t) { return t.token_to_id(token); }, impl_);
  }
  [[nodiscard]] bool is_wordpiece() const { return std::holds_alternative<WordPiece>(impl_); }
  [[nodiscard]] const std::variant<WordPiece, ByteLevelBpe, Unigram>& get() const { return impl_; }

private:
  std::variant<WordPiece, ByteLevelBpe, Unigram> impl_;
};

/// \brief Reads tokenizer.json (WordPiece, BPE or Unigram model) or, without it, vocab.txt.
[[nodiscard]] inline AutoTokenizer load_tokenizer(const std::filesystem::path& dir) {
  const auto json_path = dir / "tokenizer.json";
  if (std::filesystem::exists(json_path)) {
    const auto j = detail::read_json_file(json_path);
    const std::string type = j.contains("model") ? j["model"].value("type", "") : "";
    if (type == "WordPiece") return AutoTokenizer(WordPiece::from_tokenizer_json(json_path));
    if (type == "BPE") return AutoTokenizer(ByteLevelBpe::from_tokenizer_json(json_path));
    if (type == "Unigram") return AutoTokenizer(Unigram::from_tokenizer_json(json_path));
    throw invalid_input(contaccum::detail::cat("contaccum: ", json_path.string(), ": model.type '", type,
                                               "' is not supported (WordPiece, BPE, Unigram)"));
  }
  detail::require_file(std::filesystem::exists(dir / "vocab.txt"), dir,
                       "has neither tokenizer.json nor vocab.txt");
  return AutoTokenizer(WordPiece::from_pretrained(dir));
}

}  // namespace contaccum::tokenizers
