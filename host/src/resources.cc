#include "resources.h"

#include "etcd/session.h"

namespace lever::host {

ResourceLease::ResourceLease(std::string resource, std::shared_ptr<Instance> owner)
    : resource(std::move(resource)), owner(std::move(owner)) {
  last_used_ns_.store(this->owner->last_active_ns.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

void ResourceLease::Placed(SteadyTime now) {
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  last_used_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count(),
                      std::memory_order_relaxed);
}

void ResourceLease::OnCallEnd() {
  int64_t left = in_flight_.fetch_sub(1, std::memory_order_relaxed) - 1;
  last_used_ns_.store(
      std::chrono::duration_cast<std::chrono::nanoseconds>(owner->clock->Now().time_since_epoch()).count(),
      std::memory_order_relaxed);
  owner->OnCallEnd();
  if (left <= 0 && closing_.load(std::memory_order_acquire)) owner->WakeSupervisor();
}

void ResourceLease::MarkClosing() {
  state = State::kClosing;
  call_sent = false;
  closing_.store(true, std::memory_order_release);
}

void ResourceLease::SetClaim(int64_t token, std::shared_ptr<const etcd::Session> session) {
  token_ = token;
  token_text_ = std::to_string(token);
  session_ = std::move(session);
}

bool ResourceLease::Current() const { return !session_ || session_->Alive(); }

SteadyTime ResourceLease::last_used() const {
  return SteadyTime(std::chrono::nanoseconds(last_used_ns_.load(std::memory_order_relaxed)));
}

bool IsMissingMethod(const Result& r) {
  if (r.is_platform_error()) {
    return r.status.code() == Code::kUnimplemented || r.status.code() == Code::kNotFound;
  }
  if (!r.is_app_error() || !r.value.is_string()) return false;
  const std::string& m = r.value.as_string();
  return m.find("Method not found") != std::string::npos || m.find("Invalid method") != std::string::npos ||
         m.find("method not found") != std::string::npos;
}

}  // namespace lever::host
