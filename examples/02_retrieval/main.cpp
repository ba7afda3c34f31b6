// The main job and its two companions, on the Debian package-description dataset
// (data/debian-beir: short description -> long description) with all-MiniLM-L6-v2.
//
//   retrieval [train] [--quick] [--steps N] [--out DIR] [--data DIR] [--model DIR]
//       fine-tune with ContAccum at a fixed micro-batch size (the memory budget); metrics
//       before and after, log.jsonl, results.md, plots, the model exported (the default)
//   retrieval search [--model DIR] [--limit N] [--k N] [query ...]
//       top packages for typed queries; the corpus is encoded once and cached
//   retrieval compare [--seeds N] [--steps N] [--n-local N] [--n-total N] [--quick] ...
//       GradAccum / GradCache / ContAccum / FullBatch at one memory budget, several seeds
#include "compare.hpp"
#include "job.hpp"
#include "search.hpp"
#include "train.hpp"

#include <iostream>

int main(int argc, char** argv) try {
  const std::string mode = argc > 1 && argv[1][0] != '-' ? argv[1] : "train";
  const int first = argc > 1 && argv[1][0] != '-' ? 2 : 1;
  std::string command_line = "./build/examples/retrieval";
  for (int i = 1; i < argc; ++i) command_line += std::string(" ") + argv[i];
  if (mode == "train") {
    retrieval::Args args(argc, argv, first, {"--quick", "--resume", "--fresh"});
    contaccum::detail::require(args.positional.empty(), "train takes no positional argument\nusage: ",
                               retrieval::train_usage);
    return retrieval::train(args);
  }
  if (mode == "search") {
    retrieval::Args args(argc, argv, first, {"--rebuild"});
    return retrieval::search(args);
  }
  if (mode == "compare") {
    retrieval::Args args(argc, argv, first, {"--quick", "--fresh", "--report"});
    contaccum::detail::require(args.positional.empty(), "compare takes no positional argument\nusage: ",
                               retrieval::compare_usage);
    return retrieval::compare(args, command_line);
  }
  std::cerr << "unknown mode '" << mode << "'\nusage:\n  " << retrieval::train_usage << "\n  "
            << retrieval::search_usage << "\n  " << retrieval::compare_usage << "\n";
  return 2;
} catch (const std::exception& e) {
  std::cerr << "\nerror: " << e.what() << "\n";
  return 1;
}
