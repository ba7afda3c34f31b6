#pragma once
/// \file
/// \brief BERT's WordPiece tokenizer: BertNormalizer, BertPreTokenizer, greedy
///        longest-match WordPiece and [CLS] ... [SEP], from vocab.txt or tokenizer.json.
///
/// \code
/// auto tok = contaccum::tokenizers::WordPiece::from_pretrained("models/all-MiniLM-L6-v2");
/// std::vector<int64_t> ids = tok.encode("Fast dense retrieval", {.max_length = 128});
/// \endcode

#include <contaccum/detail/error.hpp>
#include <contaccum/detail/input_file.hpp>
#include <contaccum/tokenizers/detail/pipeline.hpp>
#include <contaccum/tokenizers/detail/unicode.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum::tokenizers {

/// \brief BertNormalizer switches (tokenizer.json field names).
struct BertNormalizerOptions {
  bool clean_text = true;            ///< drop control characters, map whitespace to ' '
  bool handle_chinese_chars = true;  ///< put spaces around CJK ideographs
  std::optional<bool> strip_accents; ///< unset: follows `lowercase`
  bool lowercase = true;
};

/// \brief Everything a vocab.txt does not say.
struct WordPieceOptions {
  BertNormalizerOptions normalizer{};
  std::string unk_token = "[UNK]";
  std::string continuing_subword_prefix = "##";
  std::size_t max_input_chars_per_word = 100;  ///< longer words become [UNK]
  std::string cls_token = "[CLS]", sep_token = "[SEP]", pad_token = "[PAD]", mask_token = "[MASK]";
};

