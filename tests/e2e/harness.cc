#include "harness.h"

#include "lever/json.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace lever::e2e {

namespace fs = std::filesystem;

std::string LeverdPath() { return LEVER_E2E_LEVERD; }
std::string LeverPath() { return LEVER_E2E_LEVER; }
std::string TestServicePath() { return LEVER_E2E_TESTSERVICE; }
std::string HelloServicePath() { return LEVER_E2E_HELLO; }

CommandResult BuildHelloGo(const std::string& dir) {
  std::string libdir = fs::path(LeverPath()).parent_path().parent_path().string() + "/sdk/c";
  std::string pc_dir = dir + "/.pc";
  fs::create_directories(pc_dir);
  std::ofstream(pc_dir + "/lever.pc") << "libdir=" << libdir << "\nincludedir=" << LEVER_SOURCE_DIR
                                      << "/sdk/c/include\nName: lever\nDescription: liblever\nVersion: 0.2.0\n"
                                         "Libs: -L${libdir} -llever\nCflags: -I${includedir}\n";
  CommandResult build = RunCommand(
      {"/usr/bin/env", "PKG_CONFIG_PATH=" + pc_dir, "CGO_ENABLED=1", "CGO_LDFLAGS=-Wl,-rpath," + libdir,
       "PATH=/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin", "/bin/sh", "-c",
       "cd '" + std::string(LEVER_SOURCE_DIR) + "/examples/hello-go' && go build -o '" + dir + "/serve' ."},
      "", std::chrono::seconds(180));
  fs::remove_all(pc_dir);
  return build;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/lever-e2e-XXXXXX";
  char* p = mkdtemp(tmpl);
  if (!p) throw std::runtime_error("mkdtemp failed");
  path_ = p;
  // Instances of a root leverd run as another user (--instance-user): the
  // files the tests hand them (markers, logs) live in these directories.
  chmod(path_.c_str(), 0777);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

namespace {

pid_t Spawn(const std::vector<std::string>& argv, int in_fd, int out_fd, int err_fd) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    if (in_fd >= 0) dup2(in_fd, 0);
    if (out_fd >= 0) dup2(out_fd, 1);
    if (err_fd >= 0) dup2(err_fd, 2);
    // Undo signal masks inherited from test threads.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input,
                         std::chrono::milliseconds timeout) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) return {};
  pid_t pid = Spawn(argv, in[0], out[1], err[1]);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  std::thread writer([fd = in[1], input] {
    size_t off = 0;
    while (off < input.size()) {
      ssize_t n = write(fd, input.data() + off, input.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(fd);
  });
  CommandResult r;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  bool killed = false;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    if (poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  writer.join();
  r.exit_code = killed ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a condition poll, not a fixed wait
  }
  return true;
}

int64_t RssBytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

Leverd::Leverd() : Leverd(Options()) {}

Leverd::Leverd(Options options) : options_(std::move(options)) {
  if (options_.data_dir.empty()) {
    own_dir_ = std::make_unique<TempDir>();
    data_dir_ = own_dir_->path() + "/data";
  } else {
    data_dir_ = options_.data_dir;
  }
}

Leverd::~Leverd() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (reader_.joinable()) reader_.join();
}

void Leverd::Start() {
  int err[2];
  ASSERT_EQ(pipe2(err, O_CLOEXEC), 0);
  std::vector<std::string> argv = options_.exec_prefix;
  for (const std::string& a : {LeverdPath(), std::string("--listen"), options_.listen, std::string("--data-dir"),
                               data_dir_, std::string("--grace"), std::string("10s")}) {
    argv.push_back(a);
  }
  // Two workers unless the test asks for its own count.
  bool workers = false;
  for (const auto& f : options_.extra_flags) workers |= f == "--workers" || f.starts_with("--workers=");
  if (!workers) argv.insert(argv.end(), {"--workers", "2"});
  argv.insert(argv.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  pid_ = Spawn(argv, devnull, devnull, err[1]);
  close(devnull);
  close(err[1]);
  {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.clear();
  }
  if (reader_.joinable()) reader_.join();
  reader_ = std::thread([this, fd = err[0]] { ReadLogs(fd); });
  ASSERT_TRUE(WaitForLog("listening on", std::chrono::seconds(30))) << "leverd did not start";
  for (const auto& l : LogLines()) {
    size_t at = l.find("listening on ");
    if (at == std::string::npos) continue;
    std::string rest = l.substr(at + 13);
    size_t colon = rest.find(':');
    port_ = std::stoi(rest.substr(colon + 1));
  }
  ASSERT_GT(port_, 0);
}

std::string Leverd::address() const {
  std::string host = options_.listen.substr(0, options_.listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  return host + ":" + std::to_string(port_);
}

int Leverd::Stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  bool exited = WaitUntil([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
  if (!exited) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
  if (!exited) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void Leverd::ReadLogs(int fd) {
  std::string partial;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    partial.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = partial.find('\n')) != std::string::npos) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back(partial.substr(0, nl));
      partial.erase(0, nl + 1);
    }
  }
  close(fd);
}

