#pragma once
/// \file
/// \brief The per-word cache of the subword models (BPE merges, Unigram's Viterbi): natural
///        text repeats its words, so most pieces are looked up rather than segmented.
///        Shared by copies of a tokenizer, locked, and bounded.

#include <contaccum/tokenizers/detail/vocab.hpp>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace contaccum::tokenizers::detail {

class WordCache {
public:
  static constexpr std::size_t capacity = 100000;

  /// \brief Appends the cached ids of `word` to `out`; false when it is not cached.
  bool append(std::string_view word, std::vector<int64_t>& out) const {
    std::shared_lock lock(mutex_);
    const auto it = words_.find(word);
    if (it == words_.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }

  /// \brief Remembers the ids of `word` while there is room.
  void insert(std::string_view word, std::vector<int32_t> ids) {
    std::unique_lock lock(mutex_);
    if (words_.size() < capacity) words_.emplace(std::string(word), std::move(ids));
  }

private:
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> words_;
};

}  // namespace contaccum::tokenizers::detail
