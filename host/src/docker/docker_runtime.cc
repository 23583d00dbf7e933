// The "docker" runtime (docs/docker.md): an instance is a container made and
// watched over the Docker Engine API.
//
// Start() (supervisor thread) makes no API call: it prepares the instance's
// socket dir, output pipes and exit eventfd, and returns. Each instance has
// its own thread that creates the container, attaches to its output, starts
// it and inspects it (its pid), then waits for its exit (the wait API),
// inspects that (OOM kills), removes the container and makes exit_fd
// readable; a second thread copies the attach stream (stdout/stderr,
// multiplexed) into the pipes the supervisor reads like a process's. A
// create or start that fails is an instance that exited at once with status
// 127, the reason on its stderr ("[docker] cannot start the container:
// ..."), so the supervisor fails the calls waiting for it and backs off as
// for any crash; a slow or stopped dockerd holds up only its own instances.
// A signal sent before the container runs is held: the start is given up
// (the container, if made, removed) or, once started, the signal is sent.
// Signals go through one worker thread per runtime (the kill API), so
// Signal() never blocks the supervisor's locks. A runtime opened on a
// service's first start checks dockerd (it answers, leftovers, the image) on
// that instance's thread too.
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

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
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
// Removing the container of a start that failed or was given up.
constexpr auto kCleanupTimeout = std::chrono::seconds(10);

Status Call(const Client& c, std::string method, std::string target, std::string body, Reply* reply,
            std::chrono::milliseconds timeout = kApiTimeout) {
  Request r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  r.timeout = timeout;
  return c.Do(r, reply);
}

// Removes `container` (an id or a name) and its volumes, whatever it runs;
// best effort.
void ForceRemove(const Client& c, const std::string& container, std::chrono::milliseconds timeout = kApiTimeout) {
  Reply ignored;
  (void)Call(c, "DELETE", "/containers/" + container + "?force=1&v=1", "", &ignored, timeout);
}

