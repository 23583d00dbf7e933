#include "util.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace lever::host {

std::string RandomId(size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string out;
  out.reserve(n);
  unsigned char buf[64];
  while (out.size() < n) {
    ssize_t got = getrandom(buf, sizeof buf, 0);
    if (got <= 0) continue;
    for (ssize_t i = 0; i < got && out.size() < n; ++i) {
      if (buf[i] >= 248) continue;  // 248 = 62*4: keeps the choice uniform
      out.push_back(kAlphabet[buf[i] % 62]);
    }
  }
  return out;
}

Status ErrnoStatus(std::string_view what, int err) {
  return Status(Code::kInternal, std::string(what) + ": " + std::strerror(err));
}

namespace {
int RemoveOne(const char* path, const struct stat*, int type, struct FTW*) {
  int rc = (type == FTW_DP || type == FTW_D) ? rmdir(path) : unlink(path);
  return rc == 0 || errno == ENOENT ? 0 : -1;
}
}  // namespace

Status RemoveTree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    return errno == ENOENT ? Status::Ok() : ErrnoStatus("stat " + path, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("unlink " + path, errno);
    return Status::Ok();
  }
  if (nftw(path.c_str(), RemoveOne, 32, FTW_DEPTH | FTW_PHYS) != 0) {
    return ErrnoStatus("removing " + path, errno);
  }
  return Status::Ok();
}

Status MakeDirs(const std::string& path) {
  if (path.empty()) return Status::Ok();
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      std::string prefix = path.substr(0, i);
      if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
        return ErrnoStatus("mkdir " + prefix, errno);
      }
    }
  }
  return Status::Ok();
}

Status ReadSmallFile(const std::string& path, size_t max_bytes, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + path, errno);
  out->clear();
  char buf[8192];
  while (true) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return ErrnoStatus("read " + path, err);
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > max_bytes) {
      close(fd);
      return Status(Code::kInvalidArgument, path + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  close(fd);
  return Status::Ok();
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

ListenSocket::~ListenSocket() {
  if (fd >= 0) close(fd);
}

Status ListenUnix(const std::string& path, uid_t uid, gid_t gid, ListenSocket* out) {
  sockaddr_un sa{};
  if (path.empty() || path.size() >= sizeof sa.sun_path) {
    return InvalidArgument("socket path \"" + path + "\" is empty or too long for a unix socket");
  }
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  out->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (out->fd < 0) return ErrnoStatus("socket", errno);
  unlink(path.c_str());  // a stale socket of a leverd that crashed
  if (bind(out->fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return ErrnoStatus("bind " + path, errno);
  struct stat st;
  if ((uid != geteuid() && chown(path.c_str(), uid, gid) != 0) || stat(path.c_str(), &st) != 0 ||
      listen(out->fd, SOMAXCONN) != 0) {
    int err = errno;
    unlink(path.c_str());
    return ErrnoStatus("listening on " + path, err);
  }
  out->inode = st.st_ino;
  return Status::Ok();
}

}  // namespace lever::host
