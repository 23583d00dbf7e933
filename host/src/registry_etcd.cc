// The "etcd" registry backend: durable keys in an etcd v3 cluster, read from
// a watched mirror, written with transactions. Keys (etcd.md has the rest):
//   <root>env/<env>                       {"description", "created_ms"}
//   <root>svc/<env>/<service>             {"description", "private", "live_version", "next_version"}
//   <root>ver/<env>/<service>/<version>   {"lever_json", "created_ms", "sha256", "bytes", "node"}
//                                         (version: 20 digits)
#include "registry_etcd.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>

#include "lever/host/lever_json.h"

namespace lever::host {
namespace {

using Json = nlohmann::json;
namespace pb = etcd::pb;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A compare-and-swap loop gives up after this many lost races in a row.
constexpr int kMaxCasAttempts = 1000;

std::string VersionKeyPart(int64_t version) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%020lld", static_cast<long long>(version));
  return buf;
}

class EtcdRegistryImpl final : public EtcdRegistry {
 public:
  EtcdRegistryImpl(std::shared_ptr<etcd::Client> client, std::string root)
      : client_(std::move(client)), root_(std::move(root)) {}

  Status Init() {
    etcd::MirrorOptions mo;
    mo.prefix = root_;
    Status s = etcd::Mirror::Start(client_, mo, &mirror_);
    if (!s.ok()) return Status(s.code(), "registry: cannot read " + root_ + " from etcd: " + s.message());
    // Every node seeds; the first one's writes win and the rest find them.
    Json admin = {{"description", "Manages Lever deployments"}, {"private", false}, {"live_version", 1},
                  {"next_version", 2}};
    const std::pair<std::string, std::string> seeds[] = {
        {EnvKey(kDevEnv), EnvValue("The default environment")},
        {EnvKey(kAdminEnv), EnvValue("The admin environment")},
        {ServiceKey(kAdminEnv, kAdminService), admin.dump()},
    };
    for (const auto& [key, value] : seeds) {
      s = CreateIfAbsent(key, value);
      if (!s.ok() && s.code() != Code::kAlreadyExists) return Wrap(s, "seeding");
    }
    return Status::Ok();
  }

  const std::shared_ptr<etcd::Client>& client() const override { return client_; }
  etcd::Mirror& mirror() override { return *mirror_; }
  const std::string& root() const override { return root_; }

  Status CreateEnvironment(const EnvironmentInfo& env) override {
    if (!IsValidEnvName(env.name)) return InvalidArgument("Invalid environment name");
    Status s = CreateIfAbsent(EnvKey(env.name), EnvValue(env.description));
    if (s.code() == Code::kAlreadyExists) return Status(Code::kAlreadyExists, "environment " + env.name + " already exists");
    return s.ok() ? s : Wrap(s, "creating an environment");
  }

  Status GetEnvironment(std::string_view name, EnvironmentInfo* out) override {
    pb::KeyValue kv;
    bool found = false;
    Status s = Read(EnvKey(name), &kv, &found);
    if (!s.ok()) return s;
    if (!found) return NotFoundEnv(name);
    return ParseEnv(kv, out);
  }

