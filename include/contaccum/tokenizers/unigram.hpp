#pragma once
/// \file
/// \brief SentencePiece's Unigram tokenizer (XLM-RoBERTa, mT5, mBART, ...) from a
///        tokenizer.json, id for id with the tokenizers library.
///
/// Pipeline, as the tokenizers library runs it: added tokens; the normaliser chain
/// (SentencePiece's Precompiled rules, Strip, Replace, NFKC, ...); the Metaspace
/// pre-tokenizer (spaces become U+2581 "▁", one is prepended, and the text splits before
/// each ▁), optionally after WhitespaceSplit; then per piece the Viterbi segmentation of
/// highest total log-probability over the vocabulary, a run of characters no piece covers
/// becoming one unknown token (or its bytes' <0xXX> pieces with byte_fallback); the
/// post-processor's special tokens (<s> ... </s>).
///
/// \code
/// auto tok = contaccum::tokenizers::Unigram::from_tokenizer_json("xlm-roberta-base/tokenizer.json");
/// auto ids = tok.encode("Hallo Welt");
/// \endcode

#include <contaccum/detail/error.hpp>
#include <contaccum/tokenizers/detail/json_float.hpp>
#include <contaccum/tokenizers/detail/normalizers.hpp>
#include <contaccum/tokenizers/detail/pipeline.hpp>
#include <contaccum/tokenizers/detail/unicode.hpp>
#include <contaccum/tokenizers/detail/word_cache.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum::tokenizers {

class Unigram : public detail::TokenizerBase<Unigram> {
  friend class detail::TokenizerBase<Unigram>;

public:
  static Unigram from_tokenizer_json(const std::filesystem::path& path) {
    const auto j = detail::read_json_file(path);
    const std::string where = path.string();
    try {
      Unigram t;
      t.read_model(j.at("model"), where);
      t.norm_ = detail::NormalizerChain(j.value("normalizer", nlohmann::json()), where);
      t.read_pre_tokenizer(j.value("pre_tokenizer", nlohmann::json()), where);
      t.post_ = detail::read_post_processor(j.value("post_processor", nlohmann::json()), where);
      auto added = detail::read_added_tokens(j.value("added_tokens", nlohmann::json()), where);
      if (j.contains("padding") && j["padding"].is_object()) {
        t.pad_id_ = j["padding"].value("pad_id", int64_t{0});
      } else if (const auto pad = t.vocab_.find("<pad>")) {
        t.pad_id_ = *pad;  // SentencePiece vocabularies name it so (XLM-R: 1)
      }
      t.set_added_tokens(std::move(added), where);
      return t;
    } catch (const nlohmann::json::exception& e) {
      throw invalid_input(contaccum::detail::cat("contaccum: ", where, ": ", e.what()));
    }
  }

  static Unigram from_pretrained(const std::filesystem::path& dir) { return from_tokenizer_json(dir / "tokenizer.json"); }

private:
  Unigram() = default;

  void read_model(const nlohmann::json& m, const std::string& where) {
    contaccum::detail::require(m.value("type", "") == "Unigram", where, ": model.type is '", m.value("type", ""),
                               "', expected Unigram");
    const auto& vocab = m.at("vocab");
    contaccum::detail::require(vocab.is_array() && !vocab.empty(), where, ": model.vocab must be a non-empty list of [piece, score]");
    scores_.reserve(vocab.size());
    double min_score = std::numeric_limits<double>::infinity();
    for (std::size_t id = 0; id < vocab.size(); ++id) {
      const auto& e = vocab[id];
      contaccum::detail::require(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_number(), where,
                                 ": model.vocab[", id, "] must be [piece, score]");
      auto piece = e[0].get<std::string>();
      const double score = detail::as_serde_json_reads(e[1].get<double>());  // as the tokenizers library reads it
      contaccum::detail::require(std::isfinite(score), where, ": model.vocab[", id, "] ('", piece,
                                 "') has a non-finite score");
      contaccum::detail::require(!piece.empty(), where, ": model.vocab[", id, "] is an empty piece");
      min_score = std::min(min_score, score);
      longest_piece_ = std::max(longest_piece_, piece.size());
      pieces_[piece] = static_cast<int64_t>(id);
      vocab_.add(std::move(piece), static_cast<int64_t>(id));
      scores_.push_back(score);
    }
    unk_score_ = min_score - 10.0;  // the tokenizers library's penalty for an unknown character
    if (m.contains("unk_id") && !m["unk_id"].is_null()) {
      const auto& u = m["unk_id"];
      contaccum::detail::require(u.is_number_integer() && u.get<int64_t>() >= 0 &&
                                     u.get<int64_t>() < static_cast<int64_t>(vocab.size()),
                                 where, ": model.unk_id ", u.dump(), " is not an index of model.vocab (",
                                 vocab.size(), " pieces)");
      unk_id_ = u.get<int64_t>();
    }
    byte_fallback_ = m.value("byte_fallback", false);
    if (byte_fallback_) {
      byte_id_.fill(-1);
      for (int b = 0; b < 256; ++b) {
        std::array<char, 8> name{};
        std::snprintf(name.data(), name.size(), "<0x%02X>", b);
        if (const auto it = pieces_.find(std::string_view(name.data())); it != pieces_.end())
          byte_id_[static_cast<std::size_t>(b)] = static_cast<int32_t>(it->second);
      }
    }
  }

