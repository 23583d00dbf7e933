// The "docker" runtime (docs/docker.md): an instance is a container made and
// watched over the Docker Engine API.
//
// Start() (supervisor thread) creates the container, attaches to its output
// and starts it; then two threads per instance follow it: one copies the
// attach stream (stdout/stderr, multiplexed) into pipes the supervisor reads
// like a process's, one waits for the exit (the wait API), inspects it (OOM
// kills), removes the container and makes exit_fd readable. Signals go
// through one worker thread per runtime (the kill API), so Signal() never
// blocks the supervisor's locks.
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "docker/client.h"
#include "docker/container_spec.h"
#include "lever/host/runtime.h"
#include "util.h"

namespace lever::host {
namespace {

using Json = nlohmann::json;
using docker::Client;
using docker::Reply;
using docker::Request;

constexpr auto kApiTimeout = std::chrono::seconds(30);

Status Call(const Client& c, std::string method, std::string target, std::string body, Reply* reply,
            std::chrono::milliseconds timeout = kApiTimeout) {
  Request r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  r.timeout = timeout;
  return c.Do(r, reply);
}

// Runs short API calls (kills) off the supervisor's thread, in order.
class Worker {
 public:
  Worker() : thread_([this] { Loop(); }) {}
  ~Worker() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      auto fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;
};

// What the two threads of an instance and its owner share.
struct Watch {
  explicit Watch(std::string socket) : client(std::move(socket)) {}
  Client client;
  std::string id;        // the container's
  std::string dir;       // <run>/<instance>.docker, bind-mounted as /lever/run
  std::string link;      // <run>/<instance>.sock → <instance>.docker/s.sock, once it exists
  std::string link_target;
  int inotify_fd = -1;   // on dir, until the instance's socket appears
  int64_t ram_mb = 0;
  docker::Canceller cancel;
  int attach_fd = -1;
  std::string attach_rest;
  bool output_done = false;  // under mu
  int out_w = -1, err_w = -1;
  int exit_efd = -1;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int wait_status = 0;
};

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the reader is gone
    data.remove_prefix(static_cast<size_t>(n));
  }
}

