#pragma once
/// \file
/// \brief C10dCollective: the Trainer's collective over several processes, on LibTorch's
///        own c10d (ProcessGroupGloo; rendezvous through a TCPStore), launched the way
///        torchrun launches: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
///
/// \code
/// // torchrun --no-python --nproc_per_node 2 ./my_trainer
/// using T = contaccum::Trainer<Model, contaccum::GradCache<>, contaccum::FullFineTune,
///                              contaccum::InfoNCE<>, contaccum::C10dCollective>;
/// T trainer(model, config, {}, {}, {}, contaccum::C10dCollective::from_environment());
/// auto loader = contaccum::ShardedLoader(PairLoader(...), trainer.collective());  // rank's share
/// \endcode
///
/// What it does for a step (the exact gradient of the *global* loss, DESIGN §7):
///  - `exchange` all-gathers every loss evaluation's current rows (queries, positives, hard
///    negatives, in one all-gather) and lays them out as one process holding every rank's
///    rows would: Q = [q_0; q_1; ...], D = [p_0; p_1; ...; h_0; h_1; ...], so query r*n + i
///    keeps its positive at column r*n + i and its hard negatives in its own block. Every
///    rank computes the same global loss (and enqueues the same rows: banks stay identical);
///    the gather's backward keeps this rank's slice of the gradient, which is already the
///    whole gradient for its rows, so the backward needs no communication.
///  - `reduce_gradients` sums the parameters' gradients over ranks in one all-reduce per
///    dtype (flattened), before the norm and the clip. A rank's non-finite gradient is
///    found there and the step is skipped on every rank, the error naming the rank.
///  - Every collective call starts with a small header all-gather (op number, kind, row
///    counts), so ranks that disagree (one rank at another step, other shapes) fail with a
///    sentence instead of exchanging garbage, and a dead or hung peer fails within the
///    timeout with an error naming it.
///
/// Needs gloo's headers at build time (Debian's libgloo-dev; CONTACCUM_WITH_C10D). They are
/// used for declarations only: ProcessGroupGloo holds every gloo object behind a pointer, so
/// its layout is the wheel's own, and all the code that touches gloo runs inside libtorch
/// (docs/distributed.md says why that makes the headers' 2022 snapshot safe).

#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif

#include <contaccum/detail/error.hpp>
#include <contaccum/dist/concepts.hpp>
#include <contaccum/error.hpp>
#include <contaccum/loss/loss_inputs.hpp>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace contaccum {

/// \brief Where the process group comes from. Unset fields are read from the torchrun
///        environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
struct C10dOptions {
  int64_t rank = -1;         ///< -1: $RANK
  int64_t world_size = -1;   ///< -1: $WORLD_SIZE
  std::string master_addr;   ///< "": $MASTER_ADDR, else 127.0.0.1
  int master_port = -1;      ///< -1: $MASTER_PORT, else 29500
  /// How long a collective (and the rendezvous) may wait for a peer before failing.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

namespace detail {

// gloo writes to its peers with writev, which cannot ask for MSG_NOSIGNAL: once a peer has
// died, the next write raises SIGPIPE, whose default action kills this process silently
// (exit status 141) instead of letting gloo report the dead peer. Python ignores SIGPIPE at
// start-up, which is why the same gloo works under torchrun + Python; a C++ program must do
// it itself. Only the default action is replaced: a handler the program installed stays.
inline void ignore_sigpipe() {
  struct sigaction now {};
  if (::sigaction(SIGPIPE, nullptr, &now) == 0 && now.sa_handler == SIG_DFL) std::signal(SIGPIPE, SIG_IGN);
}

inline std::optional<int64_t> env_int(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v, &end, 10);
  require(end != v && *end == '\0' && errno == 0, "environment variable ", name, "=\"", v, "\" is not an integer");
  return x;
}

/// The c10d group shared by every copy of one C10dCollective.
struct c10d_group {
  int64_t rank = 0, world = 1;
  std::chrono::milliseconds timeout{};
  std::string where;  // "127.0.0.1:29500", for messages
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  int64_t op = 0;     // collective calls so far (every rank counts the same)
  int64_t step = 0;   // the Trainer's step, for messages
  double waited = 0;  // seconds spent in collectives (waiting for slower peers included)

