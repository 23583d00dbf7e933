// Every registry backend, registered by name; OpenRegistry picks one by the
// scheme of its URL ("embedded:...", "etcd://...").
#include <string>

#include "lever/host/registry.h"
#include "registry_embedded.h"
#include "registry_etcd.h"

namespace lever::host {
namespace {

using OpenFn = Status (*)(std::string_view rest, std::string_view data_dir, RegistryPtr* out);

struct Backend {
  std::string_view scheme;
  OpenFn open;
};

constexpr Backend kBackends[] = {
    {"embedded", &OpenEmbeddedRegistry},
    {"etcd", &OpenEtcdRegistry},
};

}  // namespace

Status OpenRegistry(std::string_view url, std::string_view data_dir, RegistryPtr* out) {
  size_t colon = url.find(':');
  if (colon == std::string_view::npos) {
    return InvalidArgument("registry URL \"" + std::string(url) + "\" has no scheme (try \"embedded:\")");
  }
  std::string_view scheme = url.substr(0, colon);
  std::string_view rest = url.substr(colon + 1);
  for (const Backend& b : kBackends) {
    if (b.scheme == scheme) return b.open(rest, data_dir, out);
  }
  return InvalidArgument("unknown registry backend \"" + std::string(scheme) + "\"");
}

}  // namespace lever::host