  Status ListEnvironments(std::vector<EnvironmentInfo>* out) override {
    out->clear();
    std::vector<pb::KeyValue> kvs;
    Status s = List(root_ + "env/", &kvs);
    if (!s.ok()) return s;
    for (const pb::KeyValue& kv : kvs) {
      out->emplace_back();
      s = ParseEnv(kv, &out->back());
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

  Status DeleteEnvironment(std::string_view name) override {
    const std::string key = EnvKey(name);
    pb::TxnRequest txn;
    *txn.add_compare() = etcd::CompareCreateRevision(key, pb::Compare::GREATER, 0);
    *txn.add_success() = etcd::OpDelete(key);
    *txn.add_success() = etcd::OpDeletePrefix(root_ + "svc/" + std::string(name) + "/");
    *txn.add_success() = etcd::OpDeletePrefix(root_ + "ver/" + std::string(name) + "/");
    pb::TxnResponse resp;
    Status s = Commit(txn, &resp);
    if (!s.ok()) return Wrap(s, "deleting an environment");
    if (!resp.succeeded()) return NotFoundEnv(name);
    return Status::Ok();
  }

  Status CreateService(const ServiceInfo& info) override {
    if (!IsValidEnvName(info.env)) return InvalidArgument("Invalid environment name");
    if (!IsValidServiceName(info.name)) return InvalidArgument("Invalid service name");
    Json v = {{"description", info.description}, {"private", info.is_private}, {"live_version", 0},
              {"next_version", 1}};
    Status s = CreateIfAbsent(ServiceKey(info.env, info.name), v.dump());
    if (s.code() == Code::kAlreadyExists) {
      return Status(Code::kAlreadyExists, "service " + info.env + "/" + info.name + " already exists");
    }
    return s.ok() ? s : Wrap(s, "creating a service");
  }

  Status GetService(std::string_view env, std::string_view name, ServiceInfo* out) override {
    pb::KeyValue kv;
    bool found = false;
    Status s = Read(ServiceKey(env, name), &kv, &found);
    if (!s.ok()) return s;
    if (!found) return NotFoundService(env, name);
    return ParseService(kv, out);
  }

  Status ListServices(std::string_view env, std::vector<ServiceInfo>* out) override {
    out->clear();
    std::vector<pb::KeyValue> kvs;
    Status s = List(root_ + "svc/" + std::string(env) + "/", &kvs);
    if (!s.ok()) return s;
    for (const pb::KeyValue& kv : kvs) {
      out->emplace_back();
      s = ParseService(kv, &out->back());
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

  Status UpdateService(const ServiceInfo& info) override {
    return UpdateServiceValue(info.env, info.name, "updating a service", [&](Json& v) {
      v["description"] = info.description;
      v["private"] = info.is_private;
      v["live_version"] = info.live_version;
    });
  }

  Status AllocateVersion(std::string_view env, std::string_view service, int64_t* version) override {
    return UpdateServiceValue(env, service, "allocating a version", [&](Json& v) {
      *version = v["next_version"].get<int64_t>();
      v["next_version"] = *version + 1;
    });
  }

  Status AddCodeVersion(const CodeVersionInfo& info) override {
    Json v = {{"lever_json", info.lever_json},
              {"created_ms", info.created_unix_ms ? info.created_unix_ms : NowUnixMs()},
              {"sha256", info.sha256},
              {"bytes", info.archive_bytes},
              {"node", info.node}};
    Status s = CreateIfAbsent(VersionKey(info.env, info.service, info.version), v.dump());
    if (s.code() == Code::kAlreadyExists) {
      return Status(Code::kAlreadyExists, "version " + std::to_string(info.version) + " of " + info.env + "/" +
                                              info.service + " already exists");
    }
    return s.ok() ? s : Wrap(s, "adding a code version");
  }

  Status GetCodeVersion(std::string_view env, std::string_view service, int64_t version,
                        CodeVersionInfo* out) override {
    pb::KeyValue kv;
    bool found = false;
    Status s = Read(VersionKey(env, service, version), &kv, &found);
    if (!s.ok()) return s;
    if (!found) {
      return Status(Code::kNotFound, "version " + std::to_string(version) + " of " + std::string(env) + "/" +
                                         std::string(service) + " not found");
    }
    Json v;
    s = ParseValue(kv, &v);
    if (!s.ok()) return s;
    if (!v.contains("lever_json") || !v["lever_json"].is_string()) return BadValue(kv);
    out->env = std::string(env);
    out->service = std::string(service);
    out->version = version;
    out->lever_json = v["lever_json"].get<std::string>();
    out->created_unix_ms = v.value("created_ms", int64_t{0});
    out->sha256 = v.contains("sha256") && v["sha256"].is_string() ? v["sha256"].get<std::string>() : "";
    out->archive_bytes = v.contains("bytes") && v["bytes"].is_number_integer() ? v["bytes"].get<int64_t>() : 0;
    out->node = v.contains("node") && v["node"].is_string() ? v["node"].get<std::string>() : "";
    return Status::Ok();
  }

  Status DeleteCodeVersion(std::string_view env, std::string_view service, int64_t version) override {
    pb::DeleteRangeRequest req;
    req.set_key(VersionKey(env, service, version));
    pb::DeleteRangeResponse resp;
    Status s = client_->DeleteRange(req, &resp);
    if (!s.ok()) return Wrap(s, "deleting a code version");
    NoteWrite(resp.header().revision());
    return Status::Ok();
  }

 private:
  std::string EnvKey(std::string_view env) const { return root_ + "env/" + std::string(env); }
  std::string ServiceKey(std::string_view env, std::string_view name) const {
    return root_ + "svc/" + std::string(env) + "/" + std::string(name);
  }
  std::string VersionKey(std::string_view env, std::string_view service, int64_t version) const {
    return root_ + "ver/" + std::string(env) + "/" + std::string(service) + "/" + VersionKeyPart(version);
  }
  static std::string EnvValue(std::string_view description) {
    return Json{{"description", description}, {"created_ms", NowUnixMs()}}.dump();
  }

  // Every change this registry made is visible to its own reads at once:
  // until the mirror has caught up with our last write, reads go to etcd.
  void NoteWrite(int64_t revision) {
    int64_t cur = last_write_.load();
    while (revision > cur && !last_write_.compare_exchange_weak(cur, revision)) {
    }
  }
  bool MirrorCurrent() const { return mirror_->revision() >= last_write_.load(); }

  // Reads from the mirror; straight from etcd while the mirror lags our own
  // writes, and from the mirror again if etcd cannot be reached then.
  Status Read(const std::string& key, pb::KeyValue* kv, bool* found) {
    if (!MirrorCurrent()) {
      pb::RangeRequest req;
      req.set_key(key);
      pb::RangeResponse resp;
      if (client_->Range(req, &resp).ok()) {
        *found = resp.kvs_size() == 1;
        if (*found) *kv = resp.kvs(0);
        return Status::Ok();
      }
    }
    *found = mirror_->Get(key, kv);
    return Status::Ok();
  }

  Status List(const std::string& prefix, std::vector<pb::KeyValue>* out) {
    if (!MirrorCurrent()) {
      pb::RangeRequest req;
      req.set_key(prefix);
      req.set_range_end(etcd::PrefixEnd(prefix));
      pb::RangeResponse resp;
      if (client_->Range(req, &resp).ok() && !resp.more()) {
        out->assign(resp.kvs().begin(), resp.kvs().end());
        return Status::Ok();
      }
    }
    *out = mirror_->List(prefix);
    return Status::Ok();
  }

  Status Commit(const pb::TxnRequest& txn, pb::TxnResponse* resp) {
    Status s = client_->Txn(txn, resp);
    if (s.ok()) NoteWrite(resp->header().revision());
    return s;
  }

  // Puts `value` at `key` unless the key exists (ALREADY_EXISTS, bare).
  Status CreateIfAbsent(const std::string& key, const std::string& value) {
    pb::TxnRequest txn;
    *txn.add_compare() = etcd::CompareCreateRevision(key, pb::Compare::EQUAL, 0);
    *txn.add_success() = etcd::OpPut(key, value);
    pb::TxnResponse resp;
    Status s = Commit(txn, &resp);
    if (!s.ok()) return s;
    if (!resp.succeeded()) return Status(Code::kAlreadyExists, key);
    return Status::Ok();
  }

  // Read-modify-write of a service's value, retried while other writers win.
  template <class Fn>
  Status UpdateServiceValue(std::string_view env, std::string_view name, std::string_view what, Fn&& change) {
    const std::string key = ServiceKey(env, name);
    for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
      pb::RangeRequest req;
      req.set_key(key);
      pb::RangeResponse got;
      Status s = client_->Range(req, &got);
      if (!s.ok()) return Wrap(s, what);
      if (got.kvs_size() != 1) return NotFoundService(env, name);
      Json v;
      s = ParseValue(got.kvs(0), &v);
      if (!s.ok()) return s;
      if (!v.contains("next_version") || !v["next_version"].is_number_integer()) return BadValue(got.kvs(0));
      change(v);
      pb::TxnRequest txn;
      *txn.add_compare() = etcd::CompareModRevision(key, pb::Compare::EQUAL, got.kvs(0).mod_revision());
      *txn.add_success() = etcd::OpPut(key, v.dump());
      pb::TxnResponse resp;
      s = Commit(txn, &resp);
      if (!s.ok()) return Wrap(s, what);
      if (resp.succeeded()) return Status::Ok();
    }
    return Status(Code::kAborted, "registry: " + std::string(what) + ": too many concurrent writers");
  }

  Status ParseValue(const pb::KeyValue& kv, Json* out) const {
    *out = Json::parse(kv.value(), nullptr, /*allow_exceptions=*/false);
    if (!out->is_object()) return BadValue(kv);
    return Status::Ok();
  }
  Status ParseEnv(const pb::KeyValue& kv, EnvironmentInfo* out) const {
    Json v;
    Status s = ParseValue(kv, &v);
    if (!s.ok()) return s;
    if (!v.contains("description") || !v["description"].is_string()) return BadValue(kv);
    out->name = kv.key().substr(root_.size() + 4);  // "env/"
    out->description = v["description"].get<std::string>();
    return Status::Ok();
  }
  Status ParseService(const pb::KeyValue& kv, ServiceInfo* out) const {
    Json v;
    Status s = ParseValue(kv, &v);
    if (!s.ok()) return s;
    std::string_view rest = std::string_view(kv.key()).substr(root_.size() + 4);  // "svc/"
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return BadValue(kv);
    if (!v.contains("live_version") || !v["live_version"].is_number_integer() || !v.contains("next_version") ||
        !v["next_version"].is_number_integer() || !v.contains("private") || !v["private"].is_boolean() ||
        !v.contains("description") || !v["description"].is_string()) {
      return BadValue(kv);
    }
    out->env = std::string(rest.substr(0, slash));
    out->name = std::string(rest.substr(slash + 1));
    out->description = v["description"].get<std::string>();
    out->is_private = v["private"].get<bool>();
    out->live_version = v["live_version"].get<int64_t>();
    out->next_version = v["next_version"].get<int64_t>();
    return Status::Ok();
  }
  static Status BadValue(const pb::KeyValue& kv) {
    return Status(Code::kInternal, "registry: etcd key " + kv.key() + " holds a value this leverd cannot read");
  }
  // Adds what the operator needs to know to an etcd failure.
  static Status Wrap(const Status& s, std::string_view what) {
    if (s.code() == Code::kUnavailable) {
      return Status(Code::kUnavailable, "registry: " + std::string(what) + ": " + s.message() +
                                            "; deploys and other changes are refused until etcd is back, "
                                            "and what is deployed keeps being served");
    }
    return Status(s.code(), "registry: " + std::string(what) + ": " + s.message());
  }
  static Status NotFoundEnv(std::string_view name) {
    return Status(Code::kNotFound, "environment " + std::string(name) + " not found");
  }
  static Status NotFoundService(std::string_view env, std::string_view name) {
    return Status(Code::kNotFound, "service lever://" + std::string(env) + "/" + std::string(name) + " not found");
  }

  const std::shared_ptr<etcd::Client> client_;
  const std::string root_;
  std::unique_ptr<etcd::Mirror> mirror_;
  std::atomic<int64_t> last_write_{0};
};

bool IsPrefixChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '/';
}

}  // namespace

Status OpenEtcdRegistry(std::string_view rest, std::string_view /*data_dir*/, RegistryPtr* out) {
  if (rest.substr(0, 2) != "//") {
    return InvalidArgument("etcd registry URL must look like etcd://host:port[,host:port...][/prefix]");
  }
  rest.remove_prefix(2);
  size_t slash = rest.find('/');
  std::string_view hosts = rest.substr(0, slash);
  std::string prefix = slash == std::string_view::npos ? "/lever" : std::string(rest.substr(slash));
  while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
  if (prefix.size() < 2 || prefix.find("//") != std::string::npos) {
    return InvalidArgument("etcd registry URL: bad key prefix \"" + prefix + "\"");
  }
  for (char c : prefix) {
    if (!IsPrefixChar(c)) return InvalidArgument("etcd registry URL: bad key prefix \"" + prefix + "\"");
  }
  etcd::ClientOptions co;
  Status s = etcd::ParseEndpoints(hosts, &co.endpoints);
  if (!s.ok()) return InvalidArgument("etcd registry URL: " + s.message());
  std::shared_ptr<etcd::Client> client;
  s = etcd::Client::Open(co, &client);
  if (!s.ok()) return s;
  auto reg = std::make_shared<EtcdRegistryImpl>(std::move(client), prefix + "/");
  s = reg->Init();
  if (!s.ok()) return s;
  *out = std::move(reg);
  return Status::Ok();
}

}  // namespace lever::host