// The new container's id from the reply to POST /containers/create.
Status CreatedId(const Reply& reply, std::string* id) {
  Status s = docker::Check(reply, "create container");
  if (!s.ok()) return s;
  Json doc = Json::parse(reply.body, nullptr, false);
  if (doc.is_object() && doc["Id"].is_string()) *id = doc["Id"].get<std::string>();
  if (id->empty()) return Status(Code::kUnavailable, "create container: no Id in dockerd's reply");
  return Status::Ok();
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

// What the runtime checks of dockerd before its first container: that it
// answers, that the containers an earlier run of this leverd left are gone,
// that the image exists. Once: when the runtime opens (as leverd's default:
// a failure fails leverd's start), or, for a runtime opened on a service's
// first start, on the thread of each instance that starts until it succeeds
// (a failure is that instance's exit). Until then no container is created,
// so the leftovers removed are never this run's.
class Checks {
 public:
  Checks(std::string socket, DockerRuntimeOptions options, docker::HostLayout layout)
      : client_(std::move(socket)), options_(std::move(options)), layout_(std::move(layout)) {}
  Status Ensure(std::chrono::milliseconds version_timeout) {
    std::lock_guard lock(mu_);
    if (done_) return Status::Ok();
    Reply reply;
    Status s = Call(client_, "GET", "/version", "", &reply, version_timeout);
    if (s.ok()) s = docker::Check(reply, "version");
    if (!s.ok()) {
      return Status(Code::kUnavailable, "dockerd at " + options_.host + " does not answer (" + s.message() +
                                            "); start it, or pass --docker-host unix:///path/to/docker.sock");
    }
    int removed = 0;
    if (!options_.owner.empty()) {
      if (s = RemoveLeftovers(client_, options_.owner, &removed); !s.ok()) return s;
    }
    if (s = EnsureImage(client_, options_.image, layout_); !s.ok()) return s;
    done_ = true;
    return Status::Ok();
  }

 private:
  const Client client_;
  const DockerRuntimeOptions options_;
  const docker::HostLayout layout_;
  std::mutex mu_;  // held across the checks: a second start waits for the first's
  bool done_ = false;
};

// What the threads of an instance and its owner share.
struct Watch {
  explicit Watch(std::string socket) : client(std::move(socket)) {}
  Client client;
  std::shared_ptr<Checks> checks;
  std::function<void()> on_listening;  // once its socket exists (the next container, made ahead); output thread
  std::string name;         // lever-<instance id>
  std::string create_body;  // POST /containers/create
  std::string id;           // the container's, once created (or made ahead); written before `started`
  bool maybe_created = false;  // the create got no answer: it may exist by its name
  std::string dir;          // <run>/<instance>.docker, bind-mounted as /lever/run
  std::string link;         // <run>/<instance>.sock → <instance>.docker/s.sock, once it exists
  std::string link_target;
  int inotify_fd = -1;      // on dir, until the instance's socket appears
  int64_t ram_mb = 0;
  docker::Canceller cancel;
  int attach_fd = -1;
  std::string attach_rest;
  int out_w = -1, err_w = -1;
  int exit_efd = -1;
  std::atomic<int> pid{0};  // once inspected after the start
  std::mutex mu;
  std::condition_variable cv;
  bool output_done = false;  // under mu
  bool started = false;      // under mu: the start call succeeded; signals go to the kill API
  int held_signal = 0;       // under mu: one sent before that (SIGKILL wins)
  bool done = false;         // under mu, with wait_status
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

std::string KillTarget(const std::string& id, int sig) {
  const char* name = sigabbrev_np(sig);
  return "/containers/" + id + "/kill?signal=" + (name ? std::string("SIG") + name : std::to_string(sig));
}

// The instance's exit, for the supervisor.
void Finish(Watch* w, int wait_status) {
  {
    std::lock_guard lock(w->mu);
    w->done = true;
    w->wait_status = wait_status;
  }
  w->cv.notify_all();
  uint64_t one = 1;
  (void)!write(w->exit_efd, &one, sizeof one);
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
        if (w->on_listening) w->on_listening();  // after the link: the call goes first
      }
      continue;
    }
    ssize_t n = read(w->attach_fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    if (!demux.Feed(std::string_view(buf, static_cast<size_t>(n)))) break;
  }
  close(w->attach_fd);
  w->attach_fd = -1;
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

// An exchange of the start, which the instance's destructor can cancel.
Status Do(Watch* w, std::string method, std::string target, std::string body, Reply* reply) {
  Request r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  r.timeout = kApiTimeout;
  return w->client.Do(r, reply, &w->cancel);
}

enum class Launched { kRunning, kFailed, kGivenUp };

// Checks dockerd (once per runtime), creates, attaches to and starts the
// container: kRunning; kFailed with *error; or kGivenUp when a signal came
// before the start (*signal), the container not started.
Launched Launch(Watch* w, std::string* error, int* signal) {
  auto failed = [&](const Status& s) {
    *error = s.message().empty() ? "dockerd gave no reason" : s.message();
    return Launched::kFailed;
  };
  auto held = [&] {
    std::lock_guard lock(w->mu);
    *signal = w->held_signal;
    return *signal != 0;
  };
  if (Status s = w->checks->Ensure(kApiTimeout); !s.ok()) return failed(s);
  if (held()) return Launched::kGivenUp;
  Reply reply;
  Status s;
  if (w->id.empty()) {  // else created ahead
    s = Do(w, "POST", "/containers/create?name=" + w->name, w->create_body, &reply);
    if (!s.ok()) w->maybe_created = true;  // sent, maybe acted on, no answer
    if (s.ok()) s = CreatedId(reply, &w->id);
    if (!s.ok()) return failed(s);
    if (held()) return Launched::kGivenUp;
  }
  Request attach;
  attach.method = "POST";
  attach.target = "/containers/" + w->id + "/attach?stream=1&stdout=1&stderr=1";
  attach.timeout = std::chrono::seconds(10);
  if (s = w->client.Hijack(attach, &w->attach_fd, &w->attach_rest, &w->cancel); !s.ok()) return failed(s);
  if (held()) return Launched::kGivenUp;
  s = Do(w, "POST", "/containers/" + w->id + "/start", "", &reply);
  if (s.ok()) s = docker::Check(reply, "start container");
  if (!s.ok()) return failed(s);
  {
    std::lock_guard lock(w->mu);
    w->started = true;
    *signal = w->held_signal;  // came while the start was on its way
  }
  if (*signal != 0) (void)Do(w, "POST", KillTarget(w->id, *signal), "", &reply);
  if (Do(w, "GET", "/containers/" + w->id + "/json", "", &reply).ok() && reply.status == 200) {
    Json doc = Json::parse(reply.body, nullptr, false);
    if (doc.is_object() && doc["State"].is_object() && doc["State"]["Pid"].is_number_integer()) {
      w->pid.store(doc["State"]["Pid"].get<int>(), std::memory_order_release);
    }
  }
  return Launched::kRunning;
}

// A start that failed or was given up leaves nothing behind, and looks like
// an instance that exited at once: status 127 with the reason on stderr, or
// killed by the signal that came first.
void Abandon(Watch* w, const std::string& error, int signal) {
  if (w->attach_fd >= 0) close(w->attach_fd);
  w->attach_fd = -1;
  if (w->inotify_fd >= 0) close(w->inotify_fd);
  w->inotify_fd = -1;
  std::string container = !w->id.empty() ? w->id : w->maybe_created ? w->name : "";
  if (!container.empty()) ForceRemove(w->client, container, kCleanupTimeout);
  if (!error.empty()) WriteAll(w->err_w, "[docker] cannot start the container: " + error + "\n");
  close(w->out_w);
  close(w->err_w);
  w->out_w = w->err_w = -1;
  unlink(w->link.c_str());
  (void)RemoveTree(w->dir);
  Finish(w, error.empty() ? signal : 127 << 8);
}

// Waits for the exit of a running container, then tells the supervisor.
void AwaitExit(Watch* w, std::thread& output) {
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
  ForceRemove(w->client, w->id);
  unlink(w->link.c_str());
  (void)RemoveTree(w->dir);
  Finish(w, WaitStatusOf(code < 0 ? 255 : code, oom));
}

// The instance's own thread: the start, then the wait for its exit.
void Run(const std::shared_ptr<Watch>& w) {
  BlockSigpipe();
  std::string error;
  int signal = 0;
  Launched l = Launch(w.get(), &error, &signal);
  if (l != Launched::kRunning) {
    Abandon(w.get(), l == Launched::kFailed ? error : "", signal);
    return;
  }
  std::thread output([w = w.get()] { CopyOutput(w); });
  AwaitExit(w.get(), output);
}

class DockerInstance final : public RunningInstance {
 public:
  DockerInstance(std::shared_ptr<Watch> w, std::shared_ptr<Worker> worker, int out_r, int err_r)
      : w_(std::move(w)), worker_(std::move(worker)), out_r_(out_r), err_r_(err_r) {
    thread_ = std::thread([w = w_] { Run(w); });
  }
  ~DockerInstance() override {
    std::unique_lock lock(w_->mu);
    if (!w_->done) {
      bool started = w_->started;
      if (!started) w_->held_signal = SIGKILL;  // the start gives up at its next step
      lock.unlock();
      if (started) {
        Reply ignored;
        Request r;
        r.method = "POST";
        r.target = KillTarget(w_->id, SIGKILL);
        r.timeout = std::chrono::milliseconds(5000);
        (void)w_->client.Do(r, &ignored);
      }
      lock.lock();
      if (!w_->cv.wait_for(lock, std::chrono::seconds(10), [&] { return w_->done; })) w_->cancel.Cancel();
    }
    lock.unlock();
    thread_.join();
    CloseOutput();
    close(w_->exit_efd);
  }
  int pid() const override { return w_->pid.load(std::memory_order_acquire); }
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
    std::string target;
    {
      std::lock_guard lock(w_->mu);
      if (w_->done) return;
      if (!w_->started) {
        // The start sees it before its next API call (or after the start).
        if (w_->held_signal != SIGKILL) w_->held_signal = sig;
        return;
      }
      target = KillTarget(w_->id, sig);
    }
    worker_->Post([w = w_, target] {
      Reply ignored;
      (void)Call(w->client, "POST", target, "", &ignored);  // 409 once it is gone: fine
    });
  }
  void Cleanup() override {}

 private:
  std::shared_ptr<Watch> w_;
  std::shared_ptr<Worker> worker_;
  int out_r_, err_r_;
  std::thread thread_;
};