std::vector<std::string> Leverd::LogLines() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lines_;
}

bool Leverd::WaitForLog(const std::string& needle, std::chrono::milliseconds timeout) {
  return WaitUntil(
      [&] {
        for (const auto& l : LogLines()) {
          if (l.find(needle) != std::string::npos) return true;
        }
        return false;
      },
      timeout);
}

CommandResult Leverd::Lever(const std::vector<std::string>& args, const std::string& input) const {
  // With this leverd's data dir the CLI sends its admin token (a leverd run
  // with --admin-token-required asks for it).
  std::vector<std::string> argv = {LeverPath(), "-H", address(), "--data-dir", data_dir_};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, input);
}

std::unique_ptr<Client> Leverd::NewClient() const {
  ClientOptions o;
  o.force_host = address();
  return std::make_unique<Client>(o);
}

Value Leverd::Ps() const {
  CommandResult ps = Lever({"--json", "ps", "--all"});
  Value v;
  if (ps.exit_code != 0 || !ParseJson(ps.out, &v).ok() || !v.is_map()) return Value();
  return v;
}

std::vector<Value> Leverd::Instances(const std::string& service) const {
  std::vector<Value> out;
  Value v = Ps();
  const Value* list = v.is_map() ? v.as_map().Find("instances") : nullptr;
  if (!list || !list->is_array()) return out;
  for (const Value& i : list->as_array()) {
    const Value* s = i.is_map() ? i.as_map().Find("service") : nullptr;
    if (s && *s == Value(service)) out.push_back(i);
  }
  return out;
}

int Leverd::KillInstances(const std::string& service, int sig) const {
  int n = 0;
  for (const Value& i : Instances(service)) {
    const Value* pid = i.as_map().Find("pid");
    if (pid && pid->is_int() && pid->as_int() > 0 && kill(static_cast<pid_t>(pid->as_int()), sig) == 0) ++n;
  }
  return n;
}

CommandResult Leverd::DeployTestService(const std::string& lever_json, const std::string& env) {
  auto dir = std::make_unique<TempDir>();
  std::ofstream(dir->path() + "/lever.json") << lever_json;
  fs::copy_file(TestServicePath(), dir->path() + "/serve");
  CommandResult r = Lever({"--env", env, "deploy", dir->path()});
  service_dirs_.push_back(std::move(dir));
  return r;
}

// --- RawHttp ---

int ConnectLoopback(int port, bool* ok, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  *ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

RawHttp::RawHttp(int port, int rcvbuf) { fd_ = ConnectLoopback(port, &ok_, rcvbuf); }
RawHttp::~RawHttp() { close(fd_); }

bool RawHttp::Send(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}
void RawHttp::SendChunk(std::string_view data) {
  char hex[32];
  snprintf(hex, sizeof hex, "%zx\r\n", data.size());
  Send(std::string(hex) + std::string(data) + "\r\n");
}

bool RawHttp::ReadHead(RawResponse* r) {
  size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    if (!Fill()) return false;
  }
  std::string head = buf_.substr(0, end);
  buf_.erase(0, end + 4);
  if (head.rfind("HTTP/1.1 ", 0) != 0) return false;
  r->status = std::atoi(head.c_str() + 9);
  r->headers.clear();
  size_t pos = head.find("\r\n");
  while (pos != std::string::npos) {
    size_t next = head.find("\r\n", pos + 2);
    std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(tolower(c));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value[0] == ' ') value.erase(0, 1);
      r->headers[name] = value;
    }
    pos = next;
  }
  return true;
}
bool RawHttp::ReadChunk(std::string* data) {
  size_t eol;
  while ((eol = buf_.find("\r\n")) == std::string::npos) {
    if (!Fill()) return false;
  }
  size_t n = std::strtoul(buf_.c_str(), nullptr, 16);
  buf_.erase(0, eol + 2);
  while (buf_.size() < n + 2) {
    if (!Fill()) return false;
  }
  *data = buf_.substr(0, n);
  buf_.erase(0, n + 2);
  return n != 0;
}
bool RawHttp::ReadResponse(RawResponse* r) {
  if (!ReadHead(r)) return false;
  r->body.clear();
  if (r->header("transfer-encoding") == "chunked") {
    std::string chunk;
    while (ReadChunk(&chunk)) r->body += chunk;
    return true;
  }
  size_t n = std::strtoul(r->header("content-length").c_str(), nullptr, 10);
  while (buf_.size() < n) {
    if (!Fill()) return false;
  }
  r->body = buf_.substr(0, n);
  buf_.erase(0, n);
  return true;
}
bool RawHttp::ClosedWithin(int ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count());
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) return false;
    char tmp[4096];
    ssize_t n = ::read(fd_, tmp, sizeof tmp);
    if (n <= 0) return true;
  }
}

bool RawHttp::Fill() {
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, 15000) <= 0) return false;
  char tmp[65536];
  ssize_t n = ::read(fd_, tmp, sizeof tmp);
  if (n <= 0) return false;
  buf_.append(tmp, static_cast<size_t>(n));
  return true;
}

}  // namespace lever::e2e
