// A tiny instance program for the host tests (not the Lever SDK): listens on
// the unix socket named by LEVEROS_LISTEN_ADDR, accepts and closes
// connections, and reports what it saw.
//
//   --env-out DIR     write every env var to DIR/<LEVEROS_INSTANCE_ID>.env
//   --say LINE        print LINE on stdout (after listening)
//   --warn LINE       print LINE on stderr (after listening)
//   --exit-now CODE   print "giving up" on stderr and exit(CODE) before listening
//   --ignore-term     ignore SIGTERM (the host must SIGKILL after its grace)
//   --no-listen       never listen (the start must time out)
//   --term-file PATH  on SIGTERM, create PATH and exit 0
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

extern char** environ;

namespace {
const char* g_term_file = nullptr;
void OnTerm(int) {
  int fd = open(g_term_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
  _exit(0);
}
}  // namespace

int main(int argc, char** argv) {
  std::string env_out, say, warn;
  bool listen_ok = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--env-out") {
      env_out = next();
    } else if (a == "--say") {
      say = next();
    } else if (a == "--warn") {
      warn = next();
    } else if (a == "--exit-now") {
      int code = std::atoi(next().c_str());
      std::fprintf(stderr, "giving up\n");
      return code;
    } else if (a == "--ignore-term") {
      signal(SIGTERM, SIG_IGN);
    } else if (a == "--term-file") {
      static std::string path;
      path = next();
      g_term_file = path.c_str();
      signal(SIGTERM, OnTerm);
    } else if (a == "--no-listen") {
      listen_ok = false;
    }
  }
  const char* id = std::getenv("LEVEROS_INSTANCE_ID");
  if (!env_out.empty() && id) {
    std::string path = env_out + "/" + id + ".env";
    std::string tmp = path + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      for (char** e = environ; *e; ++e) std::fprintf(f, "%s\n", *e);
      char cwd[4096];
      if (getcwd(cwd, sizeof cwd)) std::fprintf(f, "CWD=%s\n", cwd);
      std::fclose(f);
      std::rename(tmp.c_str(), path.c_str());
    }
  }
  if (!listen_ok) {
    while (true) pause();
  }
  const char* addr = std::getenv("LEVEROS_LISTEN_ADDR");
  if (!addr || std::strncmp(addr, "unix:", 5) != 0) {
    std::fprintf(stderr, "no LEVEROS_LISTEN_ADDR\n");
    return 2;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", addr + 5);
  unlink(sa.sun_path);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, 64) != 0) {
    std::perror("listen");
    return 3;
  }
  if (!say.empty()) std::printf("%s\n", say.c_str());
  std::fflush(stdout);
  if (!warn.empty()) std::fprintf(stderr, "%s\n", warn.c_str());
  while (true) {
    int c = accept(fd, nullptr, nullptr);
    if (c >= 0) close(c);
  }
}
