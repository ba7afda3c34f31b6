#pragma once
/// \file
/// \brief Byte-level BPE (GPT-2, GPT-NeoX/Pythia, RoBERTa) from a tokenizer.json.
///
/// Pipeline, as the tokenizers library runs it: added tokens; the normaliser (NFC/NFD/
/// NFKC/NFKD/Lowercase or a Sequence of them); the ByteLevel pre-tokenizer (optional
/// leading space, the GPT-2 split regex — Unicode classes and a lookahead, so PCRE2 runs
/// it, std::regex cannot); BPE merges by rank on the bytes of each piece; the
/// post-processor's special tokens. The byte-to-printable-character map of GPT-2 is only
/// a spelling of the vocabulary file: internally tokens are raw bytes.
///
/// \code
/// auto tok = contaccum::tokenizers::ByteLevelBpe::from_tokenizer_json("pythia-70m/tokenizer.json");
/// auto ids = tok.encode("Hello world");
/// \endcode

#include <contaccum/detail/error.hpp>
#include <contaccum/tokenizers/detail/pcre2_regex.hpp>
#include <contaccum/tokenizers/detail/pipeline.hpp>
#include <contaccum/tokenizers/detail/unicode.hpp>
#include <contaccum/tokenizers/detail/word_cache.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace contaccum::tokenizers {

namespace detail {

/// \brief GPT-2's byte -> printable code point map (printable Latin-1 bytes map to
///        themselves, the other 68 bytes to U+0100 onwards, in byte order).
inline const std::array<char32_t, 256>& byte_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) t[static_cast<std::size_t>(b)] = printable(b) ? static_cast<char32_t>(b) : next++;
    return t;
  }();
  return table;
}

/// \brief Inverse of byte_to_unicode: the bytes a vocabulary entry stands for, or nothing
///        when it contains a character outside the map (an added token's literal text).
inline std::optional<std::string> unicode_to_bytes(std::string_view token) {
  static const std::unordered_map<char32_t, unsigned char> inverse = [] {
    std::unordered_map<char32_t, unsigned char> m;
    const auto& t = byte_to_unicode();
    for (int b = 0; b < 256; ++b) m.emplace(t[static_cast<std::size_t>(b)], static_cast<unsigned char>(b));
    return m;
  }();
  std::string out;
  for (const char32_t c : decode_utf8(token)) {
    const auto it = inverse.find(c);
    if (it == inverse.end()) return std::nullopt;
    out.push_back(static_cast<char>(it->second));
  }
  return out;
}

}  // namespace detail

class ByteLevelBpe : public detail::TokenizerBase<ByteLevelBpe> {
  friend class detail::TokenizerBase<ByteLevelBpe>;

public:
  /// \brief GPT-2's split pattern (the ByteLevel pre-tokenizer's default).
  static constexpr const char* gpt2_pattern =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

  static ByteLevelBpe from_tokenizer_json(const std::filesystem::path& path) {
    const auto j = detail::read_json_file(path);
    const std::string where = path.string();
    try {
      ByteLevelBpe t;
      t.read_model(j.at("model"), where);
      t.read_normalizer(j.value("normalizer", nlohmann::json()), where);
      t.read_pre_tokenizer(j.value("pre_tokenizer", nlohmann::json()), where);
      t.post_ = detail::read_post_processor(j.value("post_processor", nlohmann::json()), where);
      auto added = detail::read_added_tokens(j.value("added_tokens", nlohmann::json()), where);
      if (j.contains("padding") && j["padding"].is_object()) t.pad_id_ = j["padding"].value("pad_id", int64_t{0});
      t.set_added_tokens(std::move(added), where);
      return t;
    } catch (const nlohmann::json::exception& e) {
      throw invalid_input(contaccum::detail::cat("contaccum: ", where, ": ", e.what()));
    }
  }

  static ByteLevelBpe from_pretrained(const std::filesystem::path& dir) {
    return from_tokenizer_json(dir / "tokenizer.json");
  }

  /// \brief Text of a sequence of ids (byte-level decoding; invalid UTF-8 is kept as bytes).
  [[nodiscard]] std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const {
    std::string out;
    for (const auto id : ids) {
      if (static_cast<std::size_t>(id) < id_bytes_.size() && id_bytes_[static_cast<std::size_t>(id)].has_value()) {
        out += *id_bytes_[static_cast<std::size_t>(id)];
        continue;
      }
      bool special = false;
      for (const auto& a : added_tokens()) special = special || (a.id == id && a.special);
      if (!(special && skip_special_tokens)) out += vocab_.token(id);
    }
    return out;
  }

private:
  ByteLevelBpe() = default;

  enum class Norm { nfc, nfd, nfkc, nfkd, lowercase };