class WordPiece : public detail::TokenizerBase<WordPiece> {
  friend class detail::TokenizerBase<WordPiece>;

public:
  /// \brief A vocab.txt (one token per line; the line number is the id), as transformers'
  ///        BertTokenizerFast builds it: the five special tokens become added tokens.
  static WordPiece from_vocab_file(const std::filesystem::path& path, WordPieceOptions options = {}) {
    WordPiece t;
    t.options_ = std::move(options);
    const auto why = contaccum::detail::unreadable_file_reason(path);
    detail::require_file(why.empty(), path, "cannot be opened: ", why);
    std::ifstream in(path, std::ios::binary);
    detail::require_file(static_cast<bool>(in), path, "cannot be opened");
    std::string line;
    int64_t id = 0;
    while (std::getline(in, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == '\n' || line.back() == ' ' || line.back() == '\t'))
        line.pop_back();
      try {
        (void)detail::decode_utf8(line);
      } catch (const invalid_input& e) {
        throw invalid_input(contaccum::detail::cat("contaccum: ", path.string(), ":", id + 1,
                                                   ": vocabulary line is not valid UTF-8 (", e.what(), ")"));
      }
      t.vocab_.add(line, id++);
    }
    detail::require_file(in.eof(), path, "could not be read to the end");
    detail::require_file(id > 0, path, "is empty");
    std::vector<AddedToken> specials;
    for (const auto* name : {&t.options_.pad_token, &t.options_.unk_token, &t.options_.cls_token,
                             &t.options_.sep_token, &t.options_.mask_token}) {
      if (const auto found = t.vocab_.find(*name)) specials.push_back({*name, *found, true, false, false, false, false});
    }
    const auto cls = t.vocab_.find(t.options_.cls_token);
    const auto sep = t.vocab_.find(t.options_.sep_token);
    detail::require_file(cls && sep, path, "has no ", t.options_.cls_token, " or ", t.options_.sep_token, " token");
    t.post_.prefix = {*cls};
    t.post_.suffix = {*sep};
    t.finish_load(path.string(), std::move(specials));
    return t;
  }

  /// \brief A tokenizer.json whose model is WordPiece (what transformers saves for BERT).
  static WordPiece from_tokenizer_json(const std::filesystem::path& path) {
    const auto j = detail::read_json_file(path);
    const std::string where = path.string();
    try {
      const auto& model = j.at("model");
      contaccum::detail::require(model.value("type", "") == "WordPiece", where, ": model.type is '",
                                 model.value("type", ""), "', expected WordPiece");
      WordPiece t;
      t.options_.unk_token = model.value("unk_token", "[UNK]");
      t.options_.continuing_subword_prefix = model.value("continuing_subword_prefix", "##");
      const auto max_chars = model.value("max_input_chars_per_word", nlohmann::json(100));
      contaccum::detail::require(max_chars.is_number_integer() && max_chars.get<int64_t>() >= 1, where,
                                 ": model.max_input_chars_per_word is ", max_chars.dump(), "; it must be an integer >= 1");
      t.options_.max_input_chars_per_word = max_chars.get<std::size_t>();
      for (const auto& [tok, id] : model.at("vocab").items())
        t.vocab_.add(tok, detail::token_id_of(id, where, "model.vocab", tok));
      const auto& norm = j.value("normalizer", nlohmann::json());
      if (norm.is_null()) {
        t.options_.normalizer = {false, false, false, false};
      } else {
        contaccum::detail::require(norm.value("type", "") == "BertNormalizer", where, ": normalizer.type '",
                                   norm.value("type", ""), "' is not supported with WordPiece (BertNormalizer)");
        t.options_.normalizer.clean_text = norm.value("clean_text", true);
        t.options_.normalizer.handle_chinese_chars = norm.value("handle_chinese_chars", true);
        if (norm.contains("strip_accents") && !norm["strip_accents"].is_null())
          t.options_.normalizer.strip_accents = norm["strip_accents"].get<bool>();
        t.options_.normalizer.lowercase = norm.value("lowercase", true);
      }
      const auto& pre = j.value("pre_tokenizer", nlohmann::json());
      contaccum::detail::require(!pre.is_null() && pre.value("type", "") == "BertPreTokenizer", where,
                                 ": pre_tokenizer must be BertPreTokenizer for WordPiece");
      t.post_ = detail::read_post_processor(j.value("post_processor", nlohmann::json()), where);
      if (j.contains("padding") && j["padding"].is_object()) t.options_.pad_token = j["padding"].value("pad_token", "[PAD]");
      t.finish_load(where, detail::read_added_tokens(j.value("added_tokens", nlohmann::json()), where));
      return t;
    } catch (const nlohmann::json::exception& e) {
      throw invalid_input(contaccum::detail::cat("contaccum: ", where, ": ", e.what()));
    }
  }

  /// \brief A Hugging Face directory: tokenizer.json when present, else vocab.txt with the
  ///        casing from tokenizer_config.json (`do_lower_case`, `strip_accents`).
  static WordPiece from_pretrained(const std::filesystem::path& dir) {
    if (std::filesystem::exists(dir / "tokenizer.json")) return from_tokenizer_json(dir / "tokenizer.json");
    WordPieceOptions o;
    if (std::filesystem::exists(dir / "tokenizer_config.json")) {
      const auto c = detail::read_json_file(dir / "tokenizer_config.json");
      o.normalizer.lowercase = c.value("do_lower_case", true);
      if (c.contains("strip_accents") && c["strip_accents"].is_boolean()) o.normalizer.strip_accents = c["strip_accents"].get<bool>();
      o.normalizer.handle_chinese_chars = c.value("tokenize_chinese_chars", true);
    }
    return from_vocab_file(dir / "vocab.txt", o);
  }

  [[nodiscard]] const WordPieceOptions& options() const { return options_; }

