#pragma once
/// \file
/// \brief Durable file operations for checkpoints: checked writes that reach the disk
///        (write, fsync, close, each checked, errno named), atomic replacement (temporary
///        file, fsync, rename, fsync of the folder), and a fast 64-bit content checksum.

#include <contaccum/detail/error.hpp>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace contaccum::detail {

namespace fs = std::filesystem;

[[noreturn]] inline void io_failure(std::string_view what, const fs::path& p, int err) {
  throw error(cat("contaccum: ", what, " ", p.string(), " failed: ", std::strerror(err),
                  err == ENOSPC ? " (the disk is full)" : err == EROFS || err == EACCES ? " (not writable)" : ""));
}

/// \brief fsync of a file or a folder (a folder's fsync makes a rename inside it durable).
inline void fsync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_failure("opening", p, errno);
  if (::fsync(fd) != 0 && errno != EINVAL) {  // EINVAL: a file system without fsync for folders
    const int err = errno;
    ::close(fd);
    io_failure("fsync of", p, err);
  }
  ::close(fd);
}

/// \brief Test hook for crash tests: with CONTACCUM_CRASH_AT=name:n in the environment, the
///        n-th (1-based) call with this name kills the process with SIGKILL, as a real crash
///        would (no handler runs, nothing is flushed). A no-op otherwise.
inline void crash_point(std::string_view name) {
  static const char* spec = std::getenv("CONTACCUM_CRASH_AT");
  if (spec == nullptr) return;
  const std::string_view s(spec);
  const auto colon = s.rfind(':');
  if (colon == std::string_view::npos || s.substr(0, colon) != name) return;
  static long hits = 0;
  if (++hits == std::strtol(std::string(s.substr(colon + 1)).c_str(), nullptr, 10)) ::kill(::getpid(), SIGKILL);
}

/// \brief Writes `data` to `p` (created or truncated) and fsyncs it; every write, the fsync
///        and the close are checked. A failure removes the partial file and throws.
inline void write_file_synced(const fs::path& p, std::string_view data) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) io_failure("creating", p, errno);
  auto fail = [&](std::string_view what, int err) {
    ::close(fd);
    std::error_code ec;
    fs::remove(p, ec);
    io_failure(what, p, err);
  };
  std::size_t done = 0;
  while (done < data.size()) {
    const auto n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("writing", errno);
    }
    done += static_cast<std::size_t>(n);
    if (done > data.size() / 2) crash_point("write_file");
  }
  if (::fsync(fd) != 0) fail("fsync of", errno);
  if (::close(fd) != 0) {
    const int err = errno;
    std::error_code ec;
    fs::remove(p, ec);
    io_failure("closing", p, err);
  }
}

/// \brief Replaces `p` with `data` atomically: a reader sees the old file or the new one,
///        never a part (temporary file beside it, fsync, rename, fsync of the folder).
inline void write_file_atomically(const fs::path& p, std::string_view data) {
  auto tmp = p;
  tmp += cat(".tmp-", ::getpid());
  write_file_synced(tmp, data);
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw error(cat("contaccum: moving ", tmp.string(), " to ", p.string(), " failed: ", ec.message()));
  }
  fsync_path(p.parent_path().empty() ? fs::path(".") : p.parent_path());
}

/// \brief A 64-bit checksum of `bytes` (FNV-1a over 8-byte little-endian words, then the
///        tail bytes, then a final avalanche). Not cryptographic: it catches truncation and
///        flipped bits, at memory speed.
[[nodiscard]] inline uint64_t checksum64(std::string_view bytes, uint64_t h = 0xcbf29ce484222325ull) {
  constexpr uint64_t prime = 0x100000001b3ull;
  std::size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ w) * prime;
    h ^= h >> 29;
  }
  for (; i < bytes.size(); ++i) h = (h ^ static_cast<unsigned char>(bytes[i])) * prime;
  h ^= bytes.size();
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

/// \brief v as 16 lower-case hex digits (how checksums are written in manifests and caches).
[[nodiscard]] inline std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

/// \brief The whole content of a file (an error names it when it cannot be read).
[[nodiscard]] inline std::string read_file_bytes(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_failure("opening", p, errno);
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      io_failure("reading", p, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

/// \brief Checks that `dir` can take new files (an unwritable --out is refused before any work).
inline void require_writable_folder(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw error(cat("contaccum: cannot create the folder ", dir.string(), ": ", ec.message()));
  const auto probe = dir / cat(".write-test-", ::getpid());
  write_file_synced(probe, "ok\n");
  fs::remove(probe, ec);
}

}  // namespace contaccum::detail
