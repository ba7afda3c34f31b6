#pragma once
/// \file
/// \brief Token <-> id tables and the single-sequence post-processor (special tokens around
///        the text), shared by the WordPiece and byte-level BPE tokenizers.

#include <contaccum/detail/error.hpp>
#include <contaccum/detail/json_file.hpp>
#include <contaccum/tokenizers/detail/added_vocabulary.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace contaccum::tokenizers::detail {

/// \brief Hash for heterogeneous lookup: find a std::string key with a string_view.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

using TokenMap = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

/// \brief Ids at or above this are refused: no real vocabulary comes near 16.7M entries
///        (the largest in use are ~256k), and an id sizes the id -> token table.
inline constexpr int64_t max_token_id = int64_t{1} << 24;

/// \brief A token id read from tokenizer.json: an integer in [0, max_token_id), else an
///        error naming the file, the field and the token.
inline int64_t token_id_of(const nlohmann::json& v, const std::string& where, const std::string& field,
                             const std::string& token) {
  const bool integer = v.is_number_integer();
  const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() < static_cast<uint64_t>(max_token_id)
                                               : integer && v.get<int64_t>() >= 0 && v.get<int64_t>() < max_token_id;
  contaccum::detail::require(integer && in_range, where, ": ", field, " gives token '", token, "' the id ", v.dump(),
                             "; a token id must be an integer in [0, ", max_token_id, ")");
  return v.get<int64_t>();
}

/// \brief token -> id and id -> token, with the added tokens on top of the model's vocabulary.
class Vocabulary {
public:
  void add(std::string token, int64_t id) {
    contaccum::detail::require(id >= 0 && id < max_token_id, "token '", token, "' has the id ", id,
                               ", outside [0, ", max_token_id, ")");
    if (static_cast<std::size_t>(id) >= by_id_.size()) by_id_.resize(static_cast<std::size_t>(id) + 1);
    longest_ = std::max(longest_, token.size());
    by_id_[static_cast<std::size_t>(id)] = token;
    by_token_[std::move(token)] = id;
  }
  [[nodiscard]] std::optional<int64_t> find(std::string_view token) const {
    const auto it = by_token_.find(token);
    if (it == by_token_.end()) return std::nullopt;
    return it->second;
  }
  [[nodiscard]] const std::string& token(int64_t id) const {
    contaccum::detail::require(id >= 0 && static_cast<std::size_t>(id) < by_id_.size(), "token id ", id,
                               " is outside the vocabulary (size ", by_id_.size(), ")");
    return by_id_[static_cast<std::size_t>(id)];
  }
  /// \brief One past the largest id (what transformers calls the vocabulary size).
  [[nodiscard]] std::size_t size() const { return by_id_.size(); }
  [[nodiscard]] const TokenMap& map() const { return by_token_; }
  /// \brief Bytes of the longest token: no longer piece can match (keeps WordPiece linear).
  [[nodiscard]] std::size_t longest_token_bytes() const { return longest_; }

private:
  std::size_t longest_ = 0;
  TokenMap by_token_;
  std::vector<std::string> by_id_;
};

/// \brief Special ids placed before and after a single sequence.
struct PostProcessor {
  std::vector<int64_t> prefix, suffix;
  [[nodiscard]] std::size_t added() const { return prefix.size() + suffix.size(); }
};

/// \brief Reads tokenizer.json's `post_processor` (TemplateProcessing, BertProcessing,
///        RobertaProcessing, ByteLevel, a Sequence of these, or null) for single sequences.
inline PostProcessor read_post_processor(const nlohmann::json& j, const std::string& where) {
  PostProcessor pp;
  if (j.is_null()) return pp;
  const std::string type = j.value("type", "");
  auto ids_of_pair = [&](const nlohmann::json& p, const char* field) {
    contaccum::detail::require(p.is_array() && p.size() == 2 && p[1].is_number_integer(), where,
                               ": post_processor.", field, " must be [token, id]");
    return p[1].get<int64_t>();
  };
  if (type == "TemplateProcessing") {
    const auto& single = j.at("single");
    const auto& specials = j.value("special_tokens", nlohmann::json::object());
    bool seen_sequence = false;
    for (const auto& item : single) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      contaccum::detail::require(item.contains("SpecialToken"), where,
                                 ": post_processor.single has an item that is neither SpecialToken nor Sequence");
      const auto name = item["SpecialToken"].at("id").get<std::string>();
      contaccum::detail::require(specials.contains(name), where, ": post_processor.special_tokens lacks '", name, "'");
      for (const auto& id : specials[name].at("ids")) (seen_sequence ? pp.suffix : pp.prefix).push_back(id.get<int64_t>());
    }
    contaccum::detail::require(seen_sequence, where, ": post_processor.single has no $A sequence");
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    pp.prefix.push_back(ids_of_pair(j.at("cls"), "cls"));
    pp.suffix.push_back(ids_of_pair(j.at("sep"), "sep"));
  } else if (type == "ByteLevel") {
    // Only trims offsets; ids are unchanged.
  } else if (type == "Sequence") {
    for (const auto& p : j.at("processors")) {
      auto sub = read_post_processor(p, where);
      pp.prefix.insert(pp.prefix.end(), sub.prefix.begin(), sub.prefix.end());
      pp.suffix.insert(pp.suffix.begin(), sub.suffix.begin(), sub.suffix.end());
    }
  } else {
    throw invalid_input(contaccum::detail::cat("contaccum: ", where, ": post_processor.type '", type,
                                               "' is not supported (TemplateProcessing, BertProcessing, "
                                               "RobertaProcessing, ByteLevel, Sequence)"));
  }
  return pp;
}

/// \brief tokenizer.json's `added_tokens`; each must carry an id and a content.
inline std::vector<AddedToken> read_added_tokens(const nlohmann::json& j, const std::string& where) {
  std::vector<AddedToken> out;
  if (j.is_null()) return out;
  contaccum::detail::require(j.is_array(), where, ": added_tokens must be an array");
  for (std::size_t i = 0; i < j.size(); ++i) {
    const auto& t = j[i];
    contaccum::detail::require(t.contains("id") && t.contains("content"), where, ": added_tokens[", i,
                               "] needs 'id' and 'content'");
    AddedToken a;
    a.content = t["content"].get<std::string>();
    a.id = token_id_of(t["id"], where, contaccum::detail::cat("added_tokens[", i, "].id"), a.content);
    a.special = t.value("special", false);
    a.single_word = t.value("single_word", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.normalized = t.value("normalized", !a.special);
    out.push_back(std::move(a));
  }
  return out;
}

/// \brief Throws invalid_input "contaccum: <path>: <parts>" when `ok` is false.
template <class... Parts>
void require_file(bool ok, const std::filesystem::path& path, Parts&&... parts) {
  if (!ok) throw invalid_input(contaccum::detail::cat("contaccum: ", path.string(), ": ", std::forward<Parts>(parts)...));
}

inline nlohmann::json read_json_file(const std::filesystem::path& path) {
  return contaccum::detail::read_json_file(path, "tokenizer file");
}

}  // namespace contaccum::tokenizers::detail
