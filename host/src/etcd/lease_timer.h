// What a node may believe about its own etcd lease, from its own clock
// alone: a pure state machine fed with times, so every decision is tested on
// fake time (lease_timer_test.cc).
//
// etcd counts a lease's TTL from the moment its leader handles a grant or a
// keep-alive, which is after the request left this node. So "when the
// request left + the TTL etcd answered" is never later than etcd's own
// expiry (clock rates aside): a node that stops using its lease at that
// instant has stopped before etcd can delete its keys and anyone else can
// take what they held. The check needs no message from etcd, so it also
// holds for a node cut off from etcd or paused (SIGSTOP) past its TTL.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>

#include "lever/host/clock.h"

namespace lever::host::etcd {

class LeaseTimer {
 public:
  // `ttl`: what the grant answered; `grant_sent`: when the grant request left.
  LeaseTimer(std::chrono::seconds ttl, SteadyTime grant_sent);

  // The lease is usable until valid_until(), unless etcd said it is gone.
  bool Alive(SteadyTime now) const { return !gone_ && now < valid_until_; }
  SteadyTime valid_until() const { return valid_until_; }
  bool gone() const { return gone_; }
  std::chrono::seconds ttl() const { return ttl_; }

  // When the next keep-alive is due: a third of the TTL after the last one
  // sent (etcd's own client renews at TTL/3), so two can be lost in a row.
  SteadyTime NextKeepAlive() const { return last_sent_ + period(); }
  void KeepAliveSent(SteadyTime at);
  // The reply to the oldest unanswered keep-alive (replies come in order on
  // a stream). ttl_seconds <= 0: etcd says the lease no longer exists.
  void KeepAliveAnswered(int64_t ttl_seconds);
  // The stream broke: what was sent on it will not be answered.
  void StreamReset() { outstanding_.clear(); }
  // The oldest unanswered keep-alive left more than a third of the TTL ago:
  // its member is slow or gone, so the next one should go to another.
  bool Stalled(SteadyTime now) const;
  // The earliest time at which NextKeepAlive, Stalled or Alive may change.
  SteadyTime NextDecision() const;

 private:
  std::chrono::milliseconds period() const { return std::chrono::milliseconds(ttl_) / 3; }

  std::chrono::seconds ttl_;
  SteadyTime valid_until_;
  SteadyTime last_sent_;
  std::deque<SteadyTime> outstanding_;
  bool gone_ = false;
};

}  // namespace lever::host::etcd
