#pragma once
/// \file
/// \brief A TCP port on 127.0.0.1 that is free now, for a local rendezvous (MASTER_PORT
///        of ranks spawned on one machine). POSIX sockets only; no c10d needed.

#include <contaccum/detail/error.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace contaccum::detail {

/// \brief Binds port 0 on the loopback address and returns the port the kernel chose; the
///        socket is closed again, so the port stays free for the rendezvous store to take.
///        Throws invalid_input naming `who` when no socket can be bound.
[[nodiscard]] inline int free_loopback_port(std::string_view who) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  require(fd >= 0, who, ": cannot open a TCP socket for the ranks' rendezvous: ", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  const int err = errno;
  ::close(fd);
  require(ok, who, ": no free TCP port on 127.0.0.1 for the ranks' rendezvous: ", std::strerror(err));
  return ntohs(a.sin_port);
}

}  // namespace contaccum::detail
