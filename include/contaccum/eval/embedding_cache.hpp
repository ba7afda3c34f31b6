#pragma once
/// \file
/// \brief A corpus's embeddings cached on disk between searches: one safetensors file with
///        an (N, H) float32 tensor, the key of what it was computed from (model, corpus,
///        limits: the caller's string) and a checksum of its bytes. Loading checks all of
///        it, so a damaged file (flipped bytes, a zeroed or copied-over row, another dtype,
///        a cut file) is never searched: the caller is told why and encodes again.
///
/// ```cpp
/// auto cached = contaccum::load_embedding_cache(file, key, corpus.size());
/// if (!cached) {                                   // cached.why_not says why
///   docs = contaccum::embed_texts(...);
///   contaccum::save_embedding_cache(file, docs, key);
/// }
/// ```

#include <contaccum/checkpoint/safetensors.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/state/detail/files.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

namespace contaccum {

/// \brief What load_embedding_cache found: the embeddings, or why the file is not usable.
struct EmbeddingCacheLoad {
  torch::Tensor embeddings;  // (N, H) float32 on the CPU; undefined when not usable
  std::string why_not;       // empty when usable: "none cached yet", "its checksum does not match ..."
  explicit operator bool() const { return why_not.empty(); }
};

namespace detail {
inline constexpr std::string_view embedding_cache_format = "contaccum-embedding-cache";

/// 16 hex digits of checksum64 over the tensor's bytes (contiguous, on the CPU).
[[nodiscard]] inline std::string embeddings_checksum(const torch::Tensor& embeddings) {
  const auto c = embeddings.to(torch::kCPU).contiguous();
  return hex64(checksum64(std::string_view(static_cast<const char*>(c.data_ptr()), c.nbytes())));
}
}  // namespace detail

/// \brief Writes `embeddings` (N, H), float32, with `key` and their checksum, atomically
///        (a reader sees the old cache or the new one; a full disk is an error naming the file).
inline void save_embedding_cache(const std::filesystem::path& file, const torch::Tensor& embeddings,
                                 std::string_view key) {
  detail::require(embeddings.defined() && embeddings.dim() == 2 && embeddings.scalar_type() == torch::kFloat,
                  "save_embedding_cache(", file.string(), "): expected an (N, H) float32 tensor, got ",
                  embeddings.defined() ? embeddings.sizes() : c10::IntArrayRef{});
  const auto rows = embeddings.to(torch::kCPU).contiguous();
  if (!file.parent_path().empty()) std::filesystem::create_directories(file.parent_path());
  save_safetensors(file, {{"embeddings", rows}},
                   {{"format", std::string(detail::embedding_cache_format)},
                    {"key", std::string(key)},
                    {"rows", std::to_string(rows.size(0))},
                    {"checksum", detail::embeddings_checksum(rows)}});
}

/// \brief Loads the cache at `file` when it is whole and was made from `key` with `rows`
///        rows; otherwise says why not (never throws for a missing, foreign or damaged
///        file: those are reasons to encode again).
[[nodiscard]] inline EmbeddingCacheLoad load_embedding_cache(const std::filesystem::path& file, std::string_view key,
                                                             int64_t rows) {
  namespace fs = std::filesystem;
  if (!fs::exists(file)) return {.why_not = "none cached yet"};
  try {
    const auto meta = load_safetensors_metadata(file);
    auto field = [&](const char* name) {
      const auto it = meta.find(name);
      return it == meta.end() ? std::string{} : it->second;
    };
    if (field("format") != detail::embedding_cache_format)
      return {.why_not = "it is not a contaccum embedding cache (no \"format\": \"contaccum-embedding-cache\")"};
    if (field("key") != key) return {.why_not = "it was made from another model, corpus or limit"};
    auto tensors = load_safetensors(file);
    const auto it = tensors.find("embeddings");
    if (tensors.size() != 1 || it == tensors.end()) return {.why_not = "it does not hold one \"embeddings\" tensor"};
    const torch::Tensor e = it->second;
    if (e.scalar_type() != torch::kFloat || e.dim() != 2)
      return {.why_not = detail::cat("its embeddings are ", e.scalar_type(), " of shape ", e.sizes(),
                                     ", not (N, H) float32")};
    if (e.size(0) != rows) return {.why_not = detail::cat("it holds ", e.size(0), " rows for ", rows, " passages")};
    if (field("checksum") != detail::embeddings_checksum(e))
      return {.why_not = "its checksum does not match its rows (the file is damaged)"};
    if (!torch::isfinite(e).all().item<bool>()) return {.why_not = "it holds NaN or infinite values"};
    return {.embeddings = e};
  } catch (const error& e) {  // unreadable: a cut file, a header that is not safetensors
    return {.why_not = detail::cat("it cannot be read (", e.what(), ")")};
  }
}

}  // namespace contaccum
