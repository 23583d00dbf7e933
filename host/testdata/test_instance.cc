// A tiny instance program for the host tests (not the Lever SDK): listens on
// the unix socket named by LEVEROS_LISTEN_ADDR, accepts and closes
// connections, and reports what it saw.
//
//   --env-out DIR     write every env var to DIR/<LEVEROS_INSTANCE_ID>.env
//   --say LINE        print LINE on stdout (after listening)
//   --warn LINE       print LINE on stderr (after listening)
//   --exit-now CODE   print "giving up" on stderr and exit(CODE) before listening
//   --wait-for PATH   go on with the next flags only once PATH exists (60 s at most)
//   --ignore-term     ignore SIGTERM (the host must SIGKILL after its grace)
//   --no-listen       never listen (the start must time out)
//   --term-file PATH  on SIGTERM, create PATH and exit 0
//
// Started as `test_instance --pool-fd=N` it plays a pre-started language
// runner (ProcessRuntimeOptions::prestart) as lever-serve does: writes "R" on
// fd N, reads its order there (the runtime's encoding: a 48-byte header
// {size, argc, envc, flags, limits, uid, gid, group}, then NUL-terminated
// exe, dir, argv, env), switches to the order's user if it names one, moves
// to the dir, takes that environment, prints "handed <argv[1]> in <dir> as
// <LEVEROS_INSTANCE_ID> NODE_OPTIONS=<...>", and goes on as if started with
// that argv.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern char** environ;

namespace {
const char* g_term_file = nullptr;
void OnTerm(int) {
  int fd = open(g_term_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
  _exit(0);
}
constexpr size_t kHeader = 48;  // sizeof(OrderHeader), host/src/process_runtime.cc
// The pre-started runner's hand-off: false on a bad order.
bool TakeOrder(int fd, std::vector<std::string>* args) {
  if (write(fd, "R", 1) != 1) return false;
  std::string buf;
  char chunk[4096];
  uint32_t size = 0;
  while (size == 0 || buf.size() < size) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n <= 0) return false;
    buf.append(chunk, static_cast<size_t>(n));
    if (size == 0 && buf.size() >= kHeader) std::memcpy(&size, buf.data(), 4);
  }
  close(fd);
  uint32_t argc = 0, envc = 0, flags = 0, ids[3] = {0, 0, 0};
  std::memcpy(&argc, buf.data() + 4, 4);
  std::memcpy(&envc, buf.data() + 8, 4);
  std::memcpy(&flags, buf.data() + 12, 4);
  std::memcpy(ids, buf.data() + 32, sizeof ids);
  if (flags & 8) {  // kIdentity
    gid_t group = ids[2];
    if (ids[0] == 0 || setgroups(group ? 1 : 0, &group) != 0 || setgid(ids[1]) != 0 || setuid(ids[0]) != 0) {
      return false;
    }
  }
  std::vector<std::string> strings;
  for (size_t at = kHeader; at < size && strings.size() < 2 + argc + envc;) {
    size_t nul = buf.find('\0', at);
    if (nul == std::string::npos) return false;
    strings.push_back(buf.substr(at, nul - at));
    at = nul + 1;
  }
  if (strings.size() != 2 + argc + envc || chdir(strings[1].c_str()) != 0) return false;
  clearenv();
  for (uint32_t i = 0; i < envc; ++i) putenv(strdup(strings[2 + argc + i].c_str()));
  args->assign(strings.begin() + 2, strings.begin() + 2 + argc);
  const char* id = std::getenv("LEVEROS_INSTANCE_ID");
  const char* node_options = std::getenv("NODE_OPTIONS");
  std::printf("handed %s in %s as %s NODE_OPTIONS=%s\n", argc > 1 ? strings[3].c_str() : "", strings[1].c_str(),
              id ? id : "", node_options ? node_options : "");
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> handed;
  std::vector<char*> handed_argv;
  if (argc == 2 && std::strncmp(argv[1], "--pool-fd=", 10) == 0) {
    if (!TakeOrder(std::atoi(argv[1] + 10), &handed)) {
      std::fprintf(stderr, "bad order\n");
      return 4;
    }
    for (std::string& a : handed) handed_argv.push_back(a.data());
    handed_argv.push_back(nullptr);
    argc = static_cast<int>(handed.size());
    argv = handed_argv.data();
  }
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
    } else if (a == "--wait-for") {
      std::string path = next();
      for (int tries = 0; tries < 12000 && access(path.c_str(), F_OK) != 0; ++tries) usleep(5000);
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
