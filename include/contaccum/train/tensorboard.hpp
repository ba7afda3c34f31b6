#pragma once
/// \file
/// \brief TensorBoardWriter: scalar curves in a TensorBoard event file, with no
///        TensorFlow or protobuf dependency (the few Event fields are encoded by hand).
///
/// The file is a sequence of TFRecords, each holding one serialized `tensorflow.Event`:
/// first `file_version = "brain.Event:2"`, then one Event per scalar or session start.
/// Records are buffered; flush() (or the destructor) makes them visible to TensorBoard.
///
/// A resumed run writes a new file into the same folder. To drop the curves that the
/// killed run wrote past its last checkpoint, call session_start(step) as the first thing
/// of *every* run, fresh ones included (session_start(0)): TensorBoard's Python readers
/// then discard every point, of every tag, with step >= `step` that came before it. The
/// Python server's reader (plugin_event_accumulator) ignores the first START it sees in a
/// run, so a resume's START purges only if the original run wrote one too. The Rust data
/// server (`--load_fast`) ignores SessionLog: a point at step s drops the points of its
/// own tag with step >= s read before it, so it needs no START.
///
/// \code
/// contaccum::TensorBoardWriter tb("runs/bert-contaccum");
/// tb.session_start(resume_step);  // 0 for a fresh run
/// for (int64_t step = resume_step; step < steps; ++step) {
///   const auto s = trainer.step(batch);
///   tb.scalar("train/loss", s.loss, step);
///   tb.scalar("train/grad_norm_ratio", s.grad_norm_ratio, step);
///   if (step % 50 == 0) tb.flush();
/// }
/// \endcode

#include <contaccum/detail/error.hpp>
#include <contaccum/train/detail/tfrecord.hpp>

#include <unistd.h>
#include <fcntl.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace contaccum {

/// \brief Appends scalar summaries to a new TensorBoard event file in a folder.
///        Not thread-safe; movable, not copyable. Every failed write throws contaccum::error.
class TensorBoardWriter {
public:
  /// \brief Creates `dir` (and its parents) and a new file in it named
  ///        `events.out.tfevents.<unix seconds>.<hostname>.<pid>.contaccum` (".N" added
  ///        if that name is taken), and writes the file_version record.
  explicit TensorBoardWriter(std::filesystem::path dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw error(detail::cat("contaccum: cannot create the TensorBoard folder '", dir.string(), "': ", ec.message()));
    const auto base = detail::cat("events.out.tfevents.", static_cast<int64_t>(wall_time()), ".", hostname(), ".",
                                  ::getpid(), ".contaccum");
    int fd = -1;
    for (int n = 0; fd < 0; ++n) {
      file_ = dir / (n == 0 ? base : detail::cat(base, ".", n));
      fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0 && errno != EEXIST) fail("cannot create");
    }
    stream_.reset(::fdopen(fd, "wb"));
    if (!stream_) {
      const int err = errno;
      ::close(fd);
      errno = err;
      fail("cannot open");
    }
    std::string event;
    detail::append_double_field(event, 1, wall_time());
    detail::append_bytes_field(event, 3, "brain.Event:2");
    try {  // a file that cannot take its first record (a full disk) is not left behind empty
      write(event);
      flush();
    } catch (const error&) {
      stream_.reset();
      std::filesystem::remove(file_, ec);
      throw;
    }
  }

  TensorBoardWriter(TensorBoardWriter&&) noexcept = default;
  TensorBoardWriter& operator=(TensorBoardWriter&&) noexcept = default;
  /// \brief Flushes and closes; a failure here goes unreported (call flush() to see it).
  ~TensorBoardWriter() = default;

  /// \brief One point of the curve `tag`, stored as a float (simple_value).
  void scalar(const std::string& tag, double value, int64_t step) {
    std::string v;
    detail::append_bytes_field(v, 1, tag);
    detail::append_float_field(v, 2, to_float(value));
    std::string summary;
    detail::append_bytes_field(summary, 1, v);  // Summary.value (repeated)
    auto event = event_at(step);
    detail::append_bytes_field(event, 5, summary);
    write(event);
  }

  /// \brief A SessionLog START at `step`. TensorBoard uses it to purge the points with
  ///        step >= `step` read before it (from this file or earlier ones in the folder),
  ///        i.e. what a run that was killed and resumed from `step` had written past its
  ///        checkpoint. Call it first in every run (see the file comment).
  void session_start(int64_t step) {
    std::string log;
    detail::append_varint_field(log, 1, 1);  // SessionLog.status = START
    auto event = event_at(step);
    detail::append_bytes_field(event, 7, log);  // Event.session_log (6 is the deprecated log_message)
    write(event);
  }

  /// \brief Hands the buffered records to the operating system (fflush; no fsync).
  void flush() {
    if (std::fflush(live()) != 0) fail("cannot flush");
  }

  /// \brief The event file being written.
  [[nodiscard]] const std::filesystem::path& file() const noexcept { return file_; }

private:
  struct closer {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
  };

  [[nodiscard]] static double wall_time() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }

  [[nodiscard]] static std::string hostname() {
    char name[256] = {};
    if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
    return name;
  }

  // A double beyond float's range becomes +-inf (the plain conversion is undefined there).
  [[nodiscard]] static float to_float(double v) noexcept {
    constexpr double max = std::numeric_limits<float>::max();
    constexpr float inf = std::numeric_limits<float>::infinity();
    if (std::isfinite(v) && std::fabs(v) > max) return v > 0 ? inf : -inf;
    return static_cast<float>(v);
  }

  [[nodiscard]] static std::string event_at(int64_t step) {
    std::string event;
    detail::append_double_field(event, 1, wall_time());
    detail::append_varint_field(event, 2, step);
    return event;
  }

  [[noreturn]] void fail(std::string_view what) const {
    throw error(detail::cat("contaccum: ", what, " TensorBoard event file '", file_.string(), "': ", std::strerror(errno)));
  }

  std::FILE* live() const {
    if (!stream_) throw error(detail::cat("contaccum: TensorBoardWriter used after a move (file '", file_.string(), "')"));
    return stream_.get();
  }

  void write(std::string_view event) {
    const auto record = detail::tfrecord(event);
    if (std::fwrite(record.data(), 1, record.size(), live()) != record.size()) fail("cannot write to");
  }

  std::filesystem::path file_;
  std::unique_ptr<std::FILE, closer> stream_;
};

}  // namespace contaccum
