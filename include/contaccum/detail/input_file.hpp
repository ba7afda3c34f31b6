#pragma once
/// \file
/// \brief Why a path cannot be read as a file, asked before a stream opens it: a folder
///        given where a file is expected opens without complaint and fails only at the
///        first read, inside the standard library ("basic_filebuf::underflow ... Is a
///        directory"), where no reader can name the file.

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace contaccum::detail {

/// \brief Empty when `p` is a file this process can open for reading; otherwise the reason,
///        worded to follow "<role> <path> cannot be opened: " ("no such file", "it is a
///        folder, not a file", or what open(2) said).
[[nodiscard]] inline std::string unreadable_file_reason(const std::filesystem::path& p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto type = fs::status(p, ec).type();
  if (type == fs::file_type::not_found) return "no such file";
  if (type == fs::file_type::directory) return "it is a folder, not a file";
  if (ec) return ec.message();
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno);
  ::close(fd);
  return {};
}

}  // namespace contaccum::detail