  void read_model(const nlohmann::json& m, const std::string& where) {
    contaccum::detail::require(m.value("type", "") == "BPE", where, ": model.type is '", m.value("type", ""),
                               "', expected BPE");
    auto empty_or_null = [&](const char* key) { return !m.contains(key) || m[key].is_null() || m[key] == ""; };
    contaccum::detail::require(empty_or_null("continuing_subword_prefix") && empty_or_null("end_of_word_suffix"), where,
                               ": model.continuing_subword_prefix / end_of_word_suffix are not used by byte-level BPE");
    contaccum::detail::require(!m.contains("dropout") || m["dropout"].is_null() || m["dropout"].get<double>() == 0.0,
                               where, ": model.dropout (BPE-dropout) is not supported: encoding must be deterministic");
    contaccum::detail::require(!m.value("byte_fallback", false), where, ": model.byte_fallback is not supported");
    ignore_merges_ = m.value("ignore_merges", false);

    for (const auto& [tok, id] : m.at("vocab").items()) {
      const auto i = detail::token_id_of(id, where, "model.vocab", tok);
      vocab_.add(tok, i);
      if (static_cast<std::size_t>(i) >= id_bytes_.size()) id_bytes_.resize(static_cast<std::size_t>(i) + 1);
      if (auto bytes = detail::unicode_to_bytes(tok)) {
        bytes_to_id_.emplace(*bytes, i);
        id_bytes_[static_cast<std::size_t>(i)] = std::move(*bytes);
      }
    }
    if (m.contains("unk_token") && m["unk_token"].is_string()) {
      const auto unk = vocab_.find(m["unk_token"].get<std::string>());
      contaccum::detail::require(unk.has_value(), where, ": model.unk_token is not in model.vocab");
      unk_id_ = *unk;
    }
    byte_id_.fill(-1);
    for (int b = 0; b < 256; ++b) {
      const auto it = bytes_to_id_.find(std::string(1, static_cast<char>(b)));
      if (it != bytes_to_id_.end()) byte_id_[static_cast<std::size_t>(b)] = static_cast<int32_t>(it->second);
    }
    const auto& merges = m.at("merges");
    merges_.reserve(merges.size() * 2);
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
      std::string a, b;
      const auto& e = merges[rank];
      if (e.is_string()) {
        const auto s = e.get<std::string>();
        const auto sp = s.find(' ');
        contaccum::detail::require(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos, where,
                                   ": model.merges[", rank, "] '", s, "' is not 'left right'");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {
        contaccum::detail::require(e.is_array() && e.size() == 2, where, ": model.merges[", rank,
                                   "] must be a string 'a b' or a pair [a, b]");
        a = e[0].get<std::string>();
        b = e[1].get<std::string>();
      }
      const auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
      contaccum::detail::require(ia && ib && iab, where, ": model.merges[", rank, "] ('", a, "', '", b,
                                 "') uses a token missing from model.vocab");
      merges_.emplace(key(*ia, *ib), Merge{static_cast<int32_t>(rank), static_cast<int32_t>(*iab)});
    }
  }

  void read_normalizer(const nlohmann::json& n, const std::string& where) {
    if (n.is_null()) return;
    const std::string type = n.value("type", "");
    if (type == "Sequence") {
      for (const auto& sub : n.at("normalizers")) read_normalizer(sub, where);
    } else if (type == "NFC") { norms_.push_back(Norm::nfc); }
    else if (type == "NFD") { norms_.push_back(Norm::nfd); }
    else if (type == "NFKC") { norms_.push_back(Norm::nfkc); }
    else if (type == "NFKD") { norms_.push_back(Norm::nfkd); }
    else if (type == "Lowercase") { norms_.push_back(Norm::lowercase); }
    else {
      throw invalid_input(contaccum::detail::cat("contaccum: ", where, ": normalizer.type '", type,
                                                 "' is not supported with byte-level BPE (NFC, NFD, NFKC, NFKD, "
                                                 "Lowercase, Sequence)"));
    }
  }

