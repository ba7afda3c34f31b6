// The main job and its two companions, on the Debian package-description dataset
// (data/debian-beir: short description -> long description) with all-MiniLM-L6-v2.
//
//   retrieval [train] [--quick] [--steps N] [--out DIR] [--data DIR] [--model DIR] [--nproc N]
//       fine-tune with ContAccum at a fixed micro-batch size (the memory budget); metrics
//       before and after, log.jsonl, results.md, plots, the model exported (the default);
//       several ranks with --nproc N or under torchrun --no-python (c10d/Gloo)
//   retrieval search [--model DIR] [--limit N] [--k N] [query ...]
//       top packages for typed queries; the corpus is encoded once and cached
//   retrieval compare [--seeds N] [--steps N] [--n-local N] [--n-total N] [--quick] ...
//       GradAccum / GradCache / ContAccum / FullBatch at one memory budget, several seeds
#include "compare.hpp"
#include "job.hpp"
#include "search.hpp"
#include "train.hpp"

#include <contaccum/dist/detail/free_port.hpp>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>
#include <algorithm>

extern char** environ;

namespace {

// A free TCP port on 127.0.0.1 (the kernel picks it) for a local rendezvous.
std::vector<pid_t> g_ranks;  // the ranks a `--nproc` parent waits for
extern "C" void forward_sigterm(int sig) {
  for (const pid_t p : g_ranks) ::kill(p, sig);
}

// `--nproc N` (N > 1): runs this command as N local ranks, as torchrun --nproc_per_node N
// would (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), and returns the first
// failing rank's status. -1: no --nproc here (or this is already a rank).
int run_ranks(int argc, char** argv) {
  std::vector<std::string> args;
  int64_t nproc = 0;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--nproc") == 0) {
      contaccum::detail::require(i + 1 < argc, "--nproc needs a number");
      char* end = nullptr;
      nproc = std::strtoll(argv[i + 1], &end, 10);
      contaccum::detail::require(*end == '\0' && nproc >= 1, "--nproc: '", argv[i + 1], "' is not a positive integer");
      ++i;
      continue;
    }
    args.emplace_back(argv[i]);
  }
  if (nproc <= 1 || std::getenv("RANK") != nullptr) return -1;
  const auto port = std::to_string(contaccum::detail::free_loopback_port("--nproc"));
  std::vector<pid_t> pids;
  for (int64_t r = 0; r < nproc; ++r) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
    for (const auto& [k, v] : {std::pair<std::string, std::string>{"RANK", std::to_string(r)},
                               {"LOCAL_RANK", std::to_string(r)}, {"WORLD_SIZE", std::to_string(nproc)},
                               {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}})
      env.push_back(k + "=" + v);
    // as torchrun does, keep the ranks from oversubscribing the cores unless told otherwise
    if (std::getenv("OMP_NUM_THREADS") == nullptr)
      env.push_back("OMP_NUM_THREADS=" + std::to_string(std::max<int64_t>(1, std::thread::hardware_concurrency() / nproc)));
    std::vector<char*> cargv, cenv;
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    for (auto& e : env) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    pid_t pid = 0;
    const auto self = std::string("/proc/self/exe");
    contaccum::detail::require(posix_spawn(&pid, self.c_str(), nullptr, nullptr, cargv.data(), cenv.data()) == 0,
                               "--nproc: could not start rank ", r);
    pids.push_back(pid);
  }
  // Ctrl-C reaches every rank from the terminal (each finishes its step and checkpoints):
  // the parent ignores it and waits; a SIGTERM sent to the parent alone is passed on.
  g_ranks = pids;
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGTERM, forward_sigterm);
  int worst = 0;
  for (const auto pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (worst == 0) worst = rc;
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) try {
  if (const int rc = run_ranks(argc, argv); rc >= 0) return rc;
  const std::string mode = argc > 1 && argv[1][0] != '-' ? argv[1] : "train";
  const int first = argc > 1 && argv[1][0] != '-' ? 2 : 1;
  if (example::wants_help(argc, argv)) {
    if (mode == "train") std::cout << "usage: " << retrieval::train_usage << "\n" << retrieval::train_help;
    else if (mode == "search") std::cout << "usage: " << retrieval::search_usage << "\n";
    else if (mode == "compare") std::cout << "usage: " << retrieval::compare_usage << "\n";
    else std::cout << "usage:\n  " << retrieval::train_usage << "\n  " << retrieval::search_usage << "\n  "
                   << retrieval::compare_usage << "\n";
    return 0;
  }
  std::string command_line = "./build/examples/retrieval";
  for (int i = 1; i < argc; ++i) command_line += std::string(" ") + argv[i];
  if (mode == "train") {
    retrieval::Args args(argc, argv, first, {"--quick", "--resume", "--fresh", "--mine-negatives"});
    contaccum::detail::require(args.positional.empty(), "train takes no positional argument\nusage: ",
                               retrieval::train_usage);
    return retrieval::train(args);
  }
  if (mode == "search") {
    retrieval::Args args(argc, argv, first, {"--rebuild", "--dedupe"});
    return retrieval::search(args);
  }
  if (mode == "compare") {
    contaccum::detail::require(retrieval::world_size_from_environment() == 1,
                               "compare runs in one process for now (WORLD_SIZE is ",
                               retrieval::world_size_from_environment(), "; drop --nproc / torchrun)");
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