  void read_metaspace(const nlohmann::json& p, const std::string& where) {
    replacement_ = p.value("replacement", std::string("\u2581"));
    contaccum::detail::require(detail::decode_utf8(replacement_).size() == 1, where,
                               ": pre_tokenizer Metaspace.replacement must be one character");
    std::string scheme;
    if (p.contains("prepend_scheme")) scheme = p["prepend_scheme"].get<std::string>();
    else scheme = p.value("add_prefix_space", true) ? "always" : "never";  // before tokenizers 0.19
    contaccum::detail::require(scheme == "always" || scheme == "never", where, ": pre_tokenizer Metaspace.prepend_scheme '",
                               scheme, "' is not supported (always, never)");
    prepend_ = scheme == "always";
    split_ = p.value("split", true);
  }

  void read_pre_tokenizer(const nlohmann::json& p, const std::string& where) {
    contaccum::detail::require(!p.is_null(), where, ": pre_tokenizer is missing (Unigram needs Metaspace)");
    const std::string type = p.value("type", "");
    if (type == "Metaspace") return read_metaspace(p, where);
    if (type == "Sequence") {
      const auto& list = p.at("pretokenizers");
      contaccum::detail::require(list.size() == 2 && list[0].value("type", "") == "WhitespaceSplit" &&
                                     list[1].value("type", "") == "Metaspace",
                                 where, ": pre_tokenizer Sequence must be [WhitespaceSplit, Metaspace]");
      whitespace_split_ = true;
      return read_metaspace(list[1], where);
    }
    throw invalid_input(contaccum::detail::cat("contaccum: ", where, ": pre_tokenizer.type '", type,
                                               "' is not supported with Unigram (Metaspace, [WhitespaceSplit, Metaspace])"));
  }

  [[nodiscard]] std::string normalize_text(std::string_view raw) const { return norm_.apply(raw); }

  void encode_segment(std::string_view raw, std::vector<int64_t>& out) const {
    encode_normalized(normalize_text(raw), out);
  }

  void encode_normalized(std::string_view text, std::vector<int64_t>& out) const {
    if (!whitespace_split_) return metaspace(text, out);
    // WhitespaceSplit: the runs between Unicode white space, each through Metaspace.
    const std::u32string cps = detail::decode_utf8(text);
    std::size_t byte = 0, start = 0;
    bool in_word = false;
    for (const char32_t c : cps) {
      const std::size_t len = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
      const bool space = detail::is_white_space(c);
      if (space && in_word) metaspace(text.substr(start, byte - start), out);
      if (!space && !in_word) start = byte;
      in_word = !space;
      byte += len;
    }
    if (in_word) metaspace(text.substr(start), out);
  }

  // Metaspace: ' ' -> ▁, ▁ prepended unless the text starts with one, then split so that
  // each piece begins at a ▁ (the first may not).
  void metaspace(std::string_view text, std::vector<int64_t>& out) const {
    if (text.empty()) return;
    std::string s;
    s.reserve(text.size() + 3 * 4);
    if (prepend_ && !text.starts_with(replacement_) && !text.starts_with(' ')) s += replacement_;
    for (const char ch : text) {
      if (ch == ' ') s += replacement_;
      else s.push_back(ch);
    }
    if (!split_) return segment(s, out);
    const std::string_view v(s);
    std::size_t begin = 0;
    for (std::size_t at = v.find(replacement_, 1); at != std::string_view::npos; at = v.find(replacement_, at + 1)) {
      if (at > begin) segment(v.substr(begin, at - begin), out);
      begin = at;
    }
    segment(v.substr(begin), out);
  }