// Who `spec`'s container runs as: the configured user, or with per-service
// users (o.ids) the service's own uid:gid with its env's group added.
Status IdentityFor(const DockerRuntimeOptions& o, const InstanceSpec& spec, docker::User* user,
                   std::vector<uint32_t>* groups, InstanceIdentity* id) {
  *user = docker::ContainerUser(o.user);
  groups->clear();
  if (!o.ids) return Status::Ok();
  if (Status s = o.ids->ForService(spec.env, spec.service, id); !s.ok()) return s;
  *user = {std::to_string(id->uid) + ":" + std::to_string(id->gid), id->uid, id->gid};
  *groups = {id->env_gid};
  return Status::Ok();
}

// The create body of `spec`'s container, whose socket dir is `dir`.
std::string CreateBodyFor(const DockerRuntimeOptions& o, const docker::HostLayout& layout, const InstanceSpec& spec,
                          const std::vector<std::string>& argv, const std::string& dir, const docker::User& user,
                          const std::vector<uint32_t>& groups) {
  std::string gateway = spec.internal_gateway.starts_with("unix:") ? spec.internal_gateway.substr(5) : "";
  docker::ContainerSpec cs;
  cs.image = o.image;
  cs.argv = argv;
  cs.env = InstanceEnvironment(spec, o.path, "unix:" + std::string(docker::kContainerRunDir) + "/s.sock",
                               gateway.empty() ? "" : "unix:" + std::string(docker::kContainerGateway));
  cs.user = user.spec;
  cs.groups = groups;
  cs.code_dir = spec.code_dir;
  cs.run_dir = dir;
  cs.gateway_socket = gateway;
  cs.host_mounts = layout.mounts;
  for (const std::string& runner : {o.lever_serve, o.lever_serve_py}) {
    if (!runner.empty()) cs.host_mounts.push_back(docker::RunnerTree(runner));
  }
  for (const std::string& m : o.mounts) cs.host_mounts.push_back(m);
  cs.network = o.network;
  cs.memory_bytes = spec.config.ram_mb * 1000 * 1000;
  cs.pids_limit = o.max_pids;
  cs.labels = {{docker::kOwnerLabel, o.owner},
               {"lever.env", spec.env},
               {"lever.service", spec.service},
               {"lever.version", std::to_string(spec.version)},
               {"lever.instance", spec.instance_id}};
  return docker::CreateBody(cs).dump();
}

