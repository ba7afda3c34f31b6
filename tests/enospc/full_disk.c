/* A full disk, simulated under one folder: preloaded (LD_PRELOAD), this library makes every
 * write(2), writev(2), pwrite(2) and fwrite(3) to a file whose path starts with
 * $CONTACCUM_TEST_FULL_DISK fail with ENOSPC once $CONTACCUM_TEST_FULL_DISK_AFTER bytes (0
 * when unset) have gone to such files, as a disk with that much room left would. With
 * $CONTACCUM_TEST_FULL_DISK_MATCH set, only files whose path also contains that string count
 * (the disk fills exactly when one chosen output is written). Writes elsewhere (the
 * terminal, other folders) are untouched. The variable is read at each call,
 * so a test can fill and empty the "disk" with setenv/unsetenv. Used by the ENOSPC tests
 * (tests/CMakeLists.txt, tests/enospc/main_job_full_disk.sh). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static unsigned long long written_under_prefix = 0;

/* 1 when fd is a file under the full folder and the room is used up (errno set). */
static int disk_full_for(int fd, size_t wanted) {
  const char* prefix = getenv("CONTACCUM_TEST_FULL_DISK");
  if (prefix == NULL || prefix[0] == '\0' || fd < 0) return 0;
  char link[64], path[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return 0;
  path[n] = '\0';
  if (strncmp(path, prefix, strlen(prefix)) != 0) return 0;
  const char* match = getenv("CONTACCUM_TEST_FULL_DISK_MATCH");
  if (match != NULL && match[0] != '\0' && strstr(path + strlen(prefix), match) == NULL) return 0;
  const char* after = getenv("CONTACCUM_TEST_FULL_DISK_AFTER");
  const unsigned long long room = after ? strtoull(after, NULL, 10) : 0;
  if (written_under_prefix + wanted <= room) {
    written_under_prefix += wanted;
    return 0;
  }
  errno = ENOSPC;
  return 1;
}

ssize_t write(int fd, const void* buf, size_t count) {
  static ssize_t (*real)(int, const void*, size_t) = NULL;
  if (!real) real = (ssize_t(*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
  if (disk_full_for(fd, count)) return -1;
  return real(fd, buf, count);
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  static ssize_t (*real)(int, const void*, size_t, off_t) = NULL;
  if (!real) real = (ssize_t(*)(int, const void*, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
  if (disk_full_for(fd, count)) return -1;
  return real(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  static ssize_t (*real)(int, const struct iovec*, int) = NULL;
  if (!real) real = (ssize_t(*)(int, const struct iovec*, int))dlsym(RTLD_NEXT, "writev");
  size_t total = 0;
  for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
  if (disk_full_for(fd, total)) return -1;
  return real(fd, iov, iovcnt);
}

size_t fwrite(const void* ptr, size_t size, size_t nmemb, FILE* stream) {
  static size_t (*real)(const void*, size_t, size_t, FILE*) = NULL;
  if (!real) real = (size_t(*)(const void*, size_t, size_t, FILE*))dlsym(RTLD_NEXT, "fwrite");
  if (stream != NULL && disk_full_for(fileno(stream), size * nmemb)) return 0;
  return real(ptr, size, nmemb, stream);
}
