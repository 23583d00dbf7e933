// leverd: one process per node holding the gateway (the public port and the
// per-environment internal sockets), the host (registry, code, instances) and
// the admin service. main() parses flags and calls Run (STYLE.md).
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <shared_mutex>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/data_dir.h"
#include "common/duration.h"
#include "config_file.h"
#include "lever/admin/admin_service.h"
#include "lever/gateway/gateway.h"
#include "lever/host/host.h"
#include "log.h"
#include "runners.h"

#ifndef LEVER_VERSION
#define LEVER_VERSION "dev"
#endif

namespace lever::leverd {
namespace {

namespace fs = std::filesystem;
using cli::ParseDuration;

struct Flags {
  std::string listen = "127.0.0.1:8080";
  std::string data_dir;
  std::string registry = "embedded:";
  // The cluster (docs/cluster.md).
  std::string node_name;
  std::string advertise;
  std::string cluster_token;
  std::string cluster_token_file;
  std::string lease_ttl = "3s";
  int workers = 0;
  uint32_t busy_poll_us = 0;
  std::string idle_timeout = "5m";
  std::string log_format = "text";
  std::string log_level = "info";
  std::string grace = "10s";
  std::string cold_start_wait = "16s";
  std::string stable_window = "60s";
  std::string panic_window = "6s";
  std::string resource_idle = "3m";
  size_t max_instances = 16;
  size_t max_waiting_calls = 1000;
  int prestart = 1;
  bool socket_activation = true;
  size_t max_upload_mib = 30;
  size_t max_unpacked_mib = 256;
  std::vector<std::string> runners = std::vector<std::string>(std::size(kRunners));  // by kRunners' order
  size_t http_max_body_kib = 512;
  std::string http_idle_timeout = "30s";
  size_t ws_max_message_kib = 1024;
  size_t ws_max_frame_kib = 16;
  std::string ws_idle_timeout = "30s";
  std::string ws_allowed_origins;  // comma-separated
  std::string admin_token_required = "auto";  // auto, true, false
  std::string instance_user = "auto";
  std::string instance_ids = "61184-65519";
  // HTTP/2 limits (docs/operations.md "HTTP/2 limits"; nghttpx's defaults).
  std::string preface_timeout = "10s";
  std::string h2_client_settings_timeout = "10s";
  std::string h2_instance_settings_timeout = "10s";
  std::string h2_client_idle_timeout = "3m";
  std::string h2_client_write_timeout = "30s";
  uint32_t h2_max_concurrent_streams = 100;
  uint32_t h2_max_header_list_kib = 64;
  uint32_t max_connections = 10000;
  uint32_t max_connections_per_worker = 0;
  std::string runtime = "process";
  std::string docker_host = "unix:///var/run/docker.sock";
  std::string docker_network = "bridge";
  std::string docker_image = "lever-rootfs:1";
  std::string docker_mounts;  // comma-separated
  bool docker_create_ahead = true;
};

constexpr const char* kInstanceUser = "lever-instance";  // scripts/setup.sh creates it

// The user `process` instances run as (docs/security.md): "" for leverd's
// own. A root leverd never runs them as root unless told to (root): auto is
// lever-instance, else nobody.
Status ResolveInstanceUser(const std::string& flag, std::string* user) {
  user->clear();
  auto exists = [](const char* name) {
    std::vector<char> buf(16384);
    struct passwd pw, *found = nullptr;
    return getpwnam_r(name, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr;
  };
  if (flag == "root" || flag == "0") {
    if (geteuid() == 0) LogWarn("instances run as root (--instance-user root): they can read the data dir and admin.token");
    return geteuid() == 0 ? Status::Ok() : Status(Code::kPermissionDenied, "--instance-user root needs root");
  }
  if (flag != "auto") {
    *user = flag;  // the process runtime checks that it exists (and that we may switch to it)
    return Status::Ok();
  }
  if (geteuid() != 0) return Status::Ok();
  if (exists(kInstanceUser)) {
    *user = kInstanceUser;
  } else if (exists("nobody")) {
    *user = "nobody";
    LogWarn(std::string("no user ") + kInstanceUser +
            ": instances run as nobody (create it with scripts/setup.sh, or useradd --system --user-group "
            "--no-create-home --shell /usr/sbin/nologin " + kInstanceUser + ")");
  } else {
    return Status(Code::kFailedPrecondition, std::string("neither ") + kInstanceUser +
                                                 " nor nobody exists to run instances as: create one, or pass "
                                                 "--instance-user");
  }
  return Status::Ok();
}

// Instances of `user` reach their code and sockets below the data dir: every
// directory above it must be searchable by that user (owner, group or other
// x bit; ACLs are not read).
Status CheckReachable(const std::string& data_dir, const std::string& user) {
  std::vector<char> buf(16384);
  struct passwd pw, *found = nullptr;
  getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
  if (found == nullptr && !user.empty() && user.find_first_not_of("0123456789") == std::string::npos) {
    getpwuid_r(static_cast<uid_t>(std::stoul(user)), &pw, buf.data(), buf.size(), &found);
  }
  if (found == nullptr) return InvalidArgument("instance user \"" + user + "\" not found (--instance-user)");
  std::string path;
  for (const auto& part : fs::path(data_dir).parent_path()) {
    if (part == "/") continue;
    path += "/" + part.string();
    struct stat st;
    if (stat(path.c_str(), &st) != 0) continue;
    bool ok = (st.st_mode & S_IXOTH) || (st.st_uid == found->pw_uid && (st.st_mode & S_IXUSR)) ||
              (st.st_gid == found->pw_gid && (st.st_mode & S_IXGRP));
    if (!ok) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      return Status(Code::kFailedPrecondition,
                    "instances run as " + user + " cannot reach the data dir " + data_dir + ": " + path + " is mode " +
                        mode + "; make it searchable (chmod o+x " + path + "), or use another --data-dir (e.g. /var/lib/lever)");
    }
  }
  return Status::Ok();
}

// A listen address on this machine's loopback only.
bool IsLoopbackListen(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "[::1]";
}

// --admin-token-required's "auto": on when callers from elsewhere can reach
// the node (a non-loopback listen address, a cluster registry).
bool AdminTokenRequired(const Flags& f) {
  if (f.admin_token_required != "auto") return f.admin_token_required == "true";
  return !IsLoopbackListen(f.listen) || f.registry.rfind("etcd://", 0) == 0;
}

// The admin token, created once (0600) in the data dir.
Status LoadToken(const std::string& data_dir, std::string* token) {
  std::string path = data_dir + "/admin.token";
  std::ifstream in(path);
  if (in && std::getline(in, *token) && token->size() >= 32) return Status::Ok();
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  token->clear();
  for (int i = 0; i < 40; ++i) token->push_back(kAlphabet[rd() % 62]);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status(Code::kInternal, "cannot write " + path);
  std::string line = *token + "\n";
  bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  fchmod(fd, 0600);
  close(fd);
  return ok ? Status::Ok() : Status(Code::kInternal, "cannot write " + path);
}

// The cluster token: --cluster-token, else the first line of
// --cluster-token-file. Empty when neither is set.
Status LoadClusterToken(const Flags& f, std::string* token) {
  *token = f.cluster_token;
  if (!token->empty() || f.cluster_token_file.empty()) return Status::Ok();
  std::ifstream in(f.cluster_token_file);
  if (!in) return Status(Code::kInvalidArgument, "cannot read --cluster-token-file " + f.cluster_token_file);
  std::getline(in, *token);
  while (!token->empty() && (token->back() == '\r' || token->back() == ' ')) token->pop_back();
  if (token->empty()) return Status(Code::kInvalidArgument, "--cluster-token-file " + f.cluster_token_file + " is empty");
  return Status::Ok();
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == 0) return "node";
  return name;
}

// Routes to the host once it exists; the gateway starts first so that the
// host can ask it for internal listeners while it starts instances.
class ForwardingRouter final : public host::Router {
 public:
  void Set(host::RouterPtr target) {
    std::unique_lock lock(mu_);
    target_ = std::move(target);
  }
  void Route(const host::RouteRequest& request, std::function<void(host::RouteResult)> done) override {
    (void)RouteCancellable(request, std::move(done));
  }
  host::PendingRoute RouteCancellable(const host::RouteRequest& request,
                                      std::function<void(host::RouteResult)> done) override {
    host::RouterPtr target = Get();
    if (!target) {
      done({Status(Code::kUnavailable, "leverd is starting"), nullptr});
      return {};
    }
    return target->RouteCancellable(request, std::move(done));
  }
  void CancelRoute(const host::PendingRoute& pending) override {
    if (host::RouterPtr target = Get()) target->CancelRoute(pending);
  }

