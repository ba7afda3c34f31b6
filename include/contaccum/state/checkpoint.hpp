#pragma once
/// \file
/// \brief Training checkpoints: a folder per checkpoint, written atomically, verified on read,
///        and a run folder that keeps the last N, a `latest` pointer and the `best` one.
///
/// A checkpoint folder (`checkpoint-000120/`) holds
///   - model.safetensors      the model's parameters and buffers, by the model's names
///   - optimizer.safetensors  AdamW's moments, `<parameter>.exp_avg` / `.exp_avg_sq`
///   - state.safetensors      every other tensor (memory bank rings and score cache,
///                            generator states), by dotted key
///   - trainer_state.json     {"format": "contaccum-checkpoint", "version": 1, "step",
///                            "values": {dotted key: value}, "files": {name: {bytes,
///                            checksum}}, "checksum"}: every non-tensor value, and the size
///                            and checksum of each file (and of itself), so a truncated or
///                            altered file is caught before anything is loaded.
/// The safetensors files load in Python (`safetensors.torch.load_file`). The folder is
/// written under a temporary name, every file fsynced, then renamed: a crash at any instant
/// leaves the previous checkpoint and `latest` whole.
///
/// \code
/// contaccum::CheckpointFolder run("out/run", {.keep_last = 2, .best_metric = "nDCG@10"});
/// contaccum::StateDict s;
/// trainer.save_state(s);
/// run.save(trainer.steps_done(), s, {{"nDCG@10", 0.61}});
/// if (auto dir = run.latest()) {
///   const contaccum::Checkpoint c = contaccum::read_checkpoint(*dir);  // verified
///   trainer.load_state(c.reader());
/// }
/// \endcode

#include <contaccum/checkpoint/safetensors.hpp>
#include <contaccum/detail/error.hpp>
#include <contaccum/state/detail/files.hpp>
#include <contaccum/state/state_dict.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <csignal>
#include <cstdlib>

#include <sys/types.h>
#include <unistd.h>

namespace contaccum {

inline constexpr const char* checkpoint_format = "contaccum-checkpoint";
inline constexpr int checkpoint_format_version = 1;

namespace detail {

/// The tensor files of a checkpoint and the key prefix each one holds (stripped in the file).
struct checkpoint_file {
  const char* name;
  const char* prefix;
};
inline constexpr checkpoint_file checkpoint_files[] = {
    {"model.safetensors", "model."}, {"optimizer.safetensors", "optimizer."}, {"state.safetensors", ""}};

[[nodiscard]] inline std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "checkpoint-%06lld", static_cast<long long>(step));
  return buf;
}

/// Which file a tensor key goes to.
[[nodiscard]] inline const checkpoint_file& file_of(const std::string& key) {
  for (const auto& f : checkpoint_files)
    if (*f.prefix != '\0' && key.starts_with(f.prefix)) return f;
  return checkpoint_files[2];
}

[[noreturn]] inline void bad_checkpoint(const std::filesystem::path& dir, const std::string& what) {
  throw invalid_input(cat("contaccum: checkpoint ", dir.string(), ": ", what));
}

}  // namespace detail

