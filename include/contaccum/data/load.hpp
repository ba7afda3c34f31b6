#pragma once
/// \file
/// \brief One call that reads training examples from any supported format, chosen by the
///        path: a folder is BEIR (its `train` split unless told otherwise), `.json` is DPR,
///        `.jsonl` is JSONL pairs/triplets, `.tsv` is TSV triples.

#include <contaccum/data/beir.hpp>
#include <contaccum/data/dpr.hpp>
#include <contaccum/data/jsonl.hpp>
#include <contaccum/data/read_options.hpp>
#include <contaccum/data/records.hpp>
#include <contaccum/data/tsv.hpp>
#include <contaccum/detail/error.hpp>

#include <filesystem>
#include <string>

namespace contaccum {

/// \brief Every training example of a dataset, in memory, with the read's counts.
///
/// \code
/// auto [examples, stats] = contaccum::read_training_examples("data/debian-beir");
/// contaccum::PairSampler sampler(std::move(examples), {.seed = 13});
/// \endcode
[[nodiscard]] inline ReadResult<TextExample> read_training_examples(const std::filesystem::path& path,
                                                                    ReadOptions options = {},
                                                                    const std::string& beir_split = "train") {
  if (std::filesystem::is_directory(path)) {
    auto d = read_beir(path, beir_split, options);
    ReadResult<TextExample> out{beir_training_examples(d), d.qrels_stats};
    out.stats.records = out.records.size();
    out.stats.skipped += d.corpus_stats.skipped + d.queries_stats.skipped;
    return out;
  }
  const auto ext = path.extension().string();
  if (ext == ".json") return read_all(dpr_examples(path, options));
  if (ext == ".jsonl") return read_all(jsonl_examples(path, options));
  if (ext == ".tsv") return read_all(tsv_examples(path, options));
  detail::require(false, "read_training_examples: cannot tell the format of '", path.string(),
                  "' (a BEIR folder, .json for DPR, .jsonl for pairs/triplets, .tsv for triples)");
  return {};
}

}  // namespace contaccum
