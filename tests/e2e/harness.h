// The end-to-end harness: a real leverd on a free port with a temp data dir,
// driven by the real `lever` CLI and the C++ client, over real sockets.
// Scenarios live one per file (tests/e2e/*_test.cc).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "lever/client.h"

namespace lever::e2e {

// Paths of the binaries under test (set by CMake).
std::string LeverdPath();
std::string LeverPath();
std::string TestServicePath();
std::string HelloServicePath();

// A fresh directory under /tmp (short, for unix socket paths), removed on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a program to completion with `input` on stdin (bounded by `timeout`:
// killed and exit_code -1 after it).
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input = "",
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Builds examples/hello-go as `dir`/serve against this build's liblever (an
// rpath to its dir); returns the build's result.
CommandResult BuildHelloGo(const std::string& dir);

// Waits for `pred` with a bounded deadline, re-checking every few ms.
bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// Resident memory of a process in bytes (VmRSS), 0 if gone.
int64_t RssBytes(pid_t pid);

// A TCP connection to 127.0.0.1:`port` (TCP_NODELAY; `rcvbuf` > 0: that
// receive buffer, set before connecting). *ok tells whether it connected.
int ConnectLoopback(int port, bool* ok, int rcvbuf = 0);

struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// A raw HTTP/1.1 client over one loopback TCP connection (HTTP API,
// WebSocket and status page tests); every read is bounded (15 s).
class RawHttp {
 public:
  // `rcvbuf` > 0: a small receive buffer (a slow reader), set before connecting.
  explicit RawHttp(int port, int rcvbuf = 0);
  virtual ~RawHttp();
  bool ok() const { return ok_; }

  bool Send(std::string_view data);
  void SendChunk(std::string_view data);
  // Reads the status line and headers.
  bool ReadHead(RawResponse* r);
  // One chunk of a chunked body; false at the last chunk or on error.
  bool ReadChunk(std::string* data);
  // A whole response: head, then a chunked or Content-Length body.
  bool ReadResponse(RawResponse* r);
  // True when the server closes the connection within `ms`.
  bool ClosedWithin(int ms);

 protected:
  // One read (bounded) appended to buf_; false on EOF, error or timeout.
  bool Fill();
  int fd_ = -1;
  bool ok_ = false;
  std::string buf_;
};

class Leverd {
 public:
  struct Options {
    std::string data_dir;  // default: a fresh temp dir
    std::vector<std::string> extra_flags;
    std::string listen = "127.0.0.1:0";
    // Runs leverd under this command (e.g. `ip netns exec <ns>`).
    std::vector<std::string> exec_prefix;
  };
  Leverd();
  explicit Leverd(Options options);
  ~Leverd();  // SIGKILL if still running

  // Starts and waits for "listening on" (bounded).
  void Start();
  // SIGTERM and wait; returns the exit status (0 on a clean drain).
  int Stop(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  // The public port at the listen address's host (127.0.0.1 for 0.0.0.0).
  std::string address() const;
  const std::string& data_dir() const { return data_dir_; }

  // Every stderr line so far.
  std::vector<std::string> LogLines() const;
  bool WaitForLog(const std::string& needle, std::chrono::milliseconds timeout);

  // `lever -H <address> --data-dir <data dir> args...` (so with the admin token)
  CommandResult Lever(const std::vector<std::string>& args, const std::string& input = "") const;
  // A C++ client whose calls all go to this leverd.
  std::unique_ptr<Client> NewClient() const;

  // `lever ps --json`, parsed (null on failure).
  Value Ps() const;
  // The instances of `service` in `lever ps --json` (any env).
  std::vector<Value> Instances(const std::string& service) const;
  // Sends `sig` to every instance of `service`; returns how many.
  int KillInstances(const std::string& service, int sig) const;

  // Makes a deployable dir: lever.json with `lever_json` and the test service
  // binary as ./serve; deploys it into `env`; returns the CLI's result.
  CommandResult DeployTestService(const std::string& lever_json, const std::string& env = "dev.lever");

 private:
  void ReadLogs(int fd);

  Options options_;
  std::unique_ptr<TempDir> own_dir_;
  std::vector<std::unique_ptr<TempDir>> service_dirs_;
  std::string data_dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::thread reader_;
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

}  // namespace lever::e2e