 private:
  host::RouterPtr Get() {
    std::shared_lock lock(mu_);
    return target_;
  }
  std::shared_mutex mu_;
  host::RouterPtr target_;
};

// Where each language's runner goes in the process runtime's options.
std::string* RunnerSlot(std::string_view language, host::ProcessRuntimeOptions* process) {
  if (language == "js") return &process->lever_serve;
  if (language == "py") return &process->lever_serve_py;
  return nullptr;
}

// Finds each language's runner (runners.h) and logs the choice. False when a
// flag or variable names something that cannot run.
bool FindRunners(const Flags& f, host::ProcessRuntimeOptions* process) {
  RunnerLookup lookup = RunnerLookup::ForThisProcess();
  for (size_t i = 0; i < std::size(kRunners); ++i) {
    const RunnerSpec& spec = kRunners[i];
    RunnerChoice choice;
    if (Status s = FindRunner(spec, f.runners[i], lookup, &choice); !s.ok()) {
      LogError(s.message());
      return false;
    }
    if (choice.path.empty()) {
      std::string tried;
      for (const auto& t : choice.tried) tried += (tried.empty() ? "" : ", ") + t;
      LogWarn("no runner for " + std::string(spec.entry_key) + " services (looked at " + tried + "): they cannot start; set " +
              RunnerFlag(spec) + " or $" + RunnerEnvVar(spec));
    } else {
      LogInfo(std::string(spec.entry_key) + " services run with " + choice.path + " (" + choice.found + ")");
    }
    if (std::string* slot = RunnerSlot(spec.language, process)) *slot = choice.path;
  }
  return true;
}

// A unix socket path for an environment's internal listener, short enough
// for sun_path whatever the env name.
std::string InternalSocketPath(const std::string& run_dir, std::string_view env) {
  std::string path = run_dir + "/env-" + std::string(env) + ".sock";
  if (path.size() < 100) return path;
  return run_dir + "/env-" + std::to_string(std::hash<std::string_view>{}(env)) + ".sock";
}

// A comma-separated flag's items, spaces trimmed, empty ones dropped.
std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> out;
  for (size_t at = 0; at < list.size();) {
    size_t comma = std::min(list.find(',', at), list.size());
    std::string item = list.substr(at, comma - at);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
    at = comma + 1;
  }
  return out;
}

