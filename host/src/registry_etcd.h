#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "etcd/client.h"
#include "etcd/mirror.h"
#include "lever/host/registry.h"

namespace lever::host {

// `rest`: what follows "etcd:" in the registry URL, "//h1:2379,h2:2379[/prefix]"
// (default prefix "/lever"). Opening reads every key under the prefix once and
// then watches it; it fails when no member answers.
Status OpenEtcdRegistry(std::string_view rest, std::string_view data_dir, RegistryPtr* out);

// The etcd parts behind a registry opened from an etcd:// URL, for the
// cluster layer (nodes, instances, owners and load live beside the
// registry's keys, under the same prefix and the same watch).
class EtcdRegistry : public Registry {
 public:
  virtual const std::shared_ptr<etcd::Client>& client() const = 0;
  virtual etcd::Mirror& mirror() = 0;
  // The key prefix with a trailing '/', e.g. "/lever/".
  virtual const std::string& root() const = 0;
};

}  // namespace lever::host
