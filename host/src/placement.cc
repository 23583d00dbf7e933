#include "lever/host/placement.h"

namespace lever::host {
namespace {

uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class DefaultPlacement final : public Placement {
 public:
  size_t Pick(std::span<const PlacementCandidate> ready, std::string_view resource) const override {
    size_t best = 0;
    if (!resource.empty()) {
      uint64_t r = PlacementKey(resource);
      uint64_t best_score = 0;
      for (size_t i = 0; i < ready.size(); ++i) {
        uint64_t score = Mix(r ^ Mix(ready[i].key));
        if (i == 0 || score > best_score) {
          best = i;
          best_score = score;
        }
      }
      return best;
    }
    for (size_t i = 1; i < ready.size(); ++i) {
      if (ready[i].in_flight < ready[best].in_flight) best = i;
    }
    return best;
  }

  bool WantMore(std::span<const PlacementCandidate> ready, size_t starting,
                double max_instance_load) const override {
    if (starting > 0) return false;
    if (ready.empty()) return true;
    for (const PlacementCandidate& c : ready) {
      if (static_cast<double>(c.in_flight) < max_instance_load) return false;
    }
    return true;
  }
};

}  // namespace

uint64_t PlacementKey(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return Mix(h);
}

PlacementPtr NewDefaultPlacement() { return std::make_shared<DefaultPlacement>(); }

}  // namespace lever::host
