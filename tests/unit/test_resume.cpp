// Exact resume across processes: a run of N steps equals k steps, a checkpoint, and a *new
// process* that loads it and runs the other N - k (parameters, AdamW moments, bank rings,
// score cache, generators and the loss sequence, bit for bit); SIGINT stops at a step
// boundary with a loadable checkpoint and exit status 130; a second SIGINT exits at once
// and leaves the last checkpoint whole.
//
// The child processes are this executable run as `contaccum_tests --worker ...`
// (tests/main.cpp dispatches to run_worker below).
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/child_process.hpp"
#include "support/helpers.hpp"
#include "support/tiny_trainer.hpp"

#include <contaccum/contaccum.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace contaccum;

namespace test {
namespace {

template <class S>
int worker_run(const fs::path& dir, int64_t steps, bool resume, int64_t save_every, const std::string& ready,
               int sleep_ms) {
  auto trainer = make_tiny_trainer<S>();
  auto loader = tiny_loader();
  const auto r = fit(trainer, loader,
                     {.steps = steps,
                      .out = dir,
                      .save_every = save_every,
                      .resume = resume,
                      .on_step =
                          [&](const StepStats& st) {
                            if (!ready.empty() && st.step == 1) std::ofstream(ready) << "ready\n";
                            if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
                          },
                      .progress = false});
  return r.exit_code();
}

// Runs a worker to the end; its exit status.
int run_child(const std::vector<std::string>& args) {
  std::string cmd = "'" + self_exe() + "' --worker";
  for (const auto& a : args) cmd += " '" + a + "'";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

// Starts a worker without waiting; its pid.
pid_t spawn_child(const std::vector<std::string>& args) { return spawn_self("--worker", args); }

// step -> loss of every step record in a log.jsonl; every step must appear once.
std::map<int64_t, double> step_losses(const fs::path& log) {
  std::map<int64_t, double> out;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);  // a torn or invalid line fails the test
    if (j.at("event") != "step") continue;
    const auto step = j.at("step").get<int64_t>();
    INFO("step " << step << " appears twice in " << log);
    CHECK(!out.contains(step));
    out[step] = j.at("loss").get<double>();
  }
  return out;
}

bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto ca = a.contiguous().cpu(), cb = b.contiguous().cpu();
  return ca.nbytes() == cb.nbytes() && std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0;
}

template <class S>
std::string name_of() {
  return std::string(S::name);
}

}  // namespace