void BlockSigpipe() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// The attach stream into the pipes, until the container's output ends.
void CopyOutput(Watch* w) {
  BlockSigpipe();
  docker::StreamDemux demux([w](int stream, std::string_view bytes) { WriteAll(stream == 2 ? w->err_w : w->out_w, bytes); });
  demux.Feed(w->attach_rest);
  char buf[16384];
  while (true) {
    pollfd p[3] = {{w->attach_fd, POLLIN, 0}, {w->cancel.fd(), POLLIN, 0}, {w->inotify_fd, POLLIN, 0}};
    if (poll(p, w->inotify_fd >= 0 ? 3 : 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents & POLLIN) break;
    if (w->inotify_fd >= 0 && (p[2].revents & POLLIN)) {
      // The socket exists: link it where the supervisor watches (its
      // inotify sees the link and probes at once, not after a backoff).
      alignas(inotify_event) char ev[4096];
      (void)!read(w->inotify_fd, ev, sizeof ev);
      struct stat st;
      if (stat((w->dir + "/s.sock").c_str(), &st) == 0) {
        (void)!symlink(w->link_target.c_str(), w->link.c_str());
        close(w->inotify_fd);
        w->inotify_fd = -1;
      }
      continue;
    }
    ssize_t n = read(w->attach_fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    if (!demux.Feed(std::string_view(buf, static_cast<size_t>(n)))) break;
  }
  close(w->attach_fd);
  if (w->inotify_fd >= 0) close(w->inotify_fd);
  w->inotify_fd = -1;
  {
    std::lock_guard lock(w->mu);
    w->output_done = true;
  }
  w->cv.notify_all();
}

// docker's exit code → a wait(2) status: 128+n is death by signal n (what
// dockerd reports for a killed process), an OOM kill is SIGKILL.
int WaitStatusOf(int64_t code, bool oom) {
  if (oom) return SIGKILL;
  if (code > 128 && code < 128 + 65) return static_cast<int>(code - 128);
  return static_cast<int>((code & 0xff) << 8);
}

// Waits for the exit, then tells the supervisor.
void AwaitExit(const std::shared_ptr<Watch>& w, std::thread& output) {
  BlockSigpipe();
  int64_t code = -1;
  bool oom = false;
  std::string error;
  while (true) {
    Request r;
    r.method = "POST";
    r.target = "/containers/" + w->id + "/wait?condition=not-running";
    r.timeout = std::chrono::milliseconds(0);
    Reply reply;
    Status s = w->client.Do(r, &reply, &w->cancel);
    if (s.code() == Code::kCancelled) break;
    if (s.ok()) s = docker::Check(reply, "wait");
    if (s.ok()) {
      Json doc = Json::parse(reply.body, nullptr, false);
      if (doc.is_object() && doc["StatusCode"].is_number_integer()) code = doc["StatusCode"].get<int64_t>();
      break;
    }
    // dockerd restarted or the connection broke: ask again whether it runs.
    Reply info;
    if (!Call(w->client, "GET", "/containers/" + w->id + "/json", "", &info).ok() || info.status == 404) {
      error = s.message();
      break;
    }
  }
  Reply info;
  if (Call(w->client, "GET", "/containers/" + w->id + "/json", "", &info).ok() && info.status == 200) {
    Json doc = Json::parse(info.body, nullptr, false);
    if (doc.is_object() && doc["State"].is_object()) {
      const Json& st = doc["State"];
      if (st["OOMKilled"].is_boolean()) oom = st["OOMKilled"].get<bool>();
      if (code < 0 && st["ExitCode"].is_number_integer()) code = st["ExitCode"].get<int64_t>();
    }
  }
  // Output ends with the container's; a bound in case dockerd keeps the
  // stream open.
  {
    std::unique_lock lock(w->mu);
    if (!w->cv.wait_for(lock, std::chrono::seconds(2), [&] { return w->output_done; })) w->cancel.Cancel();
  }
  output.join();
  if (oom) {
    WriteAll(w->err_w, "[docker] out of memory: the container went past its limit (lever.json ram: " +
                           std::to_string(w->ram_mb) + " MB) and was killed\n");
  } else if (!error.empty()) {
    WriteAll(w->err_w, "[docker] lost the container: " + error + "\n");
  }
  close(w->out_w);
  close(w->err_w);
  w->out_w = w->err_w = -1;
  Reply ignored;
  (void)Call(w->client, "DELETE", "/containers/" + w->id + "?force=1&v=1", "", &ignored);
  unlink(w->link.c_str());
  (void)RemoveTree(w->dir);
  {
    std::lock_guard lock(w->mu);
    w->done = true;
    w->wait_status = WaitStatusOf(code < 0 ? 255 : code, oom);
  }
  w->cv.notify_all();
  uint64_t one = 1;
  (void)!write(w->exit_efd, &one, sizeof one);
}

class DockerInstance final : public RunningInstance {
 public:
  DockerInstance(std::shared_ptr<Watch> w, std::shared_ptr<Worker> worker, int pid, int out_r, int err_r)
      : w_(std::move(w)), worker_(std::move(worker)), pid_(pid), out_r_(out_r), err_r_(err_r) {
    output_ = std::thread([w = w_.get()] { CopyOutput(w); });
    waiter_ = std::thread([w = w_, this] { AwaitExit(w, output_); });
  }
  ~DockerInstance() override {
    std::unique_lock lock(w_->mu);
    if (!w_->done) {
      lock.unlock();
      Reply ignored;
      (void)Call(w_->client, "POST", "/containers/" + w_->id + "/kill?signal=SIGKILL", "", &ignored,
                 std::chrono::milliseconds(5000));
      lock.lock();
      if (!w_->cv.wait_for(lock, std::chrono::seconds(10), [&] { return w_->done; })) w_->cancel.Cancel();
    }
    lock.unlock();
    waiter_.join();
    CloseOutput();
    close(w_->exit_efd);
  }
  int pid() const override { return pid_; }
  int exit_fd() const override { return w_->exit_efd; }
  int stdout_fd() const override { return out_r_; }
  int stderr_fd() const override { return err_r_; }
  void CloseOutput() override {
    if (out_r_ >= 0) close(out_r_);
    if (err_r_ >= 0) close(err_r_);
    out_r_ = err_r_ = -1;
  }
  bool Reap(int* wait_status) override {
    std::lock_guard lock(w_->mu);
    if (!w_->done) return false;
    *wait_status = w_->wait_status;
    return true;
  }
  void Signal(int sig) override {
    {
      std::lock_guard lock(w_->mu);
      if (w_->done) return;
    }
    const char* name = sigabbrev_np(sig);
    std::string target = "/containers/" + w_->id + "/kill?signal=" + (name ? std::string("SIG") + name : std::to_string(sig));
    worker_->Post([w = w_, target] {
      Reply ignored;
      (void)Call(w->client, "POST", target, "", &ignored);  // 409 once it is gone: fine
    });
  }
  void Cleanup() override {}

 private:
  std::shared_ptr<Watch> w_;
  std::shared_ptr<Worker> worker_;
  int pid_;
  int out_r_, err_r_;
  std::thread output_;
  std::thread waiter_;
};

class DockerRuntime final : public Runtime {
 public:
  DockerRuntime(DockerRuntimeOptions options, std::string socket, docker::HostLayout layout)
      : options_(std::move(options)), socket_(std::move(socket)), layout_(std::move(layout)),
        worker_(std::make_shared<Worker>()) {}
  const char* name() const override { return "docker"; }
  Status Start(const InstanceSpec& spec, std::unique_ptr<RunningInstance>* out) override;

 private:
  Status Resolve(const InstanceSpec& spec, std::vector<std::string>* argv) const;
  const DockerRuntimeOptions options_;
  const std::string socket_;
  const docker::HostLayout layout_;
  std::shared_ptr<Worker> worker_;
};

Status DockerRuntime::Resolve(const InstanceSpec& spec, std::vector<std::string>* argv) const {
  for (const auto& [entry, runner, flag] :
       {std::tuple{spec.config.js_entry, options_.lever_serve, "--js-runner"},
        std::tuple{spec.config.py_entry, options_.lever_serve_py, "--py-runner"}}) {
    if (entry.empty()) continue;
    if (runner.empty()) {
      return Status(Code::kFailedPrecondition,
                    std::string("service needs a language runner and none is configured (leverd ") + flag + ")");
    }
    *argv = {runner, entry};
    return Status::Ok();
  }
  if (spec.config.entry.empty() || spec.config.entry[0].empty()) return InvalidArgument("lever.json entry is empty");
  const std::string& cmd = spec.config.entry[0];
  // The code dir is the container's working dir: ./serve is there.
  if (cmd.find('/') != std::string::npos && cmd[0] != '/') {
    std::string exe = spec.code_dir + "/" + cmd;
    if (access(exe.c_str(), X_OK) != 0) {
      return Status(Code::kFailedPrecondition, "entry " + cmd + ": " + std::strerror(errno));
    }
  }
  *argv = spec.config.entry;
  return Status::Ok();
}

Status DockerRuntime::Start(const InstanceSpec& spec, std::unique_ptr<RunningInstance>* out) {
  std::vector<std::string> argv;
  if (Status s = Resolve(spec, &argv); !s.ok()) return s;
  auto w = std::make_shared<Watch>(socket_);
  w->ram_mb = spec.config.ram_mb;
  w->dir = options_.run_dir + "/" + spec.instance_id + ".docker";
  w->link = spec.listen_path;
  docker::User user = docker::ContainerUser(options_.user);
  if (mkdir(w->dir.c_str(), 0700) != 0) return ErrnoStatus("mkdir " + w->dir, errno);
  if (geteuid() == 0 && chown(w->dir.c_str(), user.uid, user.gid) != 0) {
    Status s = ErrnoStatus("chown " + w->dir, errno);
    rmdir(w->dir.c_str());
    return s;
  }
  unlink(w->link.c_str());
  w->link_target = spec.instance_id + ".docker/s.sock";
  w->inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (w->inotify_fd < 0 || inotify_add_watch(w->inotify_fd, w->dir.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
    Status s = ErrnoStatus("inotify " + w->dir, errno);
    if (w->inotify_fd >= 0) close(w->inotify_fd);
    rmdir(w->dir.c_str());
    return s;
  }
  std::string gateway;
  if (spec.internal_gateway.starts_with("unix:")) {
    gateway = spec.internal_gateway.substr(5);
    // The container's user connects to it (connect needs write permission).
    if (geteuid() == 0 && user.uid != 0) chmod(gateway.c_str(), 0777);
  }

  docker::ContainerSpec cs;
  cs.image = options_.image;
  cs.argv = argv;
  cs.env = InstanceEnvironment(spec, options_.path, "unix:" + std::string(docker::kContainerRunDir) + "/s.sock",
                               gateway.empty() ? "" : "unix:" + std::string(docker::kContainerGateway));
  cs.user = user.spec;
  cs.code_dir = spec.code_dir;
  cs.run_dir = w->dir;
  cs.gateway_socket = gateway;
  cs.host_mounts = layout_.mounts;
  for (const std::string& runner : {options_.lever_serve, options_.lever_serve_py}) {
    if (!runner.empty()) cs.host_mounts.push_back(docker::RunnerTree(runner));
  }
  for (const std::string& m : options_.mounts) cs.host_mounts.push_back(m);
  cs.network = options_.network;
  cs.memory_bytes = spec.config.ram_mb * 1000 * 1000;
  cs.pids_limit = options_.max_pids;
  cs.labels = {{docker::kOwnerLabel, options_.owner},
               {"lever.env", spec.env},
               {"lever.service", spec.service},
               {"lever.version", std::to_string(spec.version)},
               {"lever.instance", spec.instance_id}};

  auto fail = [&](Status s) {
    if (!w->id.empty()) {
      Reply ignored;
      (void)Call(w->client, "DELETE", "/containers/" + w->id + "?force=1&v=1", "", &ignored);
    }
    if (w->attach_fd >= 0) close(w->attach_fd);
    close(w->inotify_fd);
    unlink(w->link.c_str());
    (void)RemoveTree(w->dir);
    return Status(s.code(), "docker: " + s.message());
  };
  Reply reply;
  Status s = Call(w->client, "POST", "/containers/create?name=lever-" + spec.instance_id, docker::CreateBody(cs).dump(),
                  &reply);
  if (s.ok()) s = docker::Check(reply, "create container");
  if (s.ok()) {
    Json doc = Json::parse(reply.body, nullptr, false);
    if (doc.is_object() && doc["Id"].is_string()) w->id = doc["Id"].get<std::string>();
    if (w->id.empty()) s = Status(Code::kUnavailable, "create container: no Id in dockerd's reply");
  }
  if (!s.ok()) return fail(s);
  Request attach;
  attach.method = "POST";
  attach.target = "/containers/" + w->id + "/attach?stream=1&stdout=1&stderr=1";
  attach.timeout = std::chrono::seconds(10);
  if (s = w->client.Hijack(attach, &w->attach_fd, &w->attach_rest); !s.ok()) return fail(s);
  if (s = Call(w->client, "POST", "/containers/" + w->id + "/start", "", &reply); s.ok()) {
    s = docker::Check(reply, "start container");
  }
  if (!s.ok()) return fail(s);
  int pid = 0;
  if (Call(w->client, "GET", "/containers/" + w->id + "/json", "", &reply).ok() && reply.status == 200) {
    Json doc = Json::parse(reply.body, nullptr, false);
    if (doc.is_object() && doc["State"].is_object() && doc["State"]["Pid"].is_number_integer()) {
      pid = doc["State"]["Pid"].get<int>();
    }
  }
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return fail(ErrnoStatus("pipe", errno));
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return fail(ErrnoStatus("pipe", errno));
  }
  w->exit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
  fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
  w->out_w = out_pipe[1];
  w->err_w = err_pipe[1];
  *out = std::make_unique<DockerInstance>(w, worker_, pid, out_pipe[0], err_pipe[0]);
  return Status::Ok();
}

// Appends to a std::string (libarchive's write callback).
la_ssize_t AppendTo(struct archive*, void* data, const void* buf, size_t n) {
  static_cast<std::string*>(data)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

Status EnsureImage(const Client& client, const std::string& image, const docker::HostLayout& layout) {
  Reply reply;
  Status s = Call(client, "GET", "/images/" + image + "/json", "", &reply);
  if (!s.ok()) return s;
  if (reply.status == 200) return Status::Ok();
  if (reply.status != 404) return docker::Check(reply, "inspect image " + image);
  // The rootfs: empty directories and the host's top-level symlinks.
  std::string tar;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_open(a, &tar, nullptr, &AppendTo, nullptr);
  struct archive_entry* e = archive_entry_new();
  for (const auto& entry : docker::RootfsEntries(layout)) {
    archive_entry_clear(e);
    archive_entry_set_pathname(e, entry.path.c_str());
    if (entry.symlink_to.empty()) {
      archive_entry_set_filetype(e, AE_IFDIR);
      archive_entry_set_perm(e, entry.path == "tmp" ? 01777 : 0755);
    } else {
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_perm(e, 0777);
      archive_entry_set_symlink(e, entry.symlink_to.c_str());
    }
    archive_write_header(a, e);
  }
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  auto colon = image.rfind(':');
  bool tagged = colon != std::string::npos && image.find('/', colon) == std::string::npos;
  std::string repo = tagged ? image.substr(0, colon) : image;
  std::string tag = tagged ? image.substr(colon + 1) : "latest";
  Request r;
  r.method = "POST";
  r.target = "/images/create?fromSrc=-&repo=" + docker::QueryEscape(repo) + "&tag=" + docker::QueryEscape(tag);
  r.body = std::move(tar);
  r.content_type = "application/x-tar";
  r.timeout = std::chrono::seconds(60);
  if (s = client.Do(r, &reply); !s.ok()) return s;
  if (s = docker::Check(reply, "import image " + image); !s.ok()) return s;
  // Progress messages, one JSON object each; a failure is one with "error".
  if (reply.body.find("\"error\"") != std::string::npos) {
    return Status(Code::kUnavailable, "import image " + image + ": " + reply.body.substr(0, 300));
  }
  return Status::Ok();
}

// Containers a previous run of this leverd left behind (it was killed, or
// dockerd kept them through its own restart).
Status RemoveLeftovers(const Client& client, const std::string& owner, int* removed) {
  Json filters = {{"label", {std::string(docker::kOwnerLabel) + "=" + owner}}};
  Reply reply;
  Status s = Call(client, "GET", "/containers/json?all=1&filters=" + docker::QueryEscape(filters.dump()), "", &reply);
  if (s.ok()) s = docker::Check(reply, "list containers");
  if (!s.ok()) return s;
  Json list = Json::parse(reply.body, nullptr, false);
  if (!list.is_array()) return Status(Code::kUnavailable, "list containers: not a JSON array");
  for (const Json& c : list) {
    if (!c.is_object() || !c["Id"].is_string()) continue;
    Reply r;
    s = Call(client, "DELETE", "/containers/" + c["Id"].get<std::string>() + "?force=1&v=1", "", &r);
    if (s.ok() && r.status != 404) s = docker::Check(r, "remove container");
    if (!s.ok()) return s;
    ++*removed;
  }
  return Status::Ok();
}

}  // namespace

Status NewDockerRuntime(const DockerRuntimeOptions& options, RuntimePtr* out) {
  std::string socket;
  if (Status s = docker::ParseDockerHost(options.host, &socket); !s.ok()) return s;
  Client client(socket);
  Reply reply;
  Status s = Call(client, "GET", "/version", "", &reply, std::chrono::seconds(10));
  if (s.ok()) s = docker::Check(reply, "version");
  if (!s.ok()) {
    return Status(Code::kUnavailable, "dockerd at " + options.host + " does not answer (" + s.message() +
                                          "); start it, or pass --docker-host unix:///path/to/docker.sock");
  }
  docker::HostLayout layout = docker::ReadHostLayout("/");
  int removed = 0;
  if (!options.owner.empty()) {
    if (s = RemoveLeftovers(client, options.owner, &removed); !s.ok()) return s;
  }
  if (!options.run_dir.empty()) {
    // Socket dirs of an earlier run's containers.
    if (DIR* d = opendir(options.run_dir.c_str())) {
      while (struct dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name.size() > 7 && name.ends_with(".docker")) (void)RemoveTree(options.run_dir + "/" + name);
      }
      closedir(d);
    }
  }
  if (s = EnsureImage(client, options.image, layout); !s.ok()) return s;
  *out = std::make_shared<DockerRuntime>(options, socket, std::move(layout));
  return Status::Ok();
}

}  // namespace lever::host
