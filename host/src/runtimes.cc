// Every runtime, registered by name, and the one the supervisor holds: it
// runs each service with the runtime its lever.json names, else the default.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <mutex>
#include <string>

#include "lever/host/runtime.h"
#include "util.h"

namespace lever::host {
namespace {

struct Entry {
  std::string_view name;
  // `on_first_start`: opened by a service's first start, on the supervisor's
  // thread, which must not wait for anything outside the host (dockerd).
  Status (*open)(const RuntimeOptions&, bool on_first_start, RuntimePtr*);
};

constexpr Entry kRuntimes[] = {
    {"process", [](const RuntimeOptions& o, bool, RuntimePtr* out) { return NewProcessRuntime(o.process, out); }},
    {"docker",
     [](const RuntimeOptions& o, bool on_first_start, RuntimePtr* out) {
       DockerRuntimeOptions d = o.docker;
       d.check_on_first_start = on_first_start;
       return NewDockerRuntime(d, out);
     }},
};

const Entry* FindEntry(std::string_view name) {
  for (const Entry& e : kRuntimes) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

// The default runtime, opened at once (a dockerd that cannot be reached
// fails leverd's start), and the others on a service's first start (docker
// then checks dockerd on that instance's thread: the supervisor never waits
// for it).
class SelectingRuntime final : public Runtime {
 public:
  SelectingRuntime(std::string default_name, RuntimePtr default_runtime, RuntimeOptions options)
      : default_name_(std::move(default_name)), default_(default_runtime), options_(std::move(options)) {
    open_[default_name_] = std::move(default_runtime);
  }
  const char* name() const override { return default_->name(); }
  std::vector<ParkedProcess> Parked() const override { return default_->Parked(); }
  void Expect(const LeverConfig& config) override {
    if (RuntimePtr runtime = Opened(config)) runtime->Expect(config);  // else prepared for on its first start
  }

  std::string ReservedInstanceId(const std::string& env, const std::string& service, int64_t version,
                                 const LeverConfig& config, const std::string& code_dir) override {
    RuntimePtr runtime = Opened(config);
    return runtime ? runtime->ReservedInstanceId(env, service, version, config, code_dir) : "";
  }

  Status Start(const InstanceSpec& spec, std::unique_ptr<RunningInstance>* out) override {
    const std::string& want = spec.config.runtime.empty() ? default_name_ : spec.config.runtime;
    RuntimePtr runtime;
    {
      std::lock_guard lock(mu_);
      auto it = open_.find(want);
      if (it != open_.end()) {
        runtime = it->second;
      } else {
        const Entry* e = FindEntry(want);
        if (!e) return InvalidArgument("unknown runtime \"" + want + "\"");
        Status s = e->open(options_, /*on_first_start=*/true, &runtime);
        if (!s.ok()) return Status(s.code(), "runtime " + want + ": " + s.message());
        open_[want] = runtime;
      }
    }
    return runtime->Start(spec, out);
  }

 private:
  // The runtime `config` names if it is open already (the default always
  // is), else null.
  RuntimePtr Opened(const LeverConfig& config) {
    if (config.runtime.empty() || config.runtime == default_name_) return default_;
    std::lock_guard lock(mu_);
    auto it = open_.find(config.runtime);
    return it == open_.end() ? nullptr : it->second;
  }

  const std::string default_name_;
  const RuntimePtr default_;
  const RuntimeOptions options_;
  std::mutex mu_;
  std::map<std::string, RuntimePtr, std::less<>> open_;
};

}  // namespace

std::vector<std::string> InstanceEnvironment(const InstanceSpec& spec, const std::string& path,
                                             const std::string& listen_addr, const std::string& internal_gateway) {
  std::vector<std::string> env = {
      "LEVEROS_ENVIRONMENT=" + spec.env,
      "LEVEROS_SERVICE=" + spec.service,
      "LEVEROS_INSTANCE_ID=" + spec.instance_id,
      "LEVEROS_CODE_VERSION=" + std::to_string(spec.version),
      "LEVEROS_INTERNAL_ENV_SUFFIX=.lever",
      "LEVEROS_LISTEN_ADDR=" + listen_addr,
      "PATH=" + path,
  };
  if (!internal_gateway.empty()) env.push_back("LEVEROS_INTERNAL_RPC_GATEWAY=" + internal_gateway);
  if (!spec.config.js_entry.empty()) {
    // The original gave node --max_old_space_size=int(ram*0.9).
    env.push_back("NODE_OPTIONS=--max-old-space-size=" + std::to_string(spec.config.ram_mb * 9 / 10));
  }
  if (!spec.config.py_entry.empty()) {
    std::vector<std::string> py = RunnerEnvironment("py", path);
    env.insert(env.end(), py.begin() + 1, py.end());
  }
  return env;
}

Status GiveToService(const InstanceSpec& spec, const InstanceIdentity& id) {
  if (chown(spec.code_dir.c_str(), 0, id.gid) != 0 || chmod(spec.code_dir.c_str(), 0750) != 0) {
    return ErrnoStatus("giving " + spec.code_dir + " to the service's group", errno);
  }
  if (spec.internal_gateway.starts_with("unix:")) {
    std::string path = spec.internal_gateway.substr(5);
    if (chown(path.c_str(), 0, id.env_gid) != 0 || chmod(path.c_str(), 0660) != 0) {
      return ErrnoStatus("giving " + path + " to the environment's group", errno);
    }
  }
  return Status::Ok();
}

std::vector<std::string> RunnerEnvironment(std::string_view language, const std::string& path) {
  std::vector<std::string> env = {"PATH=" + path};
  if (language == "py") {
    // Output reaches `lever logs` line by line; the code dir is not ours to
    // litter with __pycache__ (and is read-only for another user).
    env.push_back("PYTHONUNBUFFERED=1");
    env.push_back("PYTHONDONTWRITEBYTECODE=1");
  }
  // Node's heap limit (NODE_OPTIONS=--max-old-space-size, from the service's
  // ram) is not among them: a pre-started lever-serve sets it when handed its
  // service (sdk/node/bin/lever-serve).
  return env;
}

Status OpenRuntime(std::string_view name, const RuntimeOptions& options, RuntimePtr* out) {
  const Entry* e = FindEntry(name);
  if (!e) return InvalidArgument("unknown runtime \"" + std::string(name) + "\" (process or docker)");
  RuntimePtr runtime;
  if (Status s = e->open(options, /*on_first_start=*/false, &runtime); !s.ok()) return s;
  *out = std::make_shared<SelectingRuntime>(std::string(name), std::move(runtime), options);
  return Status::Ok();
}

}  // namespace lever::host