int run_worker(int argc, char** argv) try {
  // --worker STRATEGY DIR STEPS [--resume] [--save-every N] [--ready FILE] [--sleep-ms N]
  if (argc < 5) {
    std::fprintf(stderr, "usage: --worker STRATEGY DIR STEPS [--resume] [--save-every N] [--ready FILE] [--sleep-ms N]\n");
    return 2;
  }
  const std::string strategy = argv[2];
  const fs::path dir = argv[3];
  const int64_t steps = std::stoll(argv[4]);
  bool resume = false;
  int64_t save_every = 0;
  std::string ready;
  int sleep_ms = 0;
  for (int i = 5; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--resume") resume = true;
    else if (a == "--save-every" && i + 1 < argc) save_every = std::stoll(argv[++i]);
    else if (a == "--ready" && i + 1 < argc) ready = argv[++i];
    else if (a == "--sleep-ms" && i + 1 < argc) sleep_ms = std::stoi(argv[++i]);
    else {
      std::fprintf(stderr, "worker: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (strategy == "GradAccum") return worker_run<GradAccum<>>(dir, steps, resume, save_every, ready, sleep_ms);
  if (strategy == "GradCache") return worker_run<GradCache<>>(dir, steps, resume, save_every, ready, sleep_ms);
  if (strategy == "ContAccum") return worker_run<ContAccum<DualBank>>(dir, steps, resume, save_every, ready, sleep_ms);
  if (strategy == "ContAccumOverGradCache")
    return worker_run<ContAccumOverGradCache<DualBank>>(dir, steps, resume, save_every, ready, sleep_ms);
  std::fprintf(stderr, "worker: unknown strategy %s\n", strategy.c_str());
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "worker: %s\n", e.what());
  return 1;
}

}  // namespace test

TEMPLATE_TEST_CASE("a run resumed in a new process continues bit for bit", "[resume][process]", GradAccum<>,
                   GradCache<>, ContAccum<DualBank>, ContAccumOverGradCache<DualBank>) {
  const auto name = test::name_of<TestType>();
  const auto dir = test::scratch_dir("contaccum_resume_" + name);
  const auto whole = dir / "whole", split = dir / "split";
  fs::remove_all(whole);
  fs::remove_all(split);
  const auto n = std::to_string(test::tiny_steps);
  REQUIRE(test::run_child({name, whole.string(), n}) == 0);             // N steps in one process
  REQUIRE(test::run_child({name, split.string(), "2"}) == 0);           // k = 2 steps, checkpoint
  REQUIRE(test::run_child({name, split.string(), n, "--resume"}) == 0);  // a new process: N - k more

  const auto a = read_checkpoint(whole / "checkpoints" / "checkpoint-000006");
  const auto b = read_checkpoint(split / "checkpoints" / "checkpoint-000006");
  CHECK(a.step == test::tiny_steps);
  CHECK(b.step == test::tiny_steps);
  REQUIRE(a.state.tensors.size() == b.state.tensors.size());
  int64_t moments = 0, banked = 0;
  for (const auto& [key, t] : a.state.tensors) {
    INFO(name << ": tensor " << key);
    REQUIRE(b.state.tensors.contains(key));
    CHECK(test::bitwise_equal(t, b.state.tensors.at(key)));
    moments += key.starts_with("optimizer.") && key.ends_with(".exp_avg_sq");
    banked += key.starts_with("strategy.bank.") && key.ends_with("storage");
  }
  CHECK(moments > 0);  // AdamW's moments are compared, not absent from both
  if constexpr (requires(TestType s) { s.bank(); }) CHECK(banked >= 2);  // query and positive rings at least
  for (const auto& [key, v] : a.state.values.items()) {
    INFO(name << ": value " << key);
    REQUIRE(b.state.values.contains(key));
    CHECK(v == b.state.values.at(key));
  }
  CHECK(a.state.values.size() == b.state.values.size());

  const auto la = test::step_losses(whole / "log.jsonl"), lb = test::step_losses(split / "log.jsonl");
  CHECK(la.size() == static_cast<std::size_t>(test::tiny_steps));
  CHECK(lb.size() == static_cast<std::size_t>(test::tiny_steps));
  CHECK(la == lb);  // the loss sequence, bit for bit (JSON doubles round-trip)
  fs::remove_all(dir);
}

TEST_CASE("SIGINT stops at a step boundary with a loadable checkpoint; a second one exits at once",
          "[resume][process][signal]") {
  const auto dir = test::scratch_dir("contaccum_sigint");
  SECTION("one SIGINT: finish the step, checkpoint, exit 130") {
    const auto run = dir / "one";
    fs::remove_all(run);
    const auto ready = dir / "one.ready";
    fs::remove(ready);
    const pid_t pid = test::spawn_child({"ContAccum", run.string(), "100000", "--ready", ready.string()});
    REQUIRE(test::wait_for_file(ready, 60));
    REQUIRE(::kill(pid, SIGINT) == 0);
    CHECK(test::wait_child(pid) == 130);
    CheckpointFolder folder(run / "checkpoints");
    const auto latest = folder.latest();
    REQUIRE(latest.has_value());
    const auto c = read_checkpoint(*latest);
    const auto losses = test::step_losses(run / "log.jsonl");
    CHECK(c.step >= 2);
    CHECK(static_cast<int64_t>(losses.size()) == c.step);  // the checkpoint is at the last logged step
    auto trainer = test::make_tiny_trainer<ContAccum<DualBank>>();
    trainer.load_state(c.reader());
    CHECK(trainer.steps_done() == c.step);
  }
  SECTION("two SIGINTs: exit at once, the last checkpoint stays whole") {
    const auto run = dir / "two";
    fs::remove_all(run);
    const auto ready = dir / "two.ready";
    fs::remove(ready);
    const pid_t pid = test::spawn_child(
        {"ContAccum", run.string(), "100000", "--save-every", "1", "--ready", ready.string(), "--sleep-ms", "300"});
    REQUIRE(test::wait_for_file(ready, 60));
    REQUIRE(::kill(pid, SIGINT) == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    REQUIRE(::kill(pid, SIGINT) == 0);
    CHECK(test::wait_child(pid) == 130);
    const auto latest = CheckpointFolder(run / "checkpoints").latest();
    REQUIRE(latest.has_value());
    const auto c = read_checkpoint(*latest);  // verified: sizes and checksums of every file
    auto trainer = test::make_tiny_trainer<ContAccum<DualBank>>();
    trainer.load_state(c.reader());
    CHECK(trainer.steps_done() == c.step);
    CHECK(c.step >= 1);
  }
  fs::remove_all(dir);
}
