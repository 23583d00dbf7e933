// The end-to-end tests' service: the original system test's methods
// (reference §11.1: BasicHello, ReqReplyStreamChan, BasicError) plus what the
// leverd scenarios need. Built on the C++ server runtime; deployed by the
// tests with `lever deploy` like any user service.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "lever/client.h"
#include "lever/server.h"

namespace {

using lever::Array;
using lever::CallContext;
using lever::Result;
using lever::Value;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

// Appends one line to `path` (one write: lines of concurrent calls and
// instances do not interleave).
// A call whose deadline passed wants no reply, and must not get one: on a
// loaded machine this side's deadline can fire before the caller's, and an
// answer sent at once could overtake the caller's DEADLINE_EXCEEDED. So the
// reply waits until a second after the deadline (no wait for a plain cancel).
void HoldPastDeadline(const CallContext& ctx) {
  if (ctx.cancelled() && ctx.deadline() != std::chrono::system_clock::time_point::max()) {
    std::this_thread::sleep_until(ctx.deadline() + std::chrono::seconds(1));
  }
}

void AppendLine(const std::string& path, const std::string& line) {
  if (path.empty()) return;
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd < 0) return;
  std::string l = line + "\n";
  (void)!write(fd, l.data(), l.size());
  close(fd);
}