  // One piece: the Viterbi path of highest total score (the first best one found, scanning
  // start positions left to right and ends shortest first, as the tokenizers library does).
  void segment(std::string_view piece, std::vector<int64_t>& out) const {
    if (piece.empty()) return;
    if (cache_->append(piece, out)) return;
    struct Best {
      double score = 0;
      std::size_t from = 0;
      int32_t id = -1;  // -1: unreached; -2: an unknown character
      bool reached = false;
    };
    const std::size_t n = piece.size();
    std::vector<Best> best(n + 1);
    best[0].reached = true;
    auto char_len = [&](std::size_t at) {
      const auto b = static_cast<unsigned char>(piece[at]);
      const std::size_t len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : 4;
      return std::min(len, n - at);
    };
    for (std::size_t start = 0; start < n; start += char_len(start)) {
      if (!best[start].reached) continue;
      const double here = best[start].score;
      const std::size_t first = char_len(start);
      bool single = false;
      for (std::size_t end = start + first; end <= n && end - start <= longest_piece_; end += char_len(end)) {
        if (const auto it = pieces_.find(piece.substr(start, end - start)); it != pieces_.end()) {
          const double cand = here + scores_[static_cast<std::size_t>(it->second)];
          auto& b = best[end];
          if (!b.reached || cand > b.score) b = {cand, start, static_cast<int32_t>(it->second), true};
          single = single || end - start == first;
        }
        if (end == n) break;
      }
      if (!single) {
        const double cand = here + unk_score_;
        auto& b = best[start + first];
        if (!b.reached || cand > b.score) b = {cand, start, -2, true};
      }
    }
    // Back from the end; adjacent unknown characters become one unknown token.
    std::vector<std::pair<std::size_t, int32_t>> path;  // (start, id), end first
    for (std::size_t at = n; at > 0; at = best[at].from) path.emplace_back(best[at].from, best[at].id);
    std::vector<int32_t> ids;
    std::size_t unk_end = std::string::npos;  // end of the pending unknown run
    std::size_t unk_begin = 0;
    auto flush_unknown = [&]() {
      if (unk_end == std::string::npos) return;
      push_unknown(piece.substr(unk_begin, unk_end - unk_begin), ids);
      unk_end = std::string::npos;
    };
    for (auto it = path.rbegin(); it != path.rend(); ++it) {
      const std::size_t start = it->first;
      const std::size_t end = (it + 1 == path.rend()) ? n : (it + 1)->first;
      if (it->second == -2) {
        if (unk_end == std::string::npos) unk_begin = start;
        unk_end = end;
      } else {
        flush_unknown();
        ids.push_back(it->second);
      }
    }
    flush_unknown();
    out.insert(out.end(), ids.begin(), ids.end());
    cache_->insert(piece, std::move(ids));
  }

  // A run no piece covers: the run itself when it is a piece, its bytes' <0xXX> pieces
  // with byte_fallback, else the unknown token.
  void push_unknown(std::string_view run, std::vector<int32_t>& ids) const {
    if (const auto it = pieces_.find(run); it != pieces_.end()) {
      ids.push_back(static_cast<int32_t>(it->second));
      return;
    }
    if (byte_fallback_) {
      bool all = true;
      for (const char ch : run) all = all && byte_id_[static_cast<unsigned char>(ch)] >= 0;
      if (all) {
        for (const char ch : run) ids.push_back(byte_id_[static_cast<unsigned char>(ch)]);
        return;
      }
    }
    contaccum::detail::require(unk_id_ >= 0, "Unigram: the text has characters no piece covers ('", run,
                               "') and the model has no unk_id");
    ids.push_back(static_cast<int32_t>(unk_id_));
  }

  detail::TokenMap pieces_;  // the model's pieces only (not added tokens)
  std::vector<double> scores_;
  std::size_t longest_piece_ = 0;
  double unk_score_ = 0;
  int64_t unk_id_ = -1;
  bool byte_fallback_ = false;
  std::array<int32_t, 256> byte_id_{};
  detail::NormalizerChain norm_;
  std::string replacement_ = "\u2581";
  bool prepend_ = true, split_ = true, whitespace_split_ = false;
  std::shared_ptr<detail::WordCache> cache_ = std::make_shared<detail::WordCache>();  // pieces already segmented
};

}  // namespace contaccum::tokenizers
