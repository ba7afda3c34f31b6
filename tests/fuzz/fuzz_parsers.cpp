// A mutation fuzzer for every parser of outside input, built with AddressSanitizer and
// UndefinedBehaviorSanitizer (tests/CMakeLists.txt). For each seed of the corpus
// (tests/fuzz/corpus/<kind>/<seed>/, written by make_corpus.py) it checks that the seed
// itself is accepted, then mutates one of the seed's files at a time, a fixed number of
// times from a fixed seed, and runs the parser of that kind on the result. Three outcomes
// are fine: the input is accepted (and what came out is consumed and checked), or it is
// refused with a contaccum::error whose message names the file. Anything else is a
// finding: another exception type (a library's raw error reached the user), a contaccum
// error that does not say which file, an accepted tokenizer that yields an id outside its
// vocabulary; a crash or a sanitizer report ends the run (non-zero status) by itself.
//
//   fuzz_parsers CORPUS_DIR WORK_DIR [--iterations N] [--seed S] [--kind K]
//
// Each finding's input is kept under WORK_DIR/findings/ to be replayed.
#include <contaccum/checkpoint/gpt_neox_config.hpp>
#include <contaccum/checkpoint/hf_config.hpp>
#include <contaccum/checkpoint/safetensors.hpp>
#include <contaccum/checkpoint/sentence_transformers.hpp>
#include <contaccum/data/beir.hpp>
#include <contaccum/data/dpr.hpp>
#include <contaccum/data/jsonl.hpp>
#include <contaccum/data/tsv.hpp>
#include <contaccum/error.hpp>
#include <contaccum/eval/embedding_cache.hpp>
#include <contaccum/eval/trec.hpp>
#include <contaccum/tokenizers/auto.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;
namespace ca = contaccum;

namespace {

/// splitmix64: a small, fully specified generator, so a run is the same everywhere.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(next() % n); }
};

// Byte strings that parsers of JSON, TSV, TREC and safetensors headers treat specially.
const std::array<std::string_view, 34> interesting_tokens = {
    "-1", "-2", "0", "-0", "1e308", "-1e308", "1e-320", "NaN", "Infinity", "18446744073709551615",
    "9223372036854775807", "-9223372036854775808", "4294967296", "2147483648", "40000", "1e12", "\"",
    "{", "}", "[", "]", ",", ":", "null", "true", "\\u0000", "\\ud800", "\xff", "\xc0\x80", "\xed\xa0\x80",
    "\n", "\t", "\r\n", "\xef\xbb\xbf"};

std::string_view pick_token(Rng& rng) { return interesting_tokens[rng.below(interesting_tokens.size())]; }

/// One to four edits: flip a bit, set a byte, insert or delete bytes, copy a span elsewhere,
/// truncate, swap a number for an extreme one, or (8-byte prefix) rewrite a length field.
std::string mutate(std::string bytes, Rng& rng) {
  const int edits = 1 + static_cast<int>(rng.below(4));
  for (int e = 0; e < edits; ++e) {
    const std::size_t n = bytes.size();
    const std::size_t at = rng.below(n + 1);
    switch (rng.below(9)) {
      case 0:
        if (n) bytes[rng.below(n)] ^= static_cast<char>(1u << rng.below(8));
        break;
      case 1:
        if (n) bytes[rng.below(n)] = pick_token(rng)[0];
        break;
      case 2:
        bytes.insert(at, pick_token(rng));
        break;
      case 3: {
        std::string random(1 + rng.below(8), '\0');
        for (auto& c : random) c = static_cast<char>(rng.below(256));
        bytes.insert(at, random);
        break;
      }
      case 4:
        if (at < n) bytes.erase(at, 1 + rng.below(std::min<std::size_t>(32, n - at)));
        break;
      case 5:
        if (n) {
          const auto from = rng.below(n);
          const auto len = 1 + rng.below(std::min<std::size_t>(64, n - from));
          bytes.insert(rng.below(n + 1), bytes.substr(from, len));
        }
        break;
      case 6:
        bytes.resize(rng.below(n + 1));
        break;
      case 7: {  // the k-th run of digits becomes an extreme number
        std::vector<std::pair<std::size_t, std::size_t>> runs;
        for (std::size_t i = 0; i < n;) {
          if (bytes[i] >= '0' && bytes[i] <= '9') {
            std::size_t j = i;
            while (j < n && bytes[j] >= '0' && bytes[j] <= '9') ++j;
            runs.emplace_back(i, j - i);
            i = j;
          } else {
            ++i;
          }
        }
        if (!runs.empty()) {
          const auto [pos, len] = runs[rng.below(runs.size())];
          bytes.replace(pos, len, pick_token(rng));
        }
        break;
      }
      case 8:
        if (n >= 8) {  // safetensors' little-endian header length (and any other 8-byte prefix)
          const std::array<uint64_t, 6> lengths = {0, 1, n - 8, n - 7, uint64_t{1} << 40, ~uint64_t{0}};
          uint64_t v = lengths[rng.below(lengths.size())];
          for (int b = 0; b < 8; ++b) bytes[b] = static_cast<char>((v >> (8 * b)) & 0xff);
        }
        break;
    }
  }
  return bytes;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("fuzz_parsers: cannot write " + p.string());
}