// An instance's socket dir (mounted as /lever/run), its container user's.
Status MakeSocketDir(const std::string& dir, const docker::User& user) {
  if (mkdir(dir.c_str(), 0700) != 0) return ErrnoStatus("mkdir " + dir, errno);
  if (geteuid() == 0 && chown(dir.c_str(), user.uid, user.gid) != 0) {
    Status s = ErrnoStatus("chown " + dir, errno);
    rmdir(dir.c_str());
    return s;
  }
  return Status::Ok();
}

// Containers created ahead (DockerRuntimeOptions::create_ahead): once an
// instance of a version listens, the container of its service's next start is
// created, not started, on this object's own thread, under an instance id of
// its own; the next start of that version takes the id (Reserve, under the
// service's lock) and the container (Take, in Start), and only attaches and
// starts. One per service, its latest started version's (a newer one
// replaces it); all removed when the runtime goes.
class Ahead {
 public:
  Ahead(std::string socket, DockerRuntimeOptions options, docker::HostLayout layout)
      : client_(std::move(socket)), options_(std::move(options)), layout_(std::move(layout)),
        worker_(std::make_unique<Worker>()) {}
  ~Ahead() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    worker_.reset();  // the one being made is finished; those queued are skipped
    for (auto* made : {&ready_, &reserved_}) {
      for (const auto& [key, m] : *made) Remove(m);
    }
  }

  std::string Reserve(const std::string& env, const std::string& service, int64_t version,
                      const std::string& code_dir) {
    std::lock_guard lock(mu_);
    auto it = ready_.find(Key(env, service));
    if (it == ready_.end() || !it->second.For(version, code_dir)) return "";
    std::string id = it->second.instance_id;
    reserved_[id] = std::move(it->second);
    ready_.erase(it);
    return id;
  }

  // The container made for `instance_id`, if Reserve handed that id out.
  bool Take(const std::string& instance_id, std::string* container_id) {
    std::lock_guard lock(mu_);
    auto it = reserved_.find(instance_id);
    if (it == reserved_.end()) return false;
    *container_id = it->second.container_id;
    reserved_.erase(it);
    return true;
  }

  // An instance of `spec`'s version listens: make its service's next container.
  void Refill(const InstanceSpec& spec, const std::vector<std::string>& argv) {
    std::string key = Key(spec.env, spec.service);
    {
      std::lock_guard lock(mu_);
      if (closing_ || making_.count(key)) return;
      auto it = ready_.find(key);
      if (it != ready_.end() && it->second.For(spec.version, spec.code_dir)) return;
      making_.insert(key);
    }
    worker_->Post([this, spec, argv, key] { Make(spec, argv, key); });
  }

 private:
  struct Made {
    std::string instance_id, container_id, dir, code_dir;
    int64_t version = 0;
    // Made for that version's start from that code dir.
    bool For(int64_t v, const std::string& dir_of_code) const { return version == v && code_dir == dir_of_code; }
  };
  static std::string Key(const std::string& env, const std::string& service) { return env + "/" + service; }

  void Make(InstanceSpec spec, const std::vector<std::string>& argv, const std::string& key) {
    Made m;
    m.instance_id = RandomId(32);
    m.version = spec.version;
    m.code_dir = spec.code_dir;
    m.dir = options_.run_dir + "/" + m.instance_id + ".docker";
    spec.instance_id = m.instance_id;
    bool closing;
    {
      std::lock_guard lock(mu_);
      closing = closing_;
    }
    docker::User user;
    std::vector<uint32_t> groups;
    InstanceIdentity id;
    Status s = closing ? Status(Code::kCancelled, "closing") : IdentityFor(options_, spec, &user, &groups, &id);
    if (s.ok()) s = MakeSocketDir(m.dir, user);
    if (s.ok()) {
      Reply reply;
      s = Call(client_, "POST", "/containers/create?name=lever-" + m.instance_id,
               CreateBodyFor(options_, layout_, spec, argv, m.dir, user, groups), &reply);
      bool answered = s.ok();
      if (s.ok()) s = CreatedId(reply, &m.container_id);
      if (!s.ok()) {
        if (!answered) m.container_id = "lever-" + m.instance_id;  // it may exist by its name
        Remove(m);
      }
    }
    Made old;
    {
      std::lock_guard lock(mu_);
      making_.erase(key);
      if (s.ok()) {
        auto it = ready_.find(key);
        if (it != ready_.end()) old = std::move(it->second);
        ready_[key] = std::move(m);
      }
    }
    if (!old.dir.empty()) Remove(old);
  }

  void Remove(const Made& m) {
    if (!m.container_id.empty()) ForceRemove(client_, m.container_id, kCleanupTimeout);
    (void)RemoveTree(m.dir);
  }

  const Client client_;
  const DockerRuntimeOptions options_;
  const docker::HostLayout layout_;
  std::mutex mu_;  // a leaf: no API call under it
  bool closing_ = false;
  std::map<std::string, Made> ready_;     // by env/service
  std::map<std::string, Made> reserved_;  // by instance id: handed out, not started yet
  std::set<std::string> making_;          // env/service
  std::unique_ptr<Worker> worker_;
};