  void read_pre_tokenizer(const nlohmann::json& p, const std::string& where) {
    contaccum::detail::require(!p.is_null(), where, ": pre_tokenizer is missing (byte-level BPE needs ByteLevel)");
    const std::string type = p.value("type", "");
    if (type == "ByteLevel") {
      add_prefix_space_ = p.value("add_prefix_space", true);
      if (p.value("use_regex", true)) regex_ = std::make_shared<detail::Pcre2Regex>(gpt2_pattern, where);
      return;
    }
    if (type == "Sequence") {
      const auto& list = p.at("pretokenizers");
      contaccum::detail::require(list.size() == 2 && list[0].value("type", "") == "Split" &&
                                     list[1].value("type", "") == "ByteLevel" && !list[1].value("use_regex", true),
                                 where, ": pre_tokenizer Sequence must be [Split(regex, Isolated), ByteLevel(use_regex=false)]");
      const auto& split = list[0];
      contaccum::detail::require(split.value("behavior", "") == "Isolated" && !split.value("invert", false), where,
                                 ": pre_tokenizer Split must use behavior Isolated without invert");
      const auto& pat = split.at("pattern");
      std::string pattern;
      if (pat.contains("Regex")) {
        pattern = pat["Regex"].get<std::string>();
      } else {
        // A literal string: quote it for PCRE2.
        pattern = "\\Q" + pat.at("String").get<std::string>() + "\\E";
      }
      regex_ = std::make_shared<detail::Pcre2Regex>(pattern, where);
      add_prefix_space_ = list[1].value("add_prefix_space", false);
      return;
    }
    throw invalid_input(contaccum::detail::cat("contaccum: ", where, ": pre_tokenizer.type '", type,
                                               "' is not supported with byte-level BPE (ByteLevel)"));
  }

  std::string normalize_text(std::string_view raw) const {
    if (norms_.empty()) {
      (void)detail::decode_utf8(raw);  // reject invalid UTF-8 as the other paths do
      return std::string(raw);
    }
    std::u32string s = detail::decode_utf8(raw);
    for (const auto n : norms_) {
      switch (n) {
        case Norm::nfc: s = detail::normalize(s, detail::NormalForm::nfc); break;
        case Norm::nfd: s = detail::normalize(s, detail::NormalForm::nfd); break;
        case Norm::nfkc: s = detail::normalize(s, detail::NormalForm::nfkc); break;
        case Norm::nfkd: s = detail::normalize(s, detail::NormalForm::nfkd); break;
        case Norm::lowercase: {
          std::u32string low;
          low.reserve(s.size());
          for (const char32_t c : s) detail::append_lowercase(low, c);
          s = std::move(low);
          break;
        }
      }
    }
    return detail::encode_utf8(s);
  }

  void encode_segment(std::string_view raw, std::vector<int64_t>& out) const {
    encode_normalized(normalize_text(raw), out);
  }

  void encode_normalized(std::string_view text, std::vector<int64_t>& out) const {
    std::string prefixed;
    if (add_prefix_space_ && (text.empty() || text.front() != ' ')) {
      prefixed.reserve(text.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(text);
      text = prefixed;
    }
    if (text.empty()) return;
    if (regex_) regex_->split(text, [&](std::string_view piece) { bpe(piece, out); });
    else bpe(text, out);
  }

  // BPE on the bytes of one piece: repeatedly merge the adjacent pair of lowest rank
  // (leftmost on ties) until no pair has a merge.
  void bpe(std::string_view piece, std::vector<int64_t>& out) const {
    if (ignore_merges_) {
      if (const auto it = bytes_to_id_.find(piece); it != bytes_to_id_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    if (cache_->append(piece, out)) return;
    std::vector<int32_t> sym;
    sym.reserve(piece.size());
    for (const char ch : piece) {
      const int32_t id = byte_id_[static_cast<unsigned char>(ch)];
      if (id >= 0) sym.push_back(id);
      else if (unk_id_ >= 0) sym.push_back(static_cast<int32_t>(unk_id_));
      // else: a byte missing from the vocabulary is dropped, as the reference does
    }
    while (sym.size() > 1) {
      int32_t best_rank = INT32_MAX, best_id = -1;
      std::size_t best_pos = 0;
      for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
        const auto it = merges_.find(key(sym[i], sym[i + 1]));
        if (it != merges_.end() && it->second.rank < best_rank) {
          best_rank = it->second.rank;
          best_id = it->second.id;
          best_pos = i;
        }
      }
      if (best_id < 0) break;
      sym[best_pos] = best_id;
      sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best_pos) + 1);
    }
    out.insert(out.end(), sym.begin(), sym.end());
    cache_->insert(piece, std::move(sym));
  }

  static uint64_t key(int64_t a, int64_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

  struct Merge {
    int32_t rank;
    int32_t id;
  };
  std::unordered_map<uint64_t, Merge> merges_;
  detail::TokenMap bytes_to_id_;
  std::vector<std::optional<std::string>> id_bytes_;
  std::array<int32_t, 256> byte_id_{};
  std::vector<Norm> norms_;
  std::shared_ptr<detail::Pcre2Regex> regex_;
  bool add_prefix_space_ = false;
  bool ignore_merges_ = false;
  int64_t unk_id_ = -1;
  std::shared_ptr<detail::WordCache> cache_ = std::make_shared<detail::WordCache>();  // pieces already merged
};

}  // namespace contaccum::tokenizers