  [[nodiscard]] std::string peers() const {
    std::string s;
    for (int64_t r = 0; r < world; ++r)
      if (r != rank) s += cat(s.empty() ? "" : ", ", r);
    return world == 2 ? cat("peer rank ", s) : cat("one of the peer ranks ", s);
  }

  // Waits for a c10d work item; a failure becomes a sentence naming this rank and its peers.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      work->wait(timeout);
      waited += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } catch (const std::exception& e) {
      std::string why = e.what();
      if (const auto nl = why.find('\n'); nl != std::string::npos) why.resize(nl);
      throw error(cat("contaccum: rank ", rank, " of ", world, ": the ", what, " of step ", step, " (collective #", op,
                      ") failed within the ", timeout.count() / 1000.0, " s timeout: ", peers(),
                      " died, hung or left the run (", why, ")"));
    }
  }

  // All-gathers a fixed-size header (this rank's view of the call) and checks every rank
  // makes the same call. kind: 1 exchange, 2 gradient reduction, 3 agreement.
  void agree_on_call(int64_t kind, std::vector<int64_t> fields, const char* what) {
    ++op;
    constexpr int64_t width = 8;
    fields.resize(width - 2, 0);
    fields.insert(fields.begin(), {op, kind});
    auto mine = torch::tensor(fields, torch::kInt64);  // (8)
    std::vector<at::Tensor> in{mine};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int64_t r = 0; r < world; ++r) out[0].push_back(torch::empty({width}, torch::kInt64));
    wait(backend->allgather(out, in), what);
    static const char* kinds[] = {"?", "all-gather of the loss inputs", "gradient all-reduce", "agreement"};
    auto counts = [](const torch::Tensor& t) {  // the call's fields, as (a, b, ...)
      std::string s = "(";
      for (int64_t i = 2; i < t.size(0); ++i) s += cat(i > 2 ? ", " : "", t[i].item<int64_t>());
      return s + ")";
    };
    for (int64_t r = 0; r < world; ++r) {
      const auto theirs = out[0][r];
      if (torch::equal(theirs, mine)) continue;
      const auto k = theirs[1].item<int64_t>();
      throw invalid_input(cat("contaccum: rank ", rank, " of ", world, ": at step ", step, ", collective #", op,
                              " is the ", kinds[kind], " here with sizes ", counts(mine), " but rank ", r,
                              " is at collective #", theirs[0].item<int64_t>(), " (the ",
                              kinds[(k >= 1 && k <= 3) ? k : 0], ") with sizes ", counts(theirs),
                              ": every rank must run the same steps with the same shapes (equal shares of "
                              "each step, the same micro-batch size, no token budget)"));
    }
  }
};

// The differentiable all-gather: forward concatenates every rank's (rows, H) block in rank
// order; backward keeps this rank's block of the gradient. That is the whole gradient of
// its rows because every rank evaluates the same global loss on the gathered rows.
struct gather_rows_fn : public torch::autograd::Function<gather_rows_fn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor local, c10d_group* g) {
    auto x = local.contiguous();  // (rows, H)
    std::vector<at::Tensor> in{x};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int64_t r = 0; r < g->world; ++r) out[0].push_back(torch::empty_like(x));
    g->wait(g->backend->allgather(out, in), "all-gather of the loss inputs");
    ctx->saved_data["rank"] = g->rank;
    ctx->saved_data["rows"] = x.size(0);
    return torch::cat(out[0]);  // (world * rows, H)
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto rank = ctx->saved_data["rank"].toInt(), rows = ctx->saved_data["rows"].toInt();
    return {grads[0].slice(0, rank * rows, (rank + 1) * rows), torch::Tensor()};
  }
};

}  // namespace detail

