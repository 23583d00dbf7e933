#include "catalog.h"

#include <algorithm>
#include <mutex>

#include "lever/host/deploy.h"

namespace lever::host {

Status Catalog::Load(Registry& registry) {
  std::vector<EnvironmentInfo> envs;
  Status s = registry.ListEnvironments(&envs);
  if (!s.ok()) return s;
  std::unique_lock lock(mu_);
  for (const EnvironmentInfo& env : envs) {
    EnvState& es = envs_[env.name];
    es.description = env.description;
    std::vector<ServiceInfo> services;
    s = registry.ListServices(env.name, &services);
    if (!s.ok()) return s;
    for (ServiceInfo& info : services) {
      auto svc = std::make_shared<ServiceState>(info.env, info.name);
      svc->info = info;
      if (info.live_version > 0 && !svc->is_admin()) {
        CodeVersionInfo cv;
        svc->config_status = registry.GetCodeVersion(info.env, info.name, info.live_version, &cv);
        if (svc->config_status.ok()) svc->config_status = ParseLeverConfig(cv.lever_json, &svc->config);
        svc->code_dir = CodeDirPath(data_dir_, info.env, info.name, info.live_version);
      }
      es.services[info.name] = svc;
      services_.push_back(svc);
    }
  }
  return Status::Ok();
}

Catalog::Lookup Catalog::Find(std::string_view env, std::string_view service, ServicePtr* out) const {
  std::shared_lock lock(mu_);
  auto e = envs_.find(env);
  if (e == envs_.end()) return Lookup::kNoEnvironment;
  auto s = e->second.services.find(service);
  if (s == e->second.services.end()) return Lookup::kNoService;
  *out = s->second;
  return Lookup::kFound;
}

ServicePtr Catalog::Find(std::string_view env, std::string_view service) const {
  ServicePtr out;
  Find(env, service, &out);
  return out;
}

ServicePtr Catalog::OnDeployed(const ServiceInfo& info, const LeverConfig& config) {
  ServicePtr svc;
  {
    std::unique_lock lock(mu_);
    EnvState& es = envs_[info.env];  // created by the deploy if new
    auto it = es.services.find(info.name);
    if (it == es.services.end()) {
      svc = std::make_shared<ServiceState>(info.env, info.name);
      es.services[info.name] = svc;
      services_.push_back(svc);
    } else {
      svc = it->second;
    }
  }
  std::lock_guard lock(svc->mu);
  const int64_t version = info.live_version;
  int64_t live = svc->info.live_version;
  svc->info = info;
  svc->info.live_version = live;  // until an instance of `version` is ready
  if (svc->rollout.version > 0 && svc->rollout.version != version) {
    RolloutResult& r = svc->rollouts[svc->rollout.version];
    r.done = true;
    r.status = Status(Code::kAborted, ServiceUrl(info.env, info.name) + " v" +
                                          std::to_string(svc->rollout.version) + " was superseded by v" +
                                          std::to_string(version) + " before it was ready");
    svc->rollout_cv.notify_all();
  }
  svc->rollout = Rollout{};
  svc->rollout.version = version;
  svc->rollout.config = config;
  svc->rollout.code_dir = CodeDirPath(data_dir_, info.env, info.name, version);
  return svc;
}

void Catalog::AddEnvironment(std::string_view name, std::string_view description) {
  std::unique_lock lock(mu_);
  envs_[std::string(name)].description = description;
}

bool Catalog::HasEnvironment(std::string_view name) const {
  std::shared_lock lock(mu_);
  return envs_.find(name) != envs_.end();
}

ServicePtr Catalog::FindOrCreate(const ServiceInfo& info, bool* created) {
  std::unique_lock lock(mu_);
  EnvState& es = envs_[info.env];
  auto it = es.services.find(info.name);
  *created = it == es.services.end();
  if (!*created) return it->second;
  auto svc = std::make_shared<ServiceState>(info.env, info.name);
  svc->info = info;
  svc->info.live_version = 0;
  es.services[info.name] = svc;
  services_.push_back(svc);
  return svc;
}

std::vector<ServicePtr> Catalog::RemoveEnvironment(std::string_view name) {
  std::vector<ServicePtr> removed;
  std::unique_lock lock(mu_);
  auto it = envs_.find(name);
  if (it != envs_.end()) {
    for (auto& [_, svc] : it->second.services) removed.push_back(svc);
    envs_.erase(it);
  }
  return removed;
}

Status Catalog::ListServices(std::string_view env, std::vector<ServiceInfo>* out) const {
  out->clear();
  std::vector<ServicePtr> list;
  {
    std::shared_lock lock(mu_);
    auto it = envs_.find(env);
    if (it == envs_.end()) return Status(Code::kNotFound, "environment " + std::string(env) + " not found");
    for (auto& [_, svc] : it->second.services) list.push_back(svc);
  }
  for (auto& svc : list) {
    std::lock_guard lock(svc->mu);
    out->push_back(svc->info);
  }
  std::sort(out->begin(), out->end(), [](const ServiceInfo& a, const ServiceInfo& b) { return a.name < b.name; });
  return Status::Ok();
}

std::vector<ServicePtr> Catalog::Services(std::string_view env, std::string_view service) const {
  std::vector<ServicePtr> list;
  std::shared_lock lock(mu_);
  for (auto& svc : services_) {
    if ((env.empty() || svc->env == env) && (service.empty() || svc->name == service)) list.push_back(svc);
  }
  return list;
}

void Catalog::Prune() {
  std::unique_lock lock(mu_);
  std::erase_if(services_, [](const ServicePtr& s) {
    std::lock_guard l(s->mu);
    return s->removed && s->instances.empty();
  });
}

}  // namespace lever::host