/// What the parser of a kind reads: the folder of a seed's copy, and the file it mutated.
/// It throws to refuse; it returns a finding's text (empty: fine) for an accepted input.
using Parser = std::function<std::string(const fs::path& dir)>;

std::string check_tokenizer(const ca::tokenizers::AutoTokenizer& tok) {
  const std::array<std::string_view, 4> texts = {"install a web server", "naïve CAFÉ 日本語 \t x",
                                                 "editor##or [CLS] <|endoftext|>", ""};
  for (auto text : texts) {
    for (const auto id : tok.encode(text)) {
      if (id < 0 || static_cast<std::size_t>(id) >= tok.vocab_size())
        return "an accepted tokenizer gave id " + std::to_string(id) + " for a vocabulary of " +
               std::to_string(tok.vocab_size());
      (void)tok.id_to_token(id);
    }
  }
  return {};
}

template <class Records>
std::size_t drain(Records&& records) {
  std::size_t n = 0;
  for (const auto& r : records) {
    (void)r;
    ++n;
  }
  return n;
}

std::string only_file(const fs::path& dir) {  // the single file of a one-file seed
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) return e.path().string();
  throw std::runtime_error("fuzz_parsers: empty seed folder " + dir.string());
}

const std::map<std::string, Parser>& parsers() {
  static const std::map<std::string, Parser> table = {
      {"safetensors",
       [](const fs::path& dir) {
         const fs::path f = only_file(dir);
         double sum = 0;
         for (const auto& [name, t] : ca::load_safetensors(f)) sum += t.to(torch::kDouble).sum().item<double>();
         (void)sum;
         (void)ca::load_safetensors_metadata(f);
         return std::string{};
       }},
      {"embedding_cache",
       [](const fs::path& dir) {  // the seed: 6 rows made from key "fuzz-seed" (make_corpus.py)
         const fs::path f = only_file(dir);
         const auto got = ca::load_embedding_cache(f, "fuzz-seed", 6);  // a reason, never an exception
         if (!got) throw ca::error(f.string() + " not used: " + got.why_not);
         const auto& e = got.embeddings;
         if (e.scalar_type() != torch::kFloat || e.dim() != 2 || e.size(0) != 6 || !torch::isfinite(e).all().item<bool>())
           return std::string{"accepted embeddings that are not 6 finite float32 rows"};
         return std::string{};
       }},
      {"tokenizer", [](const fs::path& dir) { return check_tokenizer(ca::tokenizers::load_tokenizer(dir)); }},
      {"bert_config",
       [](const fs::path& dir) {
         (void)ca::load_bert_config(dir / "config.json");
         return std::string{};
       }},
      {"gpt_neox_config",
       [](const fs::path& dir) {
         (void)ca::load_gpt_neox_config(dir / "config.json");
         return std::string{};
       }},
      {"sentence_transformers",
       [](const fs::path& dir) {
         (void)ca::read_sentence_transformer_config(dir);
         return std::string{};
       }},
      {"jsonl",
       [](const fs::path& dir) {
         const fs::path f = only_file(dir);
         (void)drain(ca::jsonl_examples(f, {.on_error = ca::OnError::skip}));
         (void)drain(ca::jsonl_examples(f));
         return std::string{};
       }},
      {"tsv",
       [](const fs::path& dir) {
         const fs::path f = only_file(dir);
         (void)drain(ca::tsv_examples(f, {.on_error = ca::OnError::skip}));
         (void)drain(ca::tsv_examples(f));
         return std::string{};
       }},
      {"dpr",
       [](const fs::path& dir) {
         const fs::path f = only_file(dir);
         (void)drain(ca::dpr_examples(f, {.on_error = ca::OnError::skip}));
         (void)drain(ca::dpr_examples(f));
         return std::string{};
       }},
      {"beir",
       [](const fs::path& dir) {
         (void)ca::read_beir(dir, "train", {.on_error = ca::OnError::skip});
         (void)ca::read_beir(dir, "test");
         return std::string{};
       }},
      {"trec",
       [](const fs::path& dir) {
         (void)ca::read_qrels(dir / "qrels.txt", {.on_error = ca::OnError::skip});
         (void)ca::read_qrels(dir / "qrels.txt");
         (void)ca::read_run(dir / "run.txt");
         return std::string{};
       }},
  };
  return table;
}

