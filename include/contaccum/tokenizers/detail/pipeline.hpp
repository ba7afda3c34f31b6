#pragma once
/// \file
/// \brief The steps every tokenizer shares, in the tokenizers library's order: split off
///        added tokens in the raw text; normalise each remaining segment (and split off
///        tokens that match after normalisation); pre-tokenize and run the model (the
///        derived class); truncate; add the post-processor's special tokens.

#include <contaccum/tokenizers/concepts.hpp>
#include <contaccum/tokenizers/detail/added_vocabulary.hpp>
#include <contaccum/tokenizers/detail/vocab.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum::tokenizers::detail {

/// \brief CRTP base. `Derived` provides
///   - `void encode_segment(std::string_view raw, std::vector<int64_t>& out) const`
///     (normalise + pre-tokenize + model, fused for speed),
///   - `std::string normalize_text(std::string_view) const`,
///   - `void encode_normalized(std::string_view normalized, std::vector<int64_t>& out) const`.
template <class Derived>
class TokenizerBase {
public:
  /// \brief Ids of one text, as the Hugging Face tokenizer with the same files gives them.
  [[nodiscard]] std::vector<int64_t> encode(std::string_view text, EncodeOptions options = {}) const {
    std::vector<int64_t> content;
    content.reserve(text.size() / 3 + 4);
    std::vector<Segment> raw;
    added_.split_raw(text, raw);
    for (const auto& seg : raw) {
      if (seg.id >= 0) {
        content.push_back(seg.id);
      } else if (!added_.has_normalized()) {
        self().encode_segment(seg.text, content);
      } else {
        const std::string norm = self().normalize_text(seg.text);
        std::vector<Segment> parts;
        added_.split_normalized(norm, normalized_contents_, parts);
        for (const auto& p : parts) {
          if (p.id >= 0) content.push_back(p.id);
          else self().encode_normalized(p.text, content);
        }
      }
    }
    return finish(std::move(content), options);
  }

  /// \brief The tokens of a text (no special tokens added), for inspection.
  [[nodiscard]] std::vector<std::string> tokenize(std::string_view text) const {
    std::vector<std::string> out;
    for (const auto id : encode(text, {.add_special_tokens = false})) out.push_back(vocab_.token(id));
    return out;
  }

  [[nodiscard]] std::string id_to_token(int64_t id) const { return vocab_.token(id); }
  [[nodiscard]] std::optional<int64_t> token_to_id(std::string_view token) const { return vocab_.find(token); }
  [[nodiscard]] std::size_t vocab_size() const { return vocab_.size(); }
  /// \brief The padding id: the tokenizer's pad token when it has one, else 0 (padded
  ///        positions are masked, so the value only has to be a valid id).
  [[nodiscard]] int64_t pad_id() const { return pad_id_; }
  void set_pad_id(int64_t id) {
    contaccum::detail::require(id >= 0 && static_cast<std::size_t>(id) < vocab_.size(), "pad id ", id,
                               " is outside the vocabulary (size ", vocab_.size(), ")");
    pad_id_ = id;
  }
  /// \brief Number of ids the post-processor adds around one sequence.
  [[nodiscard]] std::size_t num_special_tokens() const { return post_.added(); }
  [[nodiscard]] const std::vector<AddedToken>& added_tokens() const { return added_.tokens(); }

protected:
  // Called by the derived loader (`where`: its file) once vocab_, post_, pad_id_ and the
  // added tokens are known: the special ids the post-processor and the padding put into
  // every sequence must be ids of the finished vocabulary.
  void set_added_tokens(std::vector<AddedToken> tokens, const std::string& where) {
    for (const auto& t : tokens) {
      contaccum::detail::require(t.id >= 0, where, ": added token '", t.content, "' has a negative id");
      if (static_cast<std::size_t>(t.id) >= vocab_.size() || vocab_.token(t.id) != t.content) vocab_.add(t.content, t.id);
    }
    const auto require_known = [&](int64_t id, const char* what) {
      contaccum::detail::require(id >= 0 && static_cast<std::size_t>(id) < vocab_.size(), where, ": ", what, " ", id,
                                 " is not an id of the vocabulary (", vocab_.size(), " ids)");
    };
    for (const auto id : post_.prefix) require_known(id, "post_processor's special token id");
    for (const auto id : post_.suffix) require_known(id, "post_processor's special token id");
    require_known(pad_id_, "padding.pad_id");
    added_ = AddedVocabulary(std::move(tokens));
    normalized_contents_.clear();
    for (const auto i : added_.normalized_indices())
      normalized_contents_.push_back(self().normalize_text(added_.tokens()[i].content));
  }

  Vocabulary vocab_;
  PostProcessor post_;
  int64_t pad_id_ = 0;

private:
  [[nodiscard]] const Derived& self() const { return static_cast<const Derived&>(*this); }

  [[nodiscard]] std::vector<int64_t> finish(std::vector<int64_t> content, const EncodeOptions& o) const {
    const std::size_t specials = o.add_special_tokens ? post_.added() : 0;
    if (o.max_length > 0) {
      contaccum::detail::require(o.max_length >= specials, "max_length ", o.max_length, " leaves no room for the ",
                                 specials, " special tokens");
      if (content.size() + specials > o.max_length) content.resize(o.max_length - specials);
    }
    if (specials == 0) return content;
    std::vector<int64_t> ids;
    ids.reserve(content.size() + specials);
    ids.insert(ids.end(), post_.prefix.begin(), post_.prefix.end());
    ids.insert(ids.end(), content.begin(), content.end());
    ids.insert(ids.end(), post_.suffix.begin(), post_.suffix.end());
    return ids;
  }

  AddedVocabulary added_;
  std::vector<std::string> normalized_contents_;
};

}  // namespace contaccum::tokenizers::detail