int main(int argc, char** argv) {
  // --exit-if-exists PATH: exit at start (before listening) if PATH exists:
  //   a live version whose next instances cannot start.
  // --resource-log PATH: NewResource/CloseResource append "new|close <resource> <instance>".
  // --slow-start-if-exists PATH: listen only once PATH is gone (60 s at most).
  // --exit-now CODE: print a line and exit before listening (a bad version).
  // --token-log PATH: NewResource, CloseResource and Fenced append
  //   "new|close|call <resource> <fencing token> <instance>" (cluster resources).
  // --own-socket 1: bind LEVEROS_LISTEN_ADDR, ignoring the socket leverd
  //   passed in (LEVEROS_LISTEN_FD), as binaries from before socket
  //   activation do.
  std::string resource_log, token_log;
  lever::ServerOptions server_options;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--exit-if-exists" && access(value.c_str(), F_OK) == 0) {
      std::fprintf(stderr, "testservice: %s exists, exiting\n", value.c_str());
      return 2;
    }
    if (flag == "--exit-now") {
      std::fprintf(stderr, "testservice: this version cannot start\n");
      return std::atoi(value.c_str());
    }
    if (flag == "--resource-log") resource_log = value;
    if (flag == "--token-log") token_log = value;
    if (flag == "--own-socket") server_options.listen_fd = -1;
    // --slow-start-if-exists PATH: wait up to 60 s before listening while
    // PATH exists (a cold start that takes its time).
    if (flag == "--slow-start-if-exists") {
      for (int tries = 0; tries < 6000 && access(value.c_str(), F_OK) == 0; ++tries) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }
  lever::Server server(server_options);
  // Whether it serves on the socket leverd made (socket activation).
  (void)server.Handle("ListenFd", [&server](const CallContext&, Array&) {
    return Result::Of(Value(lever::Map{{"onListenFd", server.on_listen_fd()},
                                       {"LEVEROS_LISTEN_FD", Env("LEVEROS_LISTEN_FD")},
                                       {"LEVEROS_LISTEN_PID", Env("LEVEROS_LISTEN_PID")},
                                       {"pid", static_cast<int64_t>(getpid())}}));
  });
  // The fencing token leverd sends with every call for a resource in a
  // cluster (docs/cluster.md), "-" without one.
  auto token_line = [token_log](const char* kind, const CallContext& ctx) {
    std::string token(ctx.Metadata("x-lever-fencing-token"));
    AppendLine(token_log, std::string(kind) + " " + ctx.resource() + " " + (token.empty() ? "-" : token) + " " +
                              Env("LEVEROS_INSTANCE_ID"));
    return token;
  };
  (void)server.Handle("NewResource", [resource_log, token_line](const CallContext& ctx, Array&) {
    AppendLine(resource_log, "new " + ctx.resource() + " " + Env("LEVEROS_INSTANCE_ID"));
    token_line("new", ctx);
    return Result::Of(Value());
  });
  (void)server.Handle("CloseResource", [resource_log, token_line](const CallContext& ctx, Array&) {
    AppendLine(resource_log, "close " + ctx.resource() + " " + Env("LEVEROS_INSTANCE_ID"));
    token_line("close", ctx);
    return Result::Of(Value());
  });
  // A call for a resource that records its fencing token: "call" lines in
  // the token log, in the order calls were served across every instance.
  (void)server.Handle("Fenced", [token_line](const CallContext& ctx, Array&) {
    std::string token = token_line("call", ctx);
    return Result::Of(Value(lever::Map{{"instance", Env("LEVEROS_INSTANCE_ID")},
                                       {"resource", ctx.resource()},
                                       {"token", token}}));
  });
  (void)server.Handle("BasicHello", [](const CallContext&, Array& args) {
    if (args.size() != 1 || !args[0].is_string()) return Result::AppError(Value("want one string"));
    return Result::Of(Value("hello " + args[0].as_string()));
  });
  (void)server.Handle("BasicError", [](const CallContext&, Array& args) {
    return Result::AppError(Value("error sent: " + (args.empty() || !args[0].is_string() ? "" : args[0].as_string())));
  });
  (void)server.Handle("Echo", [](const CallContext&, Array& args) {
    return Result::Of(args.empty() ? Value() : std::move(args[0]));
  });
  // All its arguments as one array: what a client sent, argument by argument.
  (void)server.Handle("EchoArgs", [](const CallContext&, Array& args) { return Result::Of(Value(std::move(args))); });
  // A reply of args[0] bytes ('x'): Bytes as byte_result, Text as a JSON
  // string (the HTTP API's large replies, tests/bench/http_reply).
  (void)server.Handle("Bytes", [](const CallContext&, Array& args) {
    int64_t n = args.empty() || !args[0].is_int() ? 0 : std::clamp<int64_t>(args[0].as_int(), 0, int64_t{1} << 30);
    return Result::Of(Value::FromBytes(std::string(static_cast<size_t>(n), 'x')));
  });
  (void)server.Handle("Text", [](const CallContext&, Array& args) {
    int64_t n = args.empty() || !args[0].is_int() ? 0 : std::clamp<int64_t>(args[0].as_int(), 0, int64_t{1} << 30);
    return Result::Of(Value(std::string(static_cast<size_t>(n), 'x')));
  });
  (void)server.Handle("ByteError", [](const CallContext&, Array&) {
    return Result::AppError(Value::FromBytes(std::string("\x00\x01\xfe", 3)));
  });
  // Which instance and version served the call (resources, redeploys).
  (void)server.Handle("Whoami", [](const CallContext& ctx, Array&) {
    return Result::Of(Value(lever::Map{{"instance", Env("LEVEROS_INSTANCE_ID")},
                                       {"version", Env("LEVEROS_CODE_VERSION")},
                                       {"resource", ctx.resource()},
                                       {"srcEnv", ctx.source_env()},
                                       {"pid", static_cast<int64_t>(getpid())}}));
  });
  // Sleeps args[0] ms, then answers like Whoami (load with identities).
  (void)server.Handle("WhoamiAfterMs", [](const CallContext& ctx, Array& args) {
    int64_t ms = args.empty() || !args[0].is_int() ? 0 : args[0].as_int();
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return Result::Of(Value(lever::Map{{"instance", Env("LEVEROS_INSTANCE_ID")},
                                       {"version", Env("LEVEROS_CODE_VERSION")},
                                       {"resource", ctx.resource()}}));
  });
  // Answers every message with "<instance> v<version>": which instance a
  // long stream stays on.
  (void)server.HandleStream("WhoamiChan", [](lever::ServerStreamPtr s) {
    for (Result m = s->Receive(); m.ok(); m = s->Receive()) {
      if (!s->Send(Value(Env("LEVEROS_INSTANCE_ID") + " v" + Env("LEVEROS_CODE_VERSION"))).ok()) return;
    }
  });
  // Blocks until the call is cancelled, then writes a marker file the test
  // waits for: proof that a client cancel reached the handler.
  (void)server.Handle("WaitForCancel", [](const CallContext& ctx, Array& args) {
    std::string marker = args.empty() || !args[0].is_string() ? "" : args[0].as_string();
    for (int i = 0; i < 60000 && !ctx.cancelled(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (ctx.cancelled() && !marker.empty()) std::ofstream(marker) << "cancelled";
    HoldPastDeadline(ctx);
    return Result::Of(Value("not cancelled"));
  });
  // Like WaitForCancel, but first writes `started` (args: started, cancelled
  // marker paths): a test knows the handler runs before it goes away.
  (void)server.Handle("MarkThenWaitForCancel", [](const CallContext& ctx, Array& args) {
    if (args.size() != 2 || !args[0].is_string() || !args[1].is_string()) return Result::AppError(Value("want 2 paths"));
    std::ofstream(args[0].as_string()) << "started";
    for (int i = 0; i < 60000 && !ctx.cancelled(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (ctx.cancelled()) std::ofstream(args[1].as_string()) << "cancelled";
    HoldPastDeadline(ctx);
    return Result::Of(Value("not cancelled"));
  });
  // Takes `ms` milliseconds, then answers "slept" (drain tests).
  (void)server.Handle("SleepMs", [](const CallContext&, Array& args) {
    int64_t ms = args.empty() || !args[0].is_int() ? 0 : args[0].as_int();
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return Result::Of(Value("slept"));
  });
  // Isolation (docker_test.cc): allocates and touches args[0] MB, kept
  // until the instance dies; reads or writes a file, answering its content,
  // "written" or the errno's text; the instance's uid.
  (void)server.Handle("AllocMb", [](const CallContext&, Array& args) {
    int64_t mb = args.empty() || !args[0].is_int() ? 0 : args[0].as_int();
    static std::vector<std::unique_ptr<char[]>> kept;
    for (int64_t i = 0; i < mb; ++i) {
      kept.emplace_back(new char[1 << 20]);
      std::memset(kept.back().get(), 1, 1 << 20);
    }
    return Result::Of(Value("allocated"));
  });
  (void)server.Handle("ReadFile", [](const CallContext&, Array& args) {
    std::string path = args.empty() || !args[0].is_string() ? "" : args[0].as_string();
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Result::AppError(Value(std::string(std::strerror(errno))));
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0) return Result::AppError(Value(std::string(std::strerror(errno))));
    return Result::Of(Value(std::string(buf, static_cast<size_t>(n))));
  });
  (void)server.Handle("WriteFile", [](const CallContext&, Array& args) {
    std::string path = args.empty() || !args[0].is_string() ? "" : args[0].as_string();
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Result::AppError(Value(std::string(std::strerror(errno))));
    close(fd);
    return Result::Of(Value("written"));
  });
  (void)server.Handle("Uid", [](const CallContext&, Array&) {
    return Result::Of(Value(static_cast<int64_t>(getuid())));
  });
  // Dies in the middle of a call.
  (void)server.Handle("Crash", [](const CallContext&, Array&) -> Result { _exit(3); });
  // Calls another service through the internal gateway (private ones too).
  (void)server.Handle("CallOther", [](const CallContext&, Array& args) {
    if (args.size() < 2 || !args[0].is_string() || !args[1].is_string()) {
      return Result::AppError(Value("CallOther(service, method, args...)"));
    }
    static lever::Client client;
    Array rest(std::make_move_iterator(args.begin() + 2), std::make_move_iterator(args.end()));
    lever::Endpoint ep = client.Service("", args[0].as_string());
    Result r = ep.Invoke(args[1].as_string(), std::move(rest));
    if (r.is_platform_error()) return Result::AppError(Value(r.status.ToString()));
    return r;
  });
  // Opens a streaming call to any URL through the internal gateway (admin's
  // DeployServiceChan, say), half-closes at once and answers how it ended:
  // "end", "app: <error>" or "<CODE>: <message>".
  (void)server.Handle("StreamUrl", [](const CallContext&, Array& args) {
    if (args.empty() || !args[0].is_string()) return Result::AppError(Value("StreamUrl(url, args...)"));
    static lever::Client client;
    Array rest(std::make_move_iterator(args.begin() + 1), std::make_move_iterator(args.end()));
    lever::ClientStreamPtr stream;
    lever::CallOptions options;
    options.timeout = std::chrono::seconds(20);
    if (lever::Status s = client.InvokeStreamUrl(&stream, args[0].as_string(), std::move(rest), options); !s.ok()) {
      return Result::Of(Value(s.ToString()));
    }
    stream->CloseSend();
    for (;;) {
      Result r = stream->Receive();
      if (r.ok()) continue;
      if (r.is_end()) return Result::Of(Value("end"));
      if (r.is_app_error()) return Result::Of(Value("app: " + (r.value.is_string() ? r.value.as_string() : "?")));
      return Result::Of(Value(r.status.ToString()));
    }
  });
  // A unary call to any URL through the internal gateway: its value, or how
  // it failed ("app: <error>", "<CODE>: <message>").
  (void)server.Handle("CallUrl", [](const CallContext&, Array& args) {
    if (args.empty() || !args[0].is_string()) return Result::AppError(Value("CallUrl(url, args...)"));
    static lever::Client client;
    Array rest(std::make_move_iterator(args.begin() + 1), std::make_move_iterator(args.end()));
    lever::CallOptions options;
    options.timeout = std::chrono::seconds(20);
    Result r = client.InvokeUrl(args[0].as_string(), std::move(rest), options);
    if (r.is_app_error()) return Result::Of(Value("app: " + (r.value.is_string() ? r.value.as_string() : "?")));
    if (r.is_platform_error()) return Result::Of(Value(r.status.ToString()));
    return r;
  });
  // The request metadata `key` the call arrived with ("" if none).
  (void)server.Handle("Metadata", [](const CallContext& ctx, Array& args) {
    if (args.empty() || !args[0].is_string()) return Result::AppError(Value("Metadata(key)"));
    return Result::Of(Value(std::string(ctx.Metadata(args[0].as_string()))));
  });
  // OpenFile(path, "r" or "w"): opens `path` for reading or writing (never
  // creating it): "opened", or the error (what an instance may touch).
  (void)server.Handle("OpenFile", [](const CallContext&, Array& args) {
    if (args.size() != 2 || !args[0].is_string() || !args[1].is_string()) {
      return Result::AppError(Value("OpenFile(path, \"r\" or \"w\")"));
    }
    int fd = open(args[0].as_string().c_str(), (args[1].as_string() == "w" ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return Result::Of(Value(std::string("error: ") + std::strerror(errno)));
    close(fd);
    return Result::Of(Value("opened"));
  });
  // Prints its argument as one line on stdout (for log tails).
  (void)server.Handle("Print", [](const CallContext&, Array& args) {
    std::string text = args.empty() || !args[0].is_string() ? "" : args[0].as_string();
    std::printf("print: %s\n", text.c_str());
    std::fflush(stdout);
    return Result::Of(Value("printed"));
  });
  // Sends "ready", reads until its input ends, then writes to args[0] how it
  // ended: "eof N" (the client half-closed after N messages) or "cancelled".
  (void)server.HandleStream("RecordEndChan", [](lever::ServerStreamPtr s) {
    std::string path = s->args().empty() || !s->args()[0].is_string() ? "" : s->args()[0].as_string();
    (void)s->Send(Value("ready"));
    int n = 0;
    Result m = s->Receive();
    for (; m.ok(); m = s->Receive()) ++n;
    std::string how = m.is_end() ? "eof " + std::to_string(n) : "cancelled";
    if (!path.empty()) std::ofstream(path + ".tmp") << how;
    if (!path.empty()) std::rename((path + ".tmp").c_str(), path.c_str());
    s->Finish(Result::End());
  });
  (void)server.HandleStream("ReqReplyStreamChan", [](lever::ServerStreamPtr s) {
    std::string prefix = s->args().empty() || !s->args()[0].is_string() ? "" : s->args()[0].as_string();
    for (Result m = s->Receive(); m.ok(); m = s->Receive()) {
      std::string text = m.value.is_string() ? m.value.as_string() : "?";
      if (!s->Send(Value(prefix + ":" + text + " received")).ok()) return;
    }
  });
  // Sends its call's arguments as one array, then ends.
  (void)server.HandleStream("EchoArgsChan", [](lever::ServerStreamPtr s) { (void)s->Send(Value(s->args())); });
  // Echoes every message (JSON or bytes) back, in order.
  (void)server.HandleStream("EchoChan", [](lever::ServerStreamPtr s) {
    for (Result m = s->Receive(); m.ok(); m = s->Receive()) {
      if (!s->Send(m.value).ok()) return;
    }
  });
  // Sends args[0] messages "m0".., then ends with an application error
  // (args[1] "app") or a platform error (args[1] "platform").
  (void)server.HandleStream("FailAfterChan", [](lever::ServerStreamPtr s) {
    Array& a = s->args();
    int64_t n = a.size() > 0 && a[0].is_int() ? a[0].as_int() : 0;
    bool platform = a.size() > 1 && a[1].is_string() && a[1].as_string() == "platform";
    for (int64_t i = 0; i < n; ++i) {
      if (!s->Send(Value("m" + std::to_string(i))).ok()) return;
    }
    s->Finish(platform ? Result::Failed(lever::Status(lever::Code::kInternal, "broke"))
                       : Result::AppError(Value("failed after " + std::to_string(n))));
  });
  // Sends N bytes in chunks of `chunk` without reading (slow-reader tests).
  (void)server.HandleStream("SourceChan", [](lever::ServerStreamPtr s) {
    Array& a = s->args();
    int64_t total = a.size() > 0 && a[0].is_int() ? a[0].as_int() : 0;
    int64_t chunk = a.size() > 1 && a[1].is_int() ? a[1].as_int() : 65536;
    std::string block(static_cast<size_t>(chunk), 'x');
    for (int64_t sent = 0; sent < total; sent += chunk) {
      if (!s->Send(Value::FromBytes(block)).ok()) return;
    }
  });
  if (lever::Status st = server.Start(); !st.ok()) {
    std::fprintf(stderr, "testservice: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("testservice ready\n");
  std::fflush(stdout);
  server.Wait();
  return 0;
}