/// \brief Writes `s` as the checkpoint folder `dir` (replacing one that exists), atomically.
inline void write_checkpoint(const std::filesystem::path& dir, int64_t step, const StateDict& s) {
  namespace fs = std::filesystem;
  const auto parent = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw error(detail::cat("contaccum: cannot create ", parent.string(), ": ", ec.message()));
  const auto tmp = parent / detail::cat(".tmp-", dir.filename().string(), "-", ::getpid());
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  if (ec) throw error(detail::cat("contaccum: cannot create ", tmp.string(), ": ", ec.message()));
  try {
    nlohmann::json files = nlohmann::json::object();
    for (const auto& f : detail::checkpoint_files) {
      std::map<std::string, torch::Tensor> part;
      for (const auto& [key, t] : s.tensors)
        if (&detail::file_of(key) == &f) part[key.substr(std::string(f.prefix).size())] = t;
      const auto bytes = detail::safetensors_bytes(tmp / f.name, part, {{"format", "pt"}});
      detail::write_file_synced(tmp / f.name, bytes);
      files[f.name] = {{"bytes", bytes.size()}, {"checksum", detail::hex64(detail::checksum64(bytes))}};
      detail::crash_point("checkpoint_file");
    }
    nlohmann::json doc{{"format", checkpoint_format},
                       {"version", checkpoint_format_version},
                       {"step", step},
                       {"values", s.values},
                       {"files", files}};
    doc["checksum"] = detail::hex64(detail::checksum64(doc.dump()));
    detail::write_file_synced(tmp / "trainer_state.json", doc.dump(1) + "\n");
    detail::fsync_path(tmp);
    detail::crash_point("checkpoint_rename");
    if (fs::exists(dir)) {  // the same step written again (a resumed run): swap it out
      const auto old = parent / detail::cat(".old-", dir.filename().string(), "-", ::getpid());
      fs::remove_all(old, ec);
      fs::rename(dir, old);
      fs::rename(tmp, dir);
      fs::remove_all(old, ec);
    } else {
      fs::rename(tmp, dir);
    }
    detail::fsync_path(parent);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

/// \brief A verified checkpoint: its state and the step it was written at.
struct Checkpoint {
  std::filesystem::path path;
  int64_t step = 0;
  StateDict state;
  /// \brief A reader whose errors name this checkpoint; tensors restored onto `device`.
  [[nodiscard]] StateReader reader(torch::Device device = torch::kCPU) const {
    return StateReader(state, path.string(), device);
  }
};

/// \brief Reads a checkpoint folder, verifying everything first: the format and version,
///        each file's presence, size and checksum, and each safetensors file's structure.
///        Any problem is an invalid_input naming the folder and the file.
[[nodiscard]] inline Checkpoint read_checkpoint(const std::filesystem::path& dir);

namespace detail {
[[nodiscard]] inline Checkpoint read_checkpoint_unchecked(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) detail::bad_checkpoint(dir, "not a folder");
  const auto json_path = dir / "trainer_state.json";
  if (!fs::exists(json_path))
    detail::bad_checkpoint(dir, "trainer_state.json is missing (not a contaccum checkpoint, or a partial one)");
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(detail::read_file_bytes(json_path));
  } catch (const nlohmann::json::exception& e) {
    detail::bad_checkpoint(dir, detail::cat("trainer_state.json is not valid JSON (truncated?): ", e.what()));
  }
  if (!doc.is_object() || doc.value("format", std::string{}) != checkpoint_format)
    detail::bad_checkpoint(dir, "trainer_state.json is not a contaccum checkpoint's (no \"format\": \"" +
                                    std::string(checkpoint_format) + "\")");
  if (!doc.contains("version") || !doc["version"].is_number_integer() ||
      doc["version"].get<int>() > checkpoint_format_version || doc["version"].get<int>() < 1)
    detail::bad_checkpoint(dir, detail::cat("trainer_state.json has format version ", doc.value("version", nlohmann::json()).dump(),
                                            "; this build reads version ", checkpoint_format_version));
  if (!doc.contains("checksum") || !doc["checksum"].is_string())
    detail::bad_checkpoint(dir, "trainer_state.json has no checksum");
  const auto saved_sum = doc["checksum"].get<std::string>();
  auto body = doc;
  body.erase("checksum");
  if (detail::hex64(detail::checksum64(body.dump())) != saved_sum)
    detail::bad_checkpoint(dir, "trainer_state.json is corrupt: its checksum does not match its content");
  for (const char* field : {"step", "values", "files"})
    if (!doc.contains(field)) detail::bad_checkpoint(dir, detail::cat("trainer_state.json: field '", field, "' is missing"));

  Checkpoint c{dir, doc["step"].get<int64_t>(), {}};
  c.state.values = doc["values"];
  for (const auto& f : detail::checkpoint_files) {
    const auto path = dir / f.name;
    if (!doc["files"].contains(f.name))
      detail::bad_checkpoint(dir, detail::cat("trainer_state.json does not list ", f.name));
    const auto& entry = doc["files"][f.name];
    if (!fs::exists(path)) detail::bad_checkpoint(dir, detail::cat(f.name, " is missing"));
    const auto bytes = detail::read_file_bytes(path);
    const auto expected = entry.at("bytes").get<uint64_t>();
    if (bytes.size() != expected)
      detail::bad_checkpoint(dir, detail::cat(f.name, " has ", bytes.size(), " bytes but ", expected,
                                              " were written (truncated?)"));
    if (detail::hex64(detail::checksum64(bytes)) != entry.at("checksum").get<std::string>())
      detail::bad_checkpoint(dir, detail::cat(f.name, " is corrupt: its checksum does not match what was written"));
    for (auto& [name, t] : load_safetensors(path)) c.state.tensors[std::string(f.prefix) + name] = std::move(t);
  }
  return c;
}
}  // namespace detail