struct Seed {
  std::string kind, name;
  std::vector<std::pair<fs::path, std::string>> files;  // relative path, bytes
};

std::vector<Seed> read_corpus(const fs::path& corpus, const std::string& only_kind) {
  std::vector<Seed> seeds;
  for (const auto& [kind, parser] : parsers()) {
    if (!only_kind.empty() && kind != only_kind) continue;
    std::vector<fs::path> dirs;
    if (fs::is_directory(corpus / kind))
      for (const auto& e : fs::directory_iterator(corpus / kind))
        if (e.is_directory()) dirs.push_back(e.path());
    if (dirs.empty()) throw std::runtime_error("fuzz_parsers: no seed for kind '" + kind + "' in " + corpus.string());
    std::sort(dirs.begin(), dirs.end());
    for (const auto& d : dirs) {
      Seed s{kind, d.filename().string(), {}};
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(d))
        if (e.is_regular_file()) files.push_back(fs::relative(e.path(), d));
      std::sort(files.begin(), files.end());
      for (const auto& f : files) s.files.emplace_back(f, read_bytes(d / f));
      seeds.push_back(std::move(s));
    }
  }
  return seeds;
}

struct Tally {
  std::size_t accepted = 0, refused = 0, findings = 0;
};

/// Runs one input; returns the finding's text, empty when the outcome is fine.
std::string run_one(const Parser& parse, const fs::path& dir, const fs::path& mutated, bool& accepted) {
  accepted = false;
  try {
    auto finding = parse(dir);
    accepted = finding.empty();
    return finding;
  } catch (const ca::error& e) {
    const std::string what = e.what();
    if (what.find(mutated.filename().string()) == std::string::npos &&
        what.find(dir.filename().string()) == std::string::npos)
      return "contaccum error without the file's name: " + what;
    return {};
  } catch (const std::exception& e) {
    return std::string("not a contaccum error (") + typeid(e).name() + "): " + e.what();
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: fuzz_parsers CORPUS_DIR WORK_DIR [--iterations N] [--seed S] [--kind K]\n";
    return 2;
  }
  const fs::path corpus = argv[1], work = argv[2];
  long iterations = 400;
  uint64_t seed = 20261203;
  std::string only_kind;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string_view opt = argv[i];
    if (opt == "--iterations") iterations = std::stol(argv[i + 1]);
    else if (opt == "--seed") seed = std::stoull(argv[i + 1]);
    else if (opt == "--kind") only_kind = argv[i + 1];
    else {
      std::cerr << "fuzz_parsers: unknown option " << opt << "\n";
      return 2;
    }
  }
  const auto seeds = read_corpus(corpus, only_kind);
  fs::remove_all(work);
  std::map<std::string, Tally> tallies;
  std::size_t findings = 0;
  const auto start = std::chrono::steady_clock::now();
  Rng rng{seed};
  for (const auto& s : seeds) {
    const auto& parse = parsers().at(s.kind);
    const fs::path dir = work / s.kind / s.name;
    const auto write_seed = [&] {
      fs::remove_all(dir);
      for (const auto& [rel, bytes] : s.files) write_bytes(dir / rel, bytes);
    };
    write_seed();
    bool accepted = false;
    if (auto finding = run_one(parse, dir, dir / s.files.front().first, accepted); !accepted) {
      std::cout << "[fuzz_parsers] the seed " << s.kind << "/" << s.name << " itself is refused: " << finding
                << std::endl;
      return 1;
    }
    auto& tally = tallies[s.kind];
    for (long it = 0; it < iterations; ++it) {
      write_seed();
      const auto& [rel, bytes] = s.files[rng.below(s.files.size())];
      const auto mutated = mutate(bytes, rng);
      write_bytes(dir / rel, mutated);
      const auto finding = run_one(parse, dir, dir / rel, accepted);
      if (finding.empty()) {
        ++(accepted ? tally.accepted : tally.refused);
        continue;
      }
      ++tally.findings;
      const fs::path keep = work / "findings" / (s.kind + "-" + s.name + "-" + std::to_string(it));
      for (const auto& [r, b] : s.files) write_bytes(keep / r, b);
      write_bytes(keep / rel, mutated);
      if (findings++ < 40) std::cout << "[fuzz_parsers] finding: " << keep.string() << " (" << rel.string() << "): " << finding << "\n";
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const auto& [kind, t] : tallies)
    std::cout << "[fuzz_parsers] " << kind << ": " << t.accepted << " accepted, " << t.refused
              << " refused with the file named, " << t.findings << " findings\n";
  std::cout << "[fuzz_parsers] " << seeds.size() << " seeds x " << iterations << " mutations in " << seconds
            << " s: " << (findings ? std::to_string(findings) + " findings" : std::string("ok")) << std::endl;
  return findings ? 1 : 0;
}