int Run(const Flags& f) {
  std::chrono::milliseconds idle, grace, cold, http_idle, stable, panic, resource_idle, ws_idle, lease_ttl;
  std::chrono::milliseconds preface, h2_client_settings, h2_instance_settings, h2_client_idle, h2_client_write;
  if (!ParseDuration(f.preface_timeout, &preface) || !ParseDuration(f.h2_client_settings_timeout, &h2_client_settings) ||
      !ParseDuration(f.h2_instance_settings_timeout, &h2_instance_settings) ||
      !ParseDuration(f.h2_client_idle_timeout, &h2_client_idle) ||
      !ParseDuration(f.h2_client_write_timeout, &h2_client_write) || preface.count() <= 0 ||
      h2_client_settings.count() <= 0 || h2_instance_settings.count() <= 0) {
    LogError("bad HTTP/2 timeout flag (a duration such as 500ms or 10s; only the idle and write timeouts may be 0)");
    return 2;
  }
  if (!ParseDuration(f.idle_timeout, &idle) || !ParseDuration(f.grace, &grace) || !ParseDuration(f.lease_ttl, &lease_ttl) ||
      !ParseDuration(f.cold_start_wait, &cold) || !ParseDuration(f.http_idle_timeout, &http_idle) ||
      !ParseDuration(f.stable_window, &stable) || !ParseDuration(f.panic_window, &panic) ||
      !ParseDuration(f.resource_idle, &resource_idle) || !ParseDuration(f.ws_idle_timeout, &ws_idle)) {
    LogError("bad duration flag (use 500ms, 30s, 5m, 1h)");
    return 2;
  }
  std::error_code ec;
  std::string data_dir = fs::absolute(f.data_dir, ec).string();
  fs::create_directories(data_dir + "/run", ec);
  if (ec) {
    LogError("cannot create data dir " + data_dir + ": " + ec.message());
    return 1;
  }
  std::string instance_user;
  if (Status s = ResolveInstanceUser(f.instance_user, &instance_user); !s.ok()) {
    LogError(s.message());
    return 2;
  }
  if (!instance_user.empty()) {
    if (Status s = CheckReachable(data_dir, instance_user); !s.ok()) {
      LogError(s.message());
      return 1;
    }
  }
  // Instances of another user may pass through the data dir (to run/ and
  // their code) but not list it; its files are leverd's alone.
  chmod(data_dir.c_str(), instance_user.empty() ? 0700 : 0711);
  std::string token;
  if (Status s = LoadToken(data_dir, &token); !s.ok()) {
    LogError(s.message());
    return 1;
  }

  std::string cluster_token;
  if (Status s = LoadClusterToken(f, &cluster_token); !s.ok()) {
    LogError(s.message());
    return 2;
  }
  if (!f.advertise.empty() && cluster_token.size() < 16) {
    LogError("--advertise needs --cluster-token or --cluster-token-file with a token of at least 16 bytes, "
             "the same on every node (docs/cluster.md)");
    return 2;
  }
  if (lease_ttl < std::chrono::seconds(1)) {
    LogError("--lease-ttl must be at least 1s");
    return 2;
  }

  host::ProcessRuntimeOptions process;
  if (!FindRunners(f, &process)) return 2;
  process.user = instance_user;
  // A root leverd left to choose (auto) gives each service its own user.
  std::string per_service;
  if (geteuid() == 0 && f.instance_user == "auto" && f.instance_ids != "none") {
    unsigned long first = 0, last = 0;
    char dash = 0, extra = 0;
    if (std::sscanf(f.instance_ids.c_str(), "%lu%c%lu%c", &first, &dash, &last, &extra) != 3 || dash != '-' ||
        first == 0 || last < first || last >= 0xfffffffful) {
      LogError("bad --instance-ids \"" + f.instance_ids + "\" (FIRST-LAST, e.g. 61184-65519, or none)");
      return 2;
    }
    if (Status s = host::InstanceIds::Open(data_dir + "/instance-ids", static_cast<uint32_t>(first),
                                           static_cast<uint32_t>(last), &process.ids);
        !s.ok()) {
      LogError(s.message());
      return 1;
    }
    per_service = f.instance_ids;
  }

  // Block the stop signals in every thread; main waits for them below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto router = std::make_shared<ForwardingRouter>();
  gateway::GatewayOptions go;
  go.listen = f.listen;
  go.workers = f.workers;
  go.busy_poll = std::chrono::microseconds(f.busy_poll_us);
  go.http.max_body_bytes = f.http_max_body_kib << 10;  // the HTTP API (gateway/http_api.md)
  go.http.idle_timeout = http_idle;
  // WebSocket calls and the status page (gateway/websocket.md, gateway/status_page.md).
  go.http.websocket.max_message_bytes = f.ws_max_message_kib << 10;
  go.http.websocket.max_frame_bytes = f.ws_max_frame_kib << 10;
  go.http.websocket.idle_timeout = ws_idle;
  go.http.websocket.allowed_origins = SplitList(f.ws_allowed_origins);
  go.http.admin_token = token;
  go.cluster_token = cluster_token;
  go.peer_blob_dir = data_dir + "/blobs";
  go.sniff_timeout = preface;
  go.client_settings_timeout = h2_client_settings;
  go.instance_settings_timeout = h2_instance_settings;
  go.client_idle_timeout = h2_client_idle;
  go.client_write_timeout = h2_client_write;
  go.max_concurrent_streams = f.h2_max_concurrent_streams;
  go.max_header_list_bytes = f.h2_max_header_list_kib << 10;
  go.max_connections = f.max_connections;
  go.max_connections_per_worker = f.max_connections_per_worker;
  auto gw = std::make_unique<gateway::Gateway>(go, router);
  if (Status s = gw->Start(); !s.ok()) {
    LogError("cannot listen on " + f.listen + ": " + s.message());
    return 1;
  }
  // The peer port listens before the node joins, so that others can relay
  // to it as soon as they see it.
  if (!f.advertise.empty()) {
    if (Status s = gw->AddPeerListener(f.advertise); !s.ok()) {
      LogError("cannot listen on the peer port " + f.advertise + ": " + s.message());
      gw->Stop(std::chrono::milliseconds(0));
      return 1;
    }
  }

  std::string run_dir = data_dir + "/run";
  std::mutex listeners_mu;
  host::HostOptions ho;
  ho.process = std::move(process);  // with the runners found above
  ho.process.prestart = f.prestart;
  ho.process.socket_activation = f.socket_activation;
  ho.runtime = f.runtime;
  ho.docker.ids = ho.process.ids;  // per-service users for containers too
  ho.docker.host = f.docker_host;
  ho.docker.network = f.docker_network;
  ho.docker.image = f.docker_image;
  ho.docker.mounts = SplitList(f.docker_mounts);
  ho.docker.create_ahead = f.docker_create_ahead;
  ho.data_dir = data_dir;
  ho.registry_url = f.registry;
  ho.cluster.node_name = f.node_name.empty() ? HostName() : f.node_name;
  ho.cluster.advertise = f.advertise;
  ho.cluster.token = cluster_token;
  ho.cluster.lease_ttl = std::chrono::duration_cast<std::chrono::seconds>(lease_ttl);
  ho.idle_timeout = idle;
  ho.cold_start_wait = cold;
  ho.autoscale_stable_window = stable;
  ho.autoscale_panic_window = panic;
  ho.resource_idle = resource_idle;
  ho.max_instances_per_service = f.max_instances;
  ho.max_waiting_calls = f.max_waiting_calls;
  ho.count_at_placement = true;  // the gateway owes OnCallEnd for every placed call (router.h)
  ho.deploy.max_compressed_bytes = uint64_t{f.max_upload_mib} << 20;
  ho.deploy.max_uncompressed_bytes = uint64_t{f.max_unpacked_mib} << 20;
  ho.admin_address = "unix:" + run_dir + "/admin.sock";
  ho.log_sink = [](std::string_view line) { Log(LogLevel::kInfo, "instance", line); };
  gateway::Gateway* gw_ptr = gw.get();
  ho.ensure_internal_listener = [gw_ptr, run_dir, &listeners_mu, per_service, known = std::make_shared<std::set<std::string>>()](
                                    std::string_view env, std::string* path) -> Status {
    std::lock_guard<std::mutex> lock(listeners_mu);
    *path = InternalSocketPath(run_dir, env);
    if (known->count(std::string(env))) return Status::Ok();
    Status s = gw_ptr->AddInternalListener(std::string(env), *path);
    if (s.ok()) known->insert(std::string(env));
    // Instances of another user connect to it: anyone's with one user for
    // all; with per-service users, the env's group's (the process runtime
    // sets it at each start).
    if (s.ok()) chmod(path->c_str(), per_service.empty() ? 0666 : 0660);
    return s;
  };
  std::shared_ptr<host::Host> host;
  if (Status s = host::Host::Create(std::move(ho), &host); !s.ok()) {
    LogError("cannot start the host: " + s.ToString());
    gw->Stop(std::chrono::milliseconds(0));
    return 1;
  }
  std::unique_ptr<admin::AdminService> admin;
  admin::AdminOptions ao;
  ao.listen_addr = "unix:" + run_dir + "/admin.sock";
  unlink((run_dir + "/admin.sock").c_str());
  ao.token = token;
  ao.token_required = AdminTokenRequired(f);
  ao.log = [](std::string_view line) { LogInfo(line); };
  if (Status s = admin::AdminService::Start(ao, host, &admin); !s.ok()) {
    LogError("cannot start the admin service: " + s.ToString());
    gw->Stop(std::chrono::milliseconds(0));
    return 1;
  }
  // Only leverd (its gateway) talks to the admin socket; the registry, the
  // token, the lock and the uploads are leverd's; code/ is not listable.
  chmod((run_dir + "/admin.sock").c_str(), 0600);
  for (const char* name : {"lever.db", "lever.db-wal", "lever.db-shm", "leverd.lock", "admin.token"}) {
    chmod((data_dir + "/" + name).c_str(), 0600);
  }
  chmod((data_dir + "/code").c_str(), 0711);
  chmod((data_dir + "/blobs").c_str(), 0700);  // every version's upload: no instance reads these
  if (!per_service.empty()) {
    LogInfo("process instances run as per-service users (uids " + per_service + ", data-dir/instance-ids)");
  } else if (!instance_user.empty()) {
    LogInfo("process instances run as " + instance_user);
  }
  router->Set(host);
  LogInfo(std::string("admin calls need the token from ") +
          (ao.token_required ? "every caller (--admin-token-required)" : "all but loopback TCP callers"));
  LogInfo("leverd " LEVER_VERSION " listening on " + f.listen.substr(0, f.listen.rfind(':')) + ":" +
          std::to_string(gw->port()) + " (data dir " + data_dir + ")" +
          (f.advertise.empty() ? std::string() : ", node " + (f.node_name.empty() ? HostName() : f.node_name) + ", peer port " + f.advertise));

  int sig = 0;
  sigwait(&stop_signals, &sig);
  LogInfo(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + ", draining calls in flight");
  gw->Stop(grace);
  admin->Shutdown(std::chrono::milliseconds(1000));
  router->Set(nullptr);
  host.reset();  // stops every instance
  admin.reset();
  gw.reset();
  LogInfo("stopped");
  return 0;
}

}  // namespace
}  // namespace lever::leverd

