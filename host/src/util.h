// Small helpers shared by host/src.
#pragma once

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

}  // namespace lever::host