private:
  WordPiece() = default;

  void finish_load(const std::string& where, std::vector<AddedToken> added) {
    const auto unk = vocab_.find(options_.unk_token);
    contaccum::detail::require(unk.has_value(), where, ": the unknown token '", options_.unk_token,
                               "' is not in the vocabulary");
    unk_id_ = *unk;
    if (const auto pad = vocab_.find(options_.pad_token)) pad_id_ = *pad;
    strip_accents_ = options_.normalizer.strip_accents.value_or(options_.normalizer.lowercase);
    set_added_tokens(std::move(added), where);
  }

  // BertNormalizer on code points; `out` receives the normalised text.
  void normalize_into(std::string_view raw, std::u32string& out) const {
    const auto& n = options_.normalizer;
    const std::u32string text = detail::decode_utf8(raw);
    std::u32string a;
    a.reserve(text.size());
    bool ascii = true;
    for (const char32_t c : text) {
      if (n.clean_text) {
        if (c == 0 || c == 0xFFFD || (c != '\t' && c != '\n' && c != '\r' && detail::is_other(c))) continue;
        if (detail::is_white_space(c)) {
          a.push_back(U' ');
          continue;
        }
      }
      if (n.handle_chinese_chars && is_chinese(c)) {
        a.push_back(U' ');
        a.push_back(c);
        a.push_back(U' ');
      } else {
        a.push_back(c);
      }
      ascii = ascii && c < 0x80;
    }
    if (strip_accents_ && !ascii) {
      std::u32string d = detail::normalize(a, detail::NormalForm::nfd);
      a.clear();
      for (const char32_t c : d)
        if (!detail::is_nonspacing_mark(c)) a.push_back(c);
    }
    out.clear();
    if (n.lowercase) {
      for (const char32_t c : a) detail::append_lowercase(out, c);
    } else {
      out = std::move(a);
    }
  }

  std::string normalize_text(std::string_view raw) const {
    std::u32string n;
    normalize_into(raw, n);
    return detail::encode_utf8(n);
  }

  void encode_segment(std::string_view raw, std::vector<int64_t>& out) const {
    std::u32string n;
    normalize_into(raw, n);
    pre_tokenize_and_model(n, out);
  }

  void encode_normalized(std::string_view normalized, std::vector<int64_t>& out) const {
    pre_tokenize_and_model(detail::decode_utf8(normalized), out);
  }

  // BertPreTokenizer: whitespace separates words (and is dropped), each punctuation
  // character is a word of its own. Each word goes through WordPiece.
  void pre_tokenize_and_model(const std::u32string& text, std::vector<int64_t>& out) const {
    std::string word;
    std::size_t chars = 0;
    auto flush = [&] {
      if (chars > 0) word_piece(word, chars, out);
      word.clear();
      chars = 0;
    };
    for (const char32_t c : text) {
      if (detail::is_white_space(c)) {
        flush();
      } else if (detail::is_ascii_punctuation(c) || (c >= 0x80 && detail::is_punctuation(c))) {
        flush();
        detail::append_utf8(word, c);
        chars = 1;
        flush();
      } else {
        detail::append_utf8(word, c);
        ++chars;
      }
    }
    flush();
  }

  // Greedy longest match from the left; one unmatched remainder makes the whole word [UNK].
  void word_piece(const std::string& word, std::size_t chars, std::vector<int64_t>& out) const {
    if (chars > options_.max_input_chars_per_word) {
      out.push_back(unk_id_);
      return;
    }
    const std::size_t mark = out.size();
    const std::string& prefix = options_.continuing_subword_prefix;
    std::string piece;
    std::size_t start = 0;
    const std::size_t longest = vocab_.longest_token_bytes();
    while (start < word.size()) {
      // No piece longer than the longest token can match: start there (this keeps a long
      // word linear in its length instead of quadratic, with the same result).
      const std::size_t marker = start > 0 ? prefix.size() : 0;
      const std::size_t room = longest > marker ? longest - marker : 0;
      std::size_t end = word.size() - start > room ? start + room : word.size();
      while (end > start && end < word.size() && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80) --end;
      std::optional<int64_t> found;
      while (start < end) {
        piece.clear();
        if (start > 0) piece += prefix;
        piece.append(word, start, end - start);
        if ((found = vocab_.find(piece))) break;
        do --end;  // back to the previous character boundary
        while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80);
      }
      if (!found) {
        out.resize(mark);
        out.push_back(unk_id_);
        return;
      }
      out.push_back(*found);
      start = end;
    }
  }

  static bool is_chinese(char32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
  }

  WordPieceOptions options_;
  int64_t unk_id_ = 0;
  bool strip_accents_ = true;
};

}  // namespace contaccum::tokenizers