class DockerRuntime final : public Runtime {
 public:
  DockerRuntime(DockerRuntimeOptions options, std::string socket, docker::HostLayout layout,
                std::shared_ptr<Checks> checks)
      : options_(std::move(options)), socket_(std::move(socket)), layout_(std::move(layout)),
        checks_(std::move(checks)), worker_(std::make_shared<Worker>()) {
    if (options_.create_ahead) ahead_ = std::make_shared<Ahead>(socket_, options_, layout_);
  }
  const char* name() const override { return "docker"; }
  Status Start(const InstanceSpec& spec, std::unique_ptr<RunningInstance>* out) override;
  std::string ReservedInstanceId(const std::string& env, const std::string& service, int64_t version,
                                 const LeverConfig&, const std::string& code_dir) override {
    return ahead_ ? ahead_->Reserve(env, service, version, code_dir) : "";
  }

 private:
  Status Resolve(const InstanceSpec& spec, std::vector<std::string>* argv) const;
  const DockerRuntimeOptions options_;
  const std::string socket_;
  const docker::HostLayout layout_;
  const std::shared_ptr<Checks> checks_;
  std::shared_ptr<Worker> worker_;
  std::shared_ptr<Ahead> ahead_;  // null without create_ahead
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

// No API call here (the supervisor's thread): local checks and set-up only.
Status DockerRuntime::Start(const InstanceSpec& spec, std::unique_ptr<RunningInstance>* out) {
  std::vector<std::string> argv;
  if (Status s = Resolve(spec, &argv); !s.ok()) return s;
  auto w = std::make_shared<Watch>(socket_);
  w->checks = checks_;
  w->name = "lever-" + spec.instance_id;
  w->ram_mb = spec.config.ram_mb;
  w->dir = options_.run_dir + "/" + spec.instance_id + ".docker";
  w->link = spec.listen_path;
  docker::User user = docker::ContainerUser(options_.user);
  InstanceIdentity id;
  std::vector<uint32_t> groups;
  if (Status s = IdentityFor(options_, spec, &user, &groups, &id); !s.ok()) return s;
  if (options_.ids) {
    if (Status s = GiveToService(spec, id); !s.ok()) return s;
  }
  std::string made;  // the container created ahead under this id, if any (its dir exists)
  bool ahead = ahead_ && ahead_->Take(spec.instance_id, &made);
  if (!ahead) {
    if (Status s = MakeSocketDir(w->dir, user); !s.ok()) return s;
  }
  unlink(w->link.c_str());
  w->link_target = spec.instance_id + ".docker/s.sock";
  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  auto fail = [&](Status s) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], w->inotify_fd, w->exit_efd}) {
      if (fd >= 0) close(fd);
    }
    if (ahead) {
      worker_->Post([w, made] {
        ForceRemove(w->client, made, kCleanupTimeout);
        (void)RemoveTree(w->dir);
      });
    } else {
      rmdir(w->dir.c_str());
    }
    return s;
  };
  w->inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (w->inotify_fd < 0 || inotify_add_watch(w->inotify_fd, w->dir.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
    return fail(ErrnoStatus("inotify " + w->dir, errno));
  }
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) return fail(ErrnoStatus("pipe", errno));
  w->exit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->exit_efd < 0) return fail(ErrnoStatus("eventfd", errno));
  if (!options_.ids && spec.internal_gateway.starts_with("unix:") && geteuid() == 0 && user.uid != 0) {
    // The container's user connects to it (connect needs write permission);
    // with per-service users it does through its env's group (GiveToService).
    chmod(spec.internal_gateway.substr(5).c_str(), 0777);
  }
  if (ahead) {
    w->id = made;
  } else {
    w->create_body = CreateBodyFor(options_, layout_, spec, argv, w->dir, user, groups);
  }
  if (ahead_) {
    w->on_listening = [weak = std::weak_ptr<Ahead>(ahead_), spec, argv] {
      if (auto a = weak.lock()) a->Refill(spec, argv);
    };
  }

  fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
  fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
  w->out_w = out_pipe[1];
  w->err_w = err_pipe[1];
  *out = std::make_unique<DockerInstance>(w, worker_, out_pipe[0], err_pipe[0]);
  return Status::Ok();
}

}  // namespace

Status NewDockerRuntime(const DockerRuntimeOptions& options, RuntimePtr* out) {
  std::string socket;
  if (Status s = docker::ParseDockerHost(options.host, &socket); !s.ok()) return s;
  docker::HostLayout layout = docker::ReadHostLayout("/");
  auto checks = std::make_shared<Checks>(socket, options, layout);
  if (!options.check_on_first_start) {
    if (Status s = checks->Ensure(std::chrono::seconds(10)); !s.ok()) return s;
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
  *out = std::make_shared<DockerRuntime>(options, socket, std::move(layout), std::move(checks));
  return Status::Ok();
}

}  // namespace lever::host
