// Small helpers shared by host/src.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "lever/status.h"

namespace lever::host {

// `n` random characters [A-Za-z0-9] from getrandom(2).
std::string RandomId(size_t n = 32);
// Removes a tree without following symlinks. Missing path: OK.
Status RemoveTree(const std::string& path);
// mkdir -p with mode 0755.
Status MakeDirs(const std::string& path);
// Reads a whole small file (at most max_bytes).
Status ReadSmallFile(const std::string& path, size_t max_bytes, std::string* out);
// write(2) until all of `data` is written (EINTR retried); false on error (errno set).
bool WriteAll(int fd, std::string_view data);
// "path: strerror(errno)" as INTERNAL.
Status ErrnoStatus(std::string_view what, int err);

// A listening unix socket (O_CLOEXEC), closed with the object.
struct ListenSocket {
  ListenSocket() = default;
  ListenSocket(const ListenSocket&) = delete;
  ListenSocket& operator=(const ListenSocket&) = delete;
  ~ListenSocket();
  int fd = -1;
  uint64_t inode = 0;  // of the path, as bound
};
// Binds `path` (replacing a stale socket there), owned by uid:gid, and
// listens with the largest backlog.
Status ListenUnix(const std::string& path, uid_t uid, gid_t gid, ListenSocket* out);

}  // namespace lever::host
