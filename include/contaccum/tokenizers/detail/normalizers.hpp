#pragma once
/// \file
/// \brief tokenizer.json's `normalizer` for the SentencePiece-style pipelines: a chain of
///        Precompiled (SentencePiece rules), NFC/NFD/NFKC/NFKD, Lowercase, Strip, Replace
///        (a string or a regex) and Prepend, or a Sequence of these, applied in order.

#include <contaccum/detail/error.hpp>
#include <contaccum/tokenizers/detail/pcre2_regex.hpp>
#include <contaccum/tokenizers/detail/precompiled_charsmap.hpp>
#include <contaccum/tokenizers/detail/unicode.hpp>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace contaccum::tokenizers::detail {

class NormalizerChain {
public:
  NormalizerChain() = default;

  /// \brief From tokenizer.json's `normalizer` (null: none); `where` names the file.
  NormalizerChain(const nlohmann::json& n, const std::string& where) { read(n, where); }

  [[nodiscard]] bool empty() const { return steps_.empty(); }

  /// \brief The normalised UTF-8 text (invalid UTF-8 is an error).
  [[nodiscard]] std::string apply(std::string_view raw) const {
    (void)decode_utf8(raw);  // reject invalid UTF-8 before any step sees it
    std::string s(raw);
    for (const auto& step : steps_) s = std::visit([&](const auto& st) { return run(st, s); }, step);
    return s;
  }

private:
  struct Form { NormalForm form; };
  struct Lower {};
  struct Strip { bool left, right; };
  struct Replace {
    std::string literal;                  // the pattern, when it is a String
    std::shared_ptr<Pcre2Regex> regex;    // when it is a Regex
    std::string content;
  };
  struct Prepend { std::string prefix; };
  using Step = std::variant<PrecompiledCharsmap, Form, Lower, Strip, Replace, Prepend>;

  void read(const nlohmann::json& n, const std::string& where) {
    if (n.is_null()) return;
    const std::string type = n.value("type", "");
    if (type == "Sequence") {
      for (const auto& sub : n.at("normalizers")) read(sub, where);
    } else if (type == "Precompiled") {
      const auto& map = n.at("precompiled_charsmap");
      if (map.is_null()) return;
      steps_.emplace_back(PrecompiledCharsmap(decode_base64(map.get<std::string>(), where + ": precompiled_charsmap"),
                                              where));
    } else if (type == "NFC") { steps_.emplace_back(Form{NormalForm::nfc}); }
    else if (type == "NFD") { steps_.emplace_back(Form{NormalForm::nfd}); }
    else if (type == "NFKC") { steps_.emplace_back(Form{NormalForm::nfkc}); }
    else if (type == "NFKD") { steps_.emplace_back(Form{NormalForm::nfkd}); }
    else if (type == "Lowercase") { steps_.emplace_back(Lower{}); }
    else if (type == "Strip") {
      steps_.emplace_back(Strip{n.value("strip_left", true), n.value("strip_right", true)});
    } else if (type == "Prepend") {
      steps_.emplace_back(Prepend{n.at("prepend").get<std::string>()});
    } else if (type == "Replace") {
      Replace r;
      r.content = n.at("content").get<std::string>();
      const auto& pat = n.at("pattern");
      if (pat.contains("Regex")) r.regex = std::make_shared<Pcre2Regex>(pat["Regex"].get<std::string>(), where);
      else r.literal = pat.at("String").get<std::string>();
      contaccum::detail::require(r.regex || !r.literal.empty(), where, ": normalizer Replace has an empty pattern");
      steps_.emplace_back(std::move(r));
    } else {
      throw invalid_input(contaccum::detail::cat("contaccum: ", where, ": normalizer.type '", type,
                                                 "' is not supported here (Precompiled, NFC, NFD, NFKC, NFKD, "
                                                 "Lowercase, Strip, Replace, Prepend, Sequence)"));
    }
  }

  static std::string run(const PrecompiledCharsmap& m, const std::string& s) { return m.apply(s); }
  static std::string run(const Form& f, const std::string& s) {
    return encode_utf8(normalize(decode_utf8(s), f.form));
  }
  static std::string run(const Lower&, const std::string& s) {
    std::u32string low;
    for (const char32_t c : decode_utf8(s)) append_lowercase(low, c);
    return encode_utf8(low);
  }
  static std::string run(const Strip& st, const std::string& s) {
    const std::u32string cps = decode_utf8(s);
    std::size_t b = 0, e = cps.size();
    if (st.left) while (b < e && is_white_space(cps[b])) ++b;
    if (st.right) while (e > b && is_white_space(cps[e - 1])) --e;
    return encode_utf8(std::u32string_view(cps).substr(b, e - b));
  }
  static std::string run(const Replace& r, const std::string& s) {
    if (r.regex) return r.regex->replace_all(s, r.content);
    std::string out;
    out.reserve(s.size());
    std::size_t at = 0;
    for (std::size_t hit = s.find(r.literal); hit != std::string::npos; hit = s.find(r.literal, at)) {
      out.append(s, at, hit - at);
      out.append(r.content);
      at = hit + r.literal.size();
    }
    out.append(s, at, std::string::npos);
    return out;
  }
  static std::string run(const Prepend& p, const std::string& s) { return s.empty() ? s : p.prefix + s; }

  std::vector<Step> steps_;
};

}  // namespace contaccum::tokenizers::detail