[[nodiscard]] inline Checkpoint read_checkpoint(const std::filesystem::path& dir) {
  try {
    return detail::read_checkpoint_unchecked(dir);
  } catch (const nlohmann::json::exception& e) {  // a well-formed file with a malformed field
    detail::bad_checkpoint(dir, detail::cat("trainer_state.json has a malformed field: ", e.what()));
  }
}

/// \brief How a run folder keeps its checkpoints.
struct CheckpointOptions {
  int64_t keep_last = 2;      ///< checkpoints kept besides the best (0 = keep all)
  std::string best_metric;    ///< dev metric that picks `best` (empty: no best checkpoint)
  bool higher_is_better = true;
};

/// \brief The checkpoints of one run: `root/checkpoint-NNNNNN/`, `root/latest` (written
///        last, names the newest whole checkpoint) and `root/best` (JSON: checkpoint,
///        metric, value). Pruning keeps the last `keep_last`, the best and the latest.
class CheckpointFolder {
public:
  explicit CheckpointFolder(std::filesystem::path root, CheckpointOptions options = {})
      : root_(std::move(root)), options_(std::move(options)) {
    detail::require(options_.keep_last >= 0, "CheckpointOptions.keep_last must be >= 0, got ", options_.keep_last);
    recover();
  }

  [[nodiscard]] const std::filesystem::path& root() const { return root_; }

  /// \brief Writes the checkpoint of `step`, then `latest`; `metrics` (if it has the best
  ///        metric and beats the best so far) moves `best`; then prunes. Returns its folder.
  std::filesystem::path save(int64_t step, const StateDict& s, const nlohmann::json& metrics = {}) {
    const auto dir = root_ / detail::checkpoint_name(step);
    write_checkpoint(dir, step, s);
    detail::write_file_atomically(root_ / "latest", dir.filename().string() + "\n");
    if (!options_.best_metric.empty() && metrics.is_object() && metrics.contains(options_.best_metric)) {
      const double v = metrics[options_.best_metric].get<double>();
      const auto best = best_record();
      const bool better = !best || (options_.higher_is_better ? v > best->value : v < best->value);
      if (better)
        detail::write_file_atomically(
            root_ / "best", nlohmann::json{{"checkpoint", dir.filename().string()}, {"metric", options_.best_metric},
                                           {"value", v}, {"step", step}}
                                    .dump() +
                                "\n");
    }
    prune();
    return dir;
  }

