#include "lease_timer.h"

#include <algorithm>

namespace lever::host::etcd {

LeaseTimer::LeaseTimer(std::chrono::seconds ttl, SteadyTime grant_sent)
    : ttl_(ttl), valid_until_(grant_sent + ttl), last_sent_(grant_sent) {}

void LeaseTimer::KeepAliveSent(SteadyTime at) {
  last_sent_ = at;
  outstanding_.push_back(at);
}

void LeaseTimer::KeepAliveAnswered(int64_t ttl_seconds) {
  if (outstanding_.empty()) return;  // not ours to count (a reply after a reset)
  SteadyTime sent = outstanding_.front();
  outstanding_.pop_front();
  if (ttl_seconds <= 0) {
    gone_ = true;
    return;
  }
  valid_until_ = std::max(valid_until_, sent + std::chrono::seconds(ttl_seconds));
}

bool LeaseTimer::Stalled(SteadyTime now) const {
  return !outstanding_.empty() && now - outstanding_.front() > period();
}

SteadyTime LeaseTimer::NextDecision() const {
  SteadyTime t = std::min(NextKeepAlive(), valid_until_);
  if (!outstanding_.empty()) t = std::min(t, outstanding_.front() + period() + std::chrono::milliseconds(1));
  return t;
}

}  // namespace lever::host::etcd
