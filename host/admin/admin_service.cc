#include "lever/admin/admin_service.h"

#include <chrono>
#include <ctime>

#include "lever/admin/admin_api.h"

namespace lever::admin {
namespace {

using host::Host;

// An application error with a string value: what the original clients print.
Result AppError(const Status& s) { return Result::AppError(Value(s.message())); }

// A TCP peer on this machine's loopback. The instances' internal sockets
// ("unix:...") are not: an instance is other people's code.
bool IsLoopback(std::string_view addr) {
  return addr.starts_with("127.") || addr.starts_with("[::1]:") || addr.starts_with("[::ffff:127.");
}

// Compares in time that depends only on the lengths.
bool TokenEquals(std::string_view given, std::string_view token) {
  if (token.empty() || given.size() != token.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < token.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ token[i]);
  return diff == 0;
}

}  // namespace

Status CheckAdminAccess(std::string_view peer, std::string_view given_token, std::string_view token,
                        bool token_required) {
  if (TokenEquals(given_token, token)) return Status::Ok();
  if (!token_required && IsLoopback(peer)) return Status::Ok();
  std::string who = peer.empty() ? std::string("a direct connection to the admin socket")
                    : peer.starts_with("unix:") ? "an instance (" + std::string(peer) + ")"
                                                : std::string(peer);
  return Status(Code::kPermissionDenied,
                "admin calls from " + who + " need the lever-admin-token metadata (the token in <data-dir>/admin.token" +
                    (given_token.empty() ? std::string(")") : std::string("; the one given is wrong)")));
}

namespace {

// Admin calls need the token, except from TCP loopback when leverd does not
// require it there (DESIGN.md "Security", docs/security.md).
Status CheckAccess(const CallContext& ctx, const AdminOptions& options) {
  return CheckAdminAccess(ctx.Metadata("x-lever-client-addr"), ctx.Metadata("lever-admin-token"), options.token,
                          options.token_required);
}

bool StringArg(const Array& args, size_t i, std::string* out) {
  if (i >= args.size()) return i > 0;  // optional trailing arguments default to ""
  if (!args[i].is_string()) return false;
  *out = args[i].as_string();
  return true;
}

void Log(const AdminOptions& options, const std::string& line) {
  if (options.log) options.log(line);
}

Value ServiceRow(const host::ServiceStatus& st) {
  const host::ServiceInfo& s = st.info;
  Map row{{"env", s.env},
          {"name", s.name},
          {"description", s.description},
          {"private", s.is_private},
          {"liveVersion", s.live_version},
          {"desired", st.desired},
          {"reason", st.reason},
          {"waiting", st.waiting}};
  if (st.rollout_version > 0) row.Set("rolloutVersion", st.rollout_version);
  return Value(std::move(row));
}

std::string IsoTime(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm;
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

Status ServiceRows(Host& host, std::string_view env, Array* rows) {
  std::vector<std::string> envs;
  if (env.empty()) {
    std::vector<host::EnvironmentInfo> all;
    if (Status e = host.ListEnvironments(&all); !e.ok()) return e;
    for (auto& e : all) envs.push_back(e.name);
  } else {
    envs.emplace_back(env);
  }
  for (const auto& e : envs) {
    std::vector<host::ServiceStatus> services;
    if (Status st = host.ListServiceStatus(e, &services); !st.ok()) return st;
    for (const auto& sv : services) rows->push_back(ServiceRow(sv));
  }
  return Status::Ok();
}

Status InstanceRows(Host& host, std::string_view env, Array* rows) {
  std::vector<host::InstanceInfo> instances;
  if (Status e = host.ListInstances(env, "", &instances); !e.ok()) return e;
  for (const auto& i : instances) {
    rows->push_back(Map{{"env", i.env},
                        {"service", i.service},
                        {"id", i.instance_id},
                        {"version", i.version},
                        {"pid", i.pid},
                        {"state", i.state},
                        {"inFlight", i.calls_in_flight},
                        {"startedAt", IsoTime(i.started_at)},
                        {"node", i.node},
                        {"socket", i.socket},
                        {"resources", [&] {
                           Array r;
                           for (const auto& name : i.resources) r.push_back(Value(name));
                           return Value(std::move(r));
                         }()}});
  }
  return Status::Ok();
}

Status NodeStatus(Host& host, std::string_view env, Value* out) {
  Array services, instances;
  if (Status s = ServiceRows(host, env, &services); !s.ok()) return s;
  if (Status s = InstanceRows(host, env, &instances); !s.ok()) return s;
  Array nodes;  // the cluster's (docs/cluster.md); empty on a single node
  for (const auto& n : host.ListNodes()) {
    nodes.push_back(Map{{"name", n.name},
                        {"address", n.address},
                        {"self", n.self},
                        {"health", n.healthy ? "healthy" : "unreachable"},
                        {"instances", n.instances}});
  }
  *out = Value(Map{{"services", std::move(services)}, {"instances", std::move(instances)}, {"nodes", std::move(nodes)}});
  return Status::Ok();
}

namespace {

void Deploy(const std::shared_ptr<Host>& host, const AdminOptions& options, ServerStreamPtr stream) {
  const CallContext& ctx = stream->context();
  if (Status s = CheckAccess(ctx, options); !s.ok()) return stream->Finish(Result::Failed(s));
  Array& args = stream->args();
  if (args.empty() || args.size() > 2 || !args[0].is_string()) {
    return stream->Finish(AppError(InvalidArgument("DeployServiceChan takes the environment name")));
  }
  std::string env = args[0].as_string();
  bool report = false, steps = false;
  if (args.size() == 2 && args[1].is_map()) {
    const Value* r = args[1].as_map().Find("reportVersion");
    report = r && r->is_bool() && r->as_bool();
    const Value* st = args[1].as_map().Find("reportSteps");
    steps = st && st->is_bool() && st->as_bool();
  }
  std::unique_ptr<host::DeploySession> session;
  Status failed = host->BeginDeploy(env, &session);
  size_t discarded = 0;
  for (;;) {
    Result m = stream->Receive();
    if (m.is_end()) break;
    if (m.is_platform_error()) return;  // cancelled: the session's destructor cleans up
    if (m.is_app_error()) {
      failed = InvalidArgument("the client sent an error");
      break;
    }
    if (!failed.ok()) {
      // Keep reading so the client's sends succeed and it reaches its
      // Receive, where it sees our error; bounded.
      discarded += m.value.is_bytes() ? m.value.as_bytes().size() : 1;
      if (discarded > options.max_discard_bytes) break;
      continue;
    }
    if (!m.value.is_bytes()) {
      failed = InvalidArgument("Error trying to untar file: expected byte messages");
      continue;
    }
    failed = session->Write(m.value.as_bytes().view());
  }
  host::DeployResult result;
  if (failed.ok()) failed = session->Finish(&result);
  session.reset();
  if (!failed.ok()) {
    Log(options, "deploy to " + env + " failed: " + failed.message());
    return stream->Finish(AppError(failed));
  }
  Log(options, "uploaded lever://" + result.env + "/" + result.service + " v" + std::to_string(result.version) +
                   ", starting it");
  if (report) {
    (void)stream->Send(Value(Map{{"service", result.service}, {"version", result.version}}));
  }
  if (steps) (void)stream->Send(Value(Map{{"step", "starting"}, {"version", result.version}}));
  // The deploy ends when the new version is live, or failed to start (the
  // old one then stays live).
  Status live = host->AwaitRollout(result.env, result.service, result.version,
                                   std::chrono::steady_clock::now() + options.rollout_wait);
  if (!live.ok()) {
    Log(options, "deploy of lever://" + result.env + "/" + result.service + " v" + std::to_string(result.version) +
                     " failed: " + live.message());
    return stream->Finish(AppError(live));
  }
  Log(options, "lever://" + result.env + "/" + result.service + " v" + std::to_string(result.version) + " is live");
  if (steps) (void)stream->Send(Value(Map{{"step", "switched"}, {"version", result.version}}));
  stream->Finish(Result::End());
}

void Logs(const std::shared_ptr<Host>& host, const AdminOptions& options, ServerStreamPtr stream) {
  if (Status s = CheckAccess(stream->context(), options); !s.ok()) return stream->Finish(Result::Failed(s));
  Array& args = stream->args();
  std::string env, service;
  if (!StringArg(args, 0, &env) || !StringArg(args, 1, &service) || args.size() < 2) {
    return stream->Finish(AppError(InvalidArgument("LogsChan takes (env, service, {follow, lines})")));
  }
  bool follow = false;
  size_t lines = 100;
  if (args.size() > 2 && args[2].is_map()) {
    if (const Value* f = args[2].as_map().Find("follow"); f && f->is_bool()) follow = f->as_bool();
    if (const Value* n = args[2].as_map().Find("lines"); n && n->is_int() && n->as_int() >= 0) {
      lines = static_cast<size_t>(std::min<int64_t>(n->as_int(), 100000));
    }
  }
  std::vector<host::LogLine> out;
  if (Status s = host->TailLogs(env, service, lines, &out); !s.ok()) return stream->Finish(AppError(s));
  uint64_t seq = 0;
  for (const auto& l : out) {
    if (!stream->Send(Value(l.text)).ok()) return;
    seq = l.seq;
  }
  while (follow && !stream->context().cancelled()) {
    out.clear();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    if (Status s = host->ReadLogs(env, service, seq, 1000, deadline, &out); !s.ok()) {
      return stream->Finish(AppError(s));
    }
    for (const auto& l : out) {
      if (!stream->Send(Value(l.text)).ok()) return;
      seq = l.seq;
    }
  }
  stream->Finish(Result::End());
}

}  // namespace

Status AdminService::Start(AdminOptions options, std::shared_ptr<Host> host, std::unique_ptr<AdminService>* out) {
  ServerOptions so;
  so.listen_addr = options.listen_addr;
  so.max_message_bytes = 1 << 20;  // deploy chunks are 32 KiB
  auto server = std::make_unique<Server>(so);
  auto opts = std::make_shared<AdminOptions>(std::move(options));

  auto unary = [&](std::string_view name, std::function<Result(const Array&)> fn) {
    return server->Handle(std::string(name), [opts, fn](const CallContext& ctx, Array& args) {
      if (Status s = CheckAccess(ctx, *opts); !s.ok()) return Result::Failed(s);
      return fn(args);
    });
  };
  Status s = server->HandleStream(std::string(kDeploy),
                                  [host, opts](ServerStreamPtr st) { Deploy(host, *opts, std::move(st)); });
  if (s.ok()) {
    s = server->HandleStream(std::string(kLogs),
                             [host, opts](ServerStreamPtr st) { Logs(host, *opts, std::move(st)); });
  }
  if (s.ok()) {
    s = unary(kListEnvironments, [host](const Array&) {
      std::vector<host::EnvironmentInfo> envs;
      if (Status e = host->ListEnvironments(&envs); !e.ok()) return AppError(e);
      Array rows;
      for (const auto& e : envs) rows.push_back(Map{{"name", e.name}, {"description", e.description}});
      return Result::Of(Value(std::move(rows)));
    });
  }
  if (s.ok()) {
    s = unary(kCreateEnvironment, [host, opts](const Array& args) {
      std::string name, desc;
      if (args.empty() || !StringArg(args, 0, &name) || !StringArg(args, 1, &desc)) {
        return AppError(InvalidArgument("CreateEnvironment takes (name [, description])"));
      }
      if (Status e = host->CreateEnvironment(name, desc); !e.ok()) return AppError(e);
      Log(*opts, "created environment " + name);
      return Result::Of(Value());
    });
  }
  if (s.ok()) {
    s = unary(kDeleteEnvironment, [host, opts](const Array& args) {
      std::string name;
      if (args.size() != 1 || !StringArg(args, 0, &name)) {
        return AppError(InvalidArgument("DeleteEnvironment takes (name)"));
      }
      if (Status e = host->DeleteEnvironment(name); !e.ok()) return AppError(e);
      Log(*opts, "deleted environment " + name);
      return Result::Of(Value());
    });
  }
  if (s.ok()) {
    s = unary(kListServices, [host](const Array& args) {
      std::string env;
      if (!StringArg(args, 0, &env)) return AppError(InvalidArgument("ListServices takes ([env])"));
      Array rows;
      if (Status e = ServiceRows(*host, env, &rows); !e.ok()) return AppError(e);
      return Result::Of(Value(std::move(rows)));
    });
  }
  if (s.ok()) {
    s = unary(kListInstances, [host](const Array& args) {
      std::string env;
      if (!StringArg(args, 0, &env)) return AppError(InvalidArgument("ListInstances takes ([env])"));
      Array rows;
      if (Status e = InstanceRows(*host, env, &rows); !e.ok()) return AppError(e);
      return Result::Of(Value(std::move(rows)));
    });
  }
  if (s.ok()) {
    s = unary(admin::kStatus, [host](const Array& args) {
      std::string env;
      if (!StringArg(args, 0, &env)) return AppError(InvalidArgument("Status takes ([env])"));
      Value status;
      if (Status e = NodeStatus(*host, env, &status); !e.ok()) return AppError(e);
      return Result::Of(std::move(status));
    });
  }
  if (!s.ok()) return s;
  if (s = server->Start(); !s.ok()) return s;
  out->reset(new AdminService());
  (*out)->server_ = std::move(server);
  return Status::Ok();
}

AdminService::~AdminService() {
  if (server_) server_->Shutdown(std::chrono::milliseconds(0));
}

void AdminService::Shutdown(std::chrono::milliseconds grace) { server_->Shutdown(grace); }

}  // namespace lever::admin