  /// \brief The newest whole checkpoint (`latest`), if any.
  [[nodiscard]] std::optional<std::filesystem::path> latest() const { return pointer("latest"); }
  /// \brief The best checkpoint by the dev metric, if any.
  [[nodiscard]] std::optional<std::filesystem::path> best() const {
    const auto b = best_record();
    if (!b) return std::nullopt;
    const auto dir = root_ / b->name;
    if (!std::filesystem::is_directory(dir))
      throw invalid_input(detail::cat("contaccum: ", (root_ / "best").string(), " names ", dir.string(),
                                      ", which does not exist"));
    return dir;
  }
  /// \brief The best metric value so far, if any.
  [[nodiscard]] std::optional<double> best_value() const {
    const auto b = best_record();
    return b ? std::optional<double>(b->value) : std::nullopt;
  }
  /// \brief Checkpoint folders present, oldest first.
  [[nodiscard]] std::vector<std::filesystem::path> list() const {
    std::vector<std::filesystem::path> v;
    if (!std::filesystem::is_directory(root_)) return v;
    for (const auto& e : std::filesystem::directory_iterator(root_))
      if (e.is_directory() && e.path().filename().string().starts_with("checkpoint-")) v.push_back(e.path());
    std::sort(v.begin(), v.end());
    return v;
  }

private:
  struct best_entry {
    std::string name;
    double value;
  };
  // Leftovers of a write that was killed (.tmp-*, .old-*, latest.tmp-*: their writer's pid
  // is in the name) are removed, unless that process still runs. A checkpoint rewritten
  // in place and killed between its two renames is put back from its .old- copy.
  void recover() const {
    namespace fs = std::filesystem;
    if (!fs::is_directory(root_)) return;
    std::error_code ec;
    const auto alive = [](const std::string& name) {
      const auto dash = name.find_last_of("-");
      if (dash == std::string::npos) return false;
      const long pid = std::strtol(name.c_str() + dash + 1, nullptr, 10);
      return pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) == 0;
    };
    std::string wanted;  // the folder `latest` names, when it is missing
    if (fs::exists(root_ / "latest")) {
      wanted = detail::read_file_bytes(root_ / "latest");
      while (!wanted.empty() && (wanted.back() == '\n' || wanted.back() == ' ')) wanted.pop_back();
      if (wanted.find('/') != std::string::npos || fs::exists(root_ / wanted)) wanted.clear();
    }
    for (const auto& e : fs::directory_iterator(root_)) {
      const auto n = e.path().filename().string();
      if (wanted.empty() || !n.starts_with(".old-checkpoint-") || alive(n)) continue;
      if (n.substr(5, n.find_last_of('-') - 5) == wanted) fs::rename(e.path(), root_ / wanted, ec);  // ".old-" NAME "-" PID
    }
    for (const auto& e : fs::directory_iterator(root_)) {
      const auto n = e.path().filename().string();
      const bool leftover = n.starts_with(".tmp-checkpoint-") || n.starts_with(".old-checkpoint-") ||
                            n.starts_with("latest.tmp-") || n.starts_with("best.tmp-");
      if (leftover && !alive(n)) fs::remove_all(e.path(), ec);
    }
  }
  [[nodiscard]] std::optional<best_entry> best_record() const {
    const auto p = root_ / "best";
    if (!std::filesystem::exists(p)) return std::nullopt;
    try {
      const auto j = nlohmann::json::parse(detail::read_file_bytes(p));
      return best_entry{j.at("checkpoint").get<std::string>(), j.at("value").get<double>()};
    } catch (const nlohmann::json::exception& e) {
      throw invalid_input(detail::cat("contaccum: ", p.string(), " is not a best-checkpoint record: ", e.what()));
    }
  }
  [[nodiscard]] std::optional<std::filesystem::path> pointer(const char* name) const {
    const auto p = root_ / name;
    if (!std::filesystem::exists(p)) return std::nullopt;
    auto text = detail::read_file_bytes(p);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (text.empty() || text.find('/') != std::string::npos || !text.starts_with("checkpoint-"))
      throw invalid_input(detail::cat("contaccum: ", p.string(), " does not name a checkpoint folder: '", text, "'"));
    const auto dir = root_ / text;
    if (!std::filesystem::is_directory(dir))
      throw invalid_input(detail::cat("contaccum: ", p.string(), " names ", dir.string(), ", which does not exist"));
    return dir;
  }
  void prune() const {
    if (options_.keep_last == 0) return;
    auto all = list();
    const auto keep_best = best_record();
    const auto keep_latest = latest();
    const auto n = static_cast<int64_t>(all.size());
    for (int64_t i = 0; i + options_.keep_last < n; ++i) {
      const auto& dir = all[static_cast<std::size_t>(i)];
      if (keep_best && dir.filename() == keep_best->name) continue;
      if (keep_latest && dir == *keep_latest) continue;
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  }

  std::filesystem::path root_;
  CheckpointOptions options_;
};

}  // namespace contaccum