int main(int argc, char** argv) {
  using lever::leverd::Flags;
  CLI::App app{"leverd: the Lever node daemon (gateway, host and admin service in one process)"};
  app.set_version_flag("--version", std::string("leverd ") + LEVER_VERSION);
  Flags f;
  f.data_dir = lever::cli::DefaultDataDir();
  // Every flag can be set in a config file, and the command line wins.
  app.config_formatter(std::make_shared<lever::leverd::ConfigFile>(&app));
  app.set_config("--config", "",
                 "Read flags from this file: one `flag-name = value` a line (TOML), e.g. listen = \"0.0.0.0:8080\"; "
                 "flags given here win (the package's: /etc/lever/leverd.conf)");
  bool print_config = false;
  app.add_flag("--print-config", print_config,
               "Print the settings in effect (defaults, then the config file, then flags) as a config file, and exit")
      ->configurable(false);
  app.add_option("--listen", f.listen, "Public address for gRPC (h2c) and HTTP, host:port")->capture_default_str();
  app.add_option("--data-dir", f.data_dir,
                 "Code, registry and sockets (default: $LEVER_DATA_DIR, systemd's $STATE_DIRECTORY, "
                 "/var/lib/lever for root, $XDG_DATA_HOME/lever, ~/.lever)")
      ->capture_default_str();
  app.add_option("--registry", f.registry,
                 "Where environments, services and versions live: embedded: (SQLite in the data dir) or "
                 "etcd://h1:2379,h2:2379,h3:2379[/prefix] (docs/cluster.md)")
      ->capture_default_str();
  app.add_option("--node-name", f.node_name, "This node's name in a cluster (default: the host name)")
      ->capture_default_str();
  app.add_option("--advertise", f.advertise,
                 "Join the cluster on the etcd registry: this node's peer port, ip:port, where the others relay "
                 "calls and fetch code (leverd listens there; docs/cluster.md)")
      ->capture_default_str();
  app.add_option("--cluster-token", f.cluster_token,
                 "The secret every node of the cluster shares (at least 16 bytes); prefer --cluster-token-file")
      ->capture_default_str();
  app.add_option("--cluster-token-file", f.cluster_token_file, "Read the cluster token from this file's first line")
      ->capture_default_str();
  app.add_option("--lease-ttl", f.lease_ttl,
                 "A cluster node's etcd lease: its instances leave the others' routing this long after it dies")
      ->capture_default_str();
  app.add_option("--workers", f.workers, "Gateway worker threads (0: one per core)")->capture_default_str();
  app.add_option("--busy-poll-us", f.busy_poll_us,
                 "A gateway worker that has had at most 4 calls open at once since it last slept polls its "
                 "sockets this many microseconds after each burst of work before it sleeps: lower latency at "
                 "low load for a spinning core (0: off)")
      ->check(CLI::Range(uint32_t{0}, uint32_t{10000}))
      ->capture_default_str();
  app.add_option("--idle-timeout", f.idle_timeout, "Scale a service to zero after this long without calls")
      ->capture_default_str();
  app.add_option("--grace", f.grace, "On SIGTERM, how long calls in flight may take to finish")
      ->capture_default_str();
  app.add_option("--cold-start-wait", f.cold_start_wait, "How long a call waits for an instance to start")
      ->capture_default_str();
  app.add_option("--max-instances", f.max_instances, "Instances per service, at most")->capture_default_str();
  app.add_option("--prestart", f.prestart,
                 "Processes forked ahead into their cgroups for the next cold starts (0: fork at each start)")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  app.add_option("--socket-activation", f.socket_activation,
                 "Make each process instance's listening socket and pass it in (LEVEROS_LISTEN_FD): calls queue "
                 "in the kernel until it accepts")
      ->default_str("true");
  app.add_option("--max-waiting-calls", f.max_waiting_calls,
                 "Calls that may wait for an instance, per service (RESOURCE_EXHAUSTED beyond)")
      ->capture_default_str();
  app.add_option("--autoscale-stable-window", f.stable_window,
                 "Autoscaler: the average concurrency over this window sets the instance count")
      ->capture_default_str();
  app.add_option("--autoscale-panic-window", f.panic_window,
                 "Autoscaler: a peak over this window that needs 2x the instances scales up at once")
      ->capture_default_str();
  app.add_option("--resource-idle", f.resource_idle,
                 "A resource with no call for this long is closed on its instance (CloseResource)")
      ->capture_default_str();
  app.add_option("--max-upload-mib", f.max_upload_mib, "Largest deploy upload (compressed)")->capture_default_str();
  app.add_option("--max-unpacked-mib", f.max_unpacked_mib, "Largest deploy once unpacked")->capture_default_str();
  app.add_option("--http-max-body-kib", f.http_max_body_kib, "Largest body of a non-streaming HTTP API call (413 beyond)")
      ->capture_default_str();
  app.add_option("--http-idle-timeout", f.http_idle_timeout,
                 "HTTP API: a request's headers must arrive, and a stream or response must move, within this")
      ->capture_default_str();
  app.add_option("--ws-max-message-kib", f.ws_max_message_kib,
                 "WebSocket: largest message a client may send (closed with 1009 beyond)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--ws-max-frame-kib", f.ws_max_frame_kib, "WebSocket: largest frame leverd sends (longer messages are fragmented)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--ws-idle-timeout", f.ws_idle_timeout,
                 "WebSocket: close a client that sends nothing, not even a pong, for this long (pinged at half of it)")
      ->capture_default_str();
  app.add_option("--ws-allowed-origins", f.ws_allowed_origins,
                 "WebSocket: origins pages may connect from, comma-separated (default: any)")
      ->capture_default_str();
  app.add_flag("--admin-token-required{true}", f.admin_token_required,
               "Admin calls need the token from loopback callers too: true, false, or auto (on when --listen is "
               "not a loopback address or --registry is etcd://)")
      ->check(CLI::IsMember({"auto", "true", "false"}))
      ->default_str("auto");
  app.add_option("--preface-timeout", f.preface_timeout,
                 "A new connection must send its first bytes (the HTTP/2 preface or an HTTP request line) within this")
      ->capture_default_str();
  app.add_option("--h2-client-settings-timeout", f.h2_client_settings_timeout,
                 "HTTP/2: a client must send SETTINGS and acknowledge leverd's within this (GOAWAY SETTINGS_TIMEOUT)")
      ->capture_default_str();
  app.add_option("--h2-instance-settings-timeout", f.h2_instance_settings_timeout,
                 "HTTP/2: an instance must send SETTINGS and acknowledge leverd's within this, or its calls go elsewhere")
      ->capture_default_str();
  app.add_option("--h2-client-idle-timeout", f.h2_client_idle_timeout,
                 "HTTP/2: close a client connection with no open call for this long (GOAWAY; 0: never)")
      ->capture_default_str();
  app.add_option("--h2-client-write-timeout", f.h2_client_write_timeout,
                 "HTTP/2: close a client connection that reads nothing leverd writes for this long, and reset a call "
                 "whose response waits this long on a window the client keeps shut (0: never)")
      ->capture_default_str();
  app.add_option("--h2-max-concurrent-streams", f.h2_max_concurrent_streams,
                 "HTTP/2: calls one client connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)")
      ->check(CLI::Range(uint32_t{1}, uint32_t{1} << 20))
      ->capture_default_str();
  app.add_option("--h2-max-header-list-kib", f.h2_max_header_list_kib,
                 "HTTP/2: largest header list of a call's request (RESOURCE_EXHAUSTED beyond) or response")
      ->check(CLI::Range(uint32_t{1}, uint32_t{1} << 14))
      ->capture_default_str();
  app.add_option("--max-connections", f.max_connections,
                 "Open client connections at most (gRPC, HTTP, WebSocket), beyond refused with GOAWAY (0: no cap)")
      ->capture_default_str();
  app.add_option("--max-connections-per-worker", f.max_connections_per_worker,
                 "Open client connections per gateway worker at most (0: no cap)")
      ->capture_default_str();
  app.add_option("--instance-user", f.instance_user,
                 "User that process instances run as: a name or uid (one user for all); auto: when leverd runs "
                 "as root, each service its own user from --instance-ids, else leverd's own user; root: never "
                 "switch (unsafe)")
      ->capture_default_str();
  app.add_option("--instance-ids", f.instance_ids,
                 "With --instance-user auto under root: the uids (and gids) given to services and environments, "
                 "FIRST-LAST; ids of existing users and groups are skipped; none: lever-instance for all")
      ->capture_default_str();
  for (size_t i = 0; i < std::size(lever::leverd::kRunners); ++i) {
    const auto& spec = lever::leverd::kRunners[i];
    app.add_option(lever::leverd::RunnerFlag(spec), f.runners[i],
                   "Program that runs " + std::string(spec.entry_key) + " services (default: $" +
                       lever::leverd::RunnerEnvVar(spec) + ", else the install's or the build tree's " +
                       std::string(spec.program) + ", else " + std::string(spec.program) + " on PATH)")
        ->capture_default_str();
  }
  app.add_option("--runtime", f.runtime,
                 "Where instances run: process (child processes) or docker (containers on dockerd, docs/docker.md); "
                 "a service's lever.json \"runtime\" overrides it")
      ->check(CLI::IsMember({"process", "docker"}))
      ->capture_default_str();
  app.add_option("--docker-host", f.docker_host, "dockerd's API socket for the docker runtime, unix:///path")
      ->capture_default_str();
  app.add_option("--docker-network", f.docker_network,
                 "Network of docker instances: bridge, none, host or a network's name (calls reach instances "
                 "through a mounted socket whatever it is)")
      ->capture_default_str();
  app.add_option("--docker-image", f.docker_image,
                 "Image docker instances run; leverd imports it (a rootfs of mount points) when missing")
      ->capture_default_str();
  app.add_option("--docker-mounts", f.docker_mounts,
                 "More host dirs bind-mounted read-only into docker instances, comma-separated (beside /usr, "
                 "/lib* and the language runners)")
      ->capture_default_str();
  app.add_option("--docker-create-ahead", f.docker_create_ahead,
                 "After a docker instance of a version starts, create (not start) the container for its next "
                 "start, so that a cold start only starts it (docs/docker.md)")
      ->default_str("true");
  app.add_option("--log-format", f.log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--log-level", f.log_level, "debug, info, warn or error")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (print_config) {
    std::fputs(app.config_to_str(true, true).c_str(), stdout);
    return 0;
  }
  lever::leverd::LogConfig lc;
  lc.json = f.log_format == "json";
  if (!lever::leverd::ParseLogLevel(f.log_level, &lc.level)) {
    std::fprintf(stderr, "leverd: bad --log-level %s\n", f.log_level.c_str());
    return 2;
  }
  lever::leverd::ConfigureLog(lc);
  return lever::leverd::Run(f);
}