/// \brief Lays out the per-rank blocks of one all-gather as one process holding every
///        rank's rows would see them: each block is [q_r (n, H); p_r (n, H); h_r (n*m, H)];
///        the result is Q = [q_0; ...; q_{W-1}], P = [p_0; ...], H = [h_0; ...]. Queries keep
///        their positive at the same index and their hard negatives in their own m-block (the
///        interleaving bug of DESIGN §8 is exactly getting this wrong).
/// \param gathered (W * (2n + n*m), H)
[[nodiscard]] inline LossInputs global_layout(const torch::Tensor& gathered, int64_t world, int64_t n,
                                             int64_t hard) {
  const int64_t block = 2 * n + hard;
  std::vector<torch::Tensor> qs, ps, hs;
  for (int64_t r = 0; r < world; ++r) {
    const auto b = gathered.slice(0, r * block, (r + 1) * block);
    qs.push_back(b.slice(0, 0, n));      // (n, H)
    ps.push_back(b.slice(0, n, 2 * n));  // (n, H)
    hs.push_back(b.slice(0, 2 * n));     // (n*m, H)
  }
  return {.queries = torch::cat(qs), .positives = torch::cat(ps), .hard_negatives = torch::cat(hs)};
}

/// \brief The multi-process collective (see the file comment). Copies share one group.
class C10dCollective {
public:
  /// \brief Joins the group described by `o` (unset fields from the torchrun environment):
  ///        rank 0 serves the TCPStore; every rank waits at most o.timeout for the others.
  explicit C10dCollective(C10dOptions o) : g_(std::make_shared<detail::c10d_group>()) {
    detail::ignore_sigpipe();
    auto& g = *g_;
    g.rank = o.rank >= 0 ? o.rank : detail::env_int("RANK").value_or(-1);
    g.world = o.world_size >= 0 ? o.world_size : detail::env_int("WORLD_SIZE").value_or(-1);
    detail::require(g.rank >= 0 && g.world >= 1,
                    "C10dCollective: no rank or world size: set C10dOptions.rank and .world_size, or launch with "
                    "torchrun (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)");
    detail::require(g.rank < g.world, "C10dCollective: rank ", g.rank, " is not below the world size ", g.world);
    std::string addr = o.master_addr;
    if (addr.empty()) addr = std::getenv("MASTER_ADDR") != nullptr ? std::getenv("MASTER_ADDR") : "127.0.0.1";
    const int64_t port = o.master_port >= 0 ? o.master_port : detail::env_int("MASTER_PORT").value_or(29500);
    detail::require(port > 0 && port < 65536, "C10dCollective: MASTER_PORT ", port, " is not a TCP port");
    detail::require(o.timeout.count() > 0, "C10dOptions.timeout must be positive");
    g.timeout = o.timeout;
    g.where = detail::cat(addr, ":", port);
    try {
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(port);
      so.isServer = g.rank == 0;
      so.numWorkers = static_cast<int>(g.world);
      so.waitWorkers = true;
      so.timeout = o.timeout;
      g.store = c10::make_intrusive<c10d::TCPStore>(addr, so);
      auto opts = c10d::ProcessGroupGloo::Options::create();
      opts->timeout = o.timeout;
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(addr));
      g.backend = c10::make_intrusive<c10d::ProcessGroupGloo>(g.store, static_cast<int>(g.rank),
                                                              static_cast<int>(g.world), opts);
    } catch (const c10::Error& e) {
      std::string why = e.what_without_backtrace();
      if (const auto nl = why.find('\n'); nl != std::string::npos) why.resize(nl);
      throw error(detail::cat("contaccum: rank ", g.rank, " of ", g.world, ": could not join the process group at ",
                              g.where, " within ", o.timeout.count() / 1000.0, " s (", why,
                              "); start every rank with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE"));
    }
  }

  /// \brief The group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
  [[nodiscard]] static C10dCollective from_environment(std::chrono::milliseconds timeout = std::chrono::minutes(5)) {
    return C10dCollective(C10dOptions{.timeout = timeout});
  }

  [[nodiscard]] int64_t world_size() const { return g_->world; }
  [[nodiscard]] int64_t rank() const { return g_->rank; }
  /// \brief The Trainer's step, for messages.
  void begin_step(int64_t step) const { g_->step = step; }
  /// \brief Seconds this rank has spent in collectives so far: the communication, and the
  ///        waiting for slower peers (the two cannot be told apart from one rank).
  [[nodiscard]] double collective_seconds() const { return g_->waited; }

  /// \brief Every rank's current rows, laid out globally, with gradient (file comment).
  ///        Rows from a rank that are not finite stop the step on every rank, naming it.
  [[nodiscard]] LossInputs exchange(const LossInputs& in) const {
    auto& g = *g_;
    const int64_t n = rows_of(in.queries), hard = rows_of(in.hard_negatives);
    detail::require(rows_of(in.positives) == n, "C10dCollective::exchange: ", n, " queries but ",
                    rows_of(in.positives), " positives");
    const int64_t h = in.queries.size(1);
    g.agree_on_call(1, {n, hard, h, static_cast<int64_t>(in.queries.scalar_type())}, "all-gather of the loss inputs");
    std::vector<torch::Tensor> parts{in.queries, in.positives};
    if (hard > 0) parts.push_back(in.hard_negatives);
    const auto local = torch::cat(parts);  // (2n + n*m, H)
    const auto gathered = detail::gather_rows_fn::apply(local, &g);  // (W * (2n + n*m), H)
    {
      torch::NoGradGuard no_grad;
      const auto bad = ~torch::isfinite(gathered.view({g.world, -1})).all(1);  // (W)
      if (bad.any().item<bool>()) {
        std::string ranks;
        for (int64_t r = 0; r < g.world; ++r)
          if (bad[r].item<bool>()) ranks += detail::cat(ranks.empty() ? "" : ", ", r);
        throw non_finite_loss(detail::cat("contaccum: step ", g.step, ": the embeddings from rank ", ranks,
                                          " are not finite; the step is skipped on every rank (no parameter was "
                                          "updated, the memory bank is unchanged)"),
                              g.step);
      }
    }
    return global_layout(gathered, g.world, n, hard);
  }

  /// \brief Sums every parameter's gradient over the ranks: one flattened all-reduce per
  ///        dtype and device. A parameter without a gradient counts as zeros (it gets one).
  ///        A rank whose own gradients are not finite makes every rank throw
  ///        non_finite_loss naming it.
  void reduce_gradients(std::vector<torch::Tensor>& params) const {
    auto& g = *g_;
    int64_t numel = 0;
    for (const auto& p : params) numel += p.numel();
    g.agree_on_call(2, {static_cast<int64_t>(params.size()), numel}, "gradient all-reduce");
    std::map<std::pair<int, std::string>, std::vector<size_t>> groups;  // (dtype, device) -> params
    for (size_t i = 0; i < params.size(); ++i)
      groups[{static_cast<int>(params[i].scalar_type()), params[i].device().str()}].push_back(i);
    bool bad_here = false, bad_somewhere = false;
    for (const auto& [key, idx] : groups) {
      std::vector<torch::Tensor> flat;
      for (auto i : idx) {
        auto& p = params[i];
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
        flat.push_back(p.grad().reshape(-1));
      }
      flat.push_back(torch::zeros({1}, flat.front().options()));  // the flag rides along
      std::vector<at::Tensor> buffer{torch::cat(flat)};          // (numel + 1), the one copy
      const bool bad = !torch::isfinite(buffer.front().slice(0, 0, -1)).all().item<bool>();
      bad_here = bad_here || bad;
      if (bad) buffer.front()[-1].fill_(1.0);
      g.wait(g.backend->allreduce(buffer), "gradient all-reduce");
      const auto& sum = buffer.front();
      bad_somewhere = bad_somewhere || sum[-1].item<double>() > 0;
      int64_t offset = 0;
      for (auto i : idx) {
        auto& grad = params[i].mutable_grad();
        const auto k = grad.numel();
        grad.copy_(sum.slice(0, offset, offset + k).view_as(grad));
        offset += k;
      }
    }
    if (bad_somewhere) {  // every rank knows, so every rank takes part in naming the culprits
      const auto flags = gather_flags(bad_here);
      std::string ranks;
      for (int64_t r = 0; r < g.world; ++r)
        if (flags[r]) ranks += detail::cat(ranks.empty() ? "" : ", ", r);
      throw non_finite_loss(detail::cat("contaccum: step ", g.step, ": the gradients of rank ", ranks,
                                        " are not finite; the step is skipped on every rank (no parameter was "
                                        "updated)"),
                            g.step);
    }
  }

  /// \brief True on every rank when `flag` is true on any (a stop request, say).
  [[nodiscard]] bool any_rank(bool flag) const {
    auto& g = *g_;
    g.agree_on_call(3, {}, "agreement");
    std::vector<at::Tensor> t{torch::full({1}, flag ? 1 : 0, torch::kInt64)};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::MAX;
    g.wait(g.backend->allreduce(t, o), "agreement");
    return t.front().item<int64_t>() > 0;
  }

  /// \brief Throws unless `t` is bit for bit the same on every rank (a debugging check:
  ///        parameters, banks). what: named in the error.
  void require_identical(const torch::Tensor& t, const std::string& what) const {
    auto& g = *g_;
    const auto bytes = t.detach().contiguous().cpu().view({-1}).view(torch::kUInt8);
    // FNV-1a over the bytes, split in two 32-bit halves so they survive an int64 all-gather
    uint64_t hsh = 1469598103934665603ULL;
    const auto* p = bytes.data_ptr<uint8_t>();
    for (int64_t i = 0; i < bytes.numel(); ++i) hsh = (hsh ^ p[i]) * 1099511628211ULL;
    g.agree_on_call(3, {t.numel()}, "agreement");
    std::vector<at::Tensor> in{torch::tensor({static_cast<int64_t>(hsh >> 32), static_cast<int64_t>(hsh & 0xffffffffULL)})};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int64_t r = 0; r < g.world; ++r) out[0].push_back(torch::empty({2}, torch::kInt64));
    g.wait(g.backend->allgather(out, in), "agreement");
    for (int64_t r = 0; r < g.world; ++r)
      if (!torch::equal(out[0][r], in.front()))
        throw error(detail::cat("contaccum: rank ", g.rank, ": ", what, " differs between rank ", g.rank, " and rank ", r,
                                " (the ranks have drifted apart)"));
  }

private:
  // Every rank's flag, in rank order.
  [[nodiscard]] std::vector<bool> gather_flags(bool flag) const {
    auto& g = *g_;
    g.agree_on_call(3, {}, "agreement");
    std::vector<at::Tensor> in{torch::full({1}, flag ? 1 : 0, torch::kInt64)};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int64_t r = 0; r < g.world; ++r) out[0].push_back(torch::empty({1}, torch::kInt64));
    g.wait(g.backend->allgather(out, in), "agreement");
    std::vector<bool> flags;
    for (const auto& t : out[0]) flags.push_back(t.item<int64_t>() != 0);
    return flags;
  }

  std::shared_ptr<detail::c10d_group> g_;
};

static_assert(MultiProcessCollective<C10dCollective>);

}  // namespace contaccum
