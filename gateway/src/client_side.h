// The public side of the relay (private): one nghttp2 *server* session toward
// one client (an h2c connection from the public port or an internal socket).
// See gateway/relay.md.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "h2_conn.h"
#include "header_block.h"

namespace lever::gateway {

// The data provider of a response toward the client: reads `s->down`.
nghttp2_data_provider DownProvider(Stream* s);

class ClientConn final : public H2Conn {
 public:
  ClientConn(WorkerImpl* w, Socket socket, std::string src_env, bool peer = false);
  ~ClientConn() override;
  bool Init(const std::string& preface);
  const std::string& src_env() const { return src_env_; }
  // A connection on the peer port: another node's gateway relaying calls
  // (each must carry the cluster token; its x-lever-* headers are kept).
  bool peer() const { return peer_; }
  // The peer, for x-lever-client-addr: "ip:port", "[ip6]:port" or "unix:<listener path>".
  const std::string& client_addr() const { return client_addr_; }
  void AddStream(Stream* s);
  void RemoveStream(Stream* s);
  size_t stream_count() const { return streams_.size(); }
  void Goaway();
  HeaderBlock& scratch() { return scratch_; }
  // The client's SETTINGS (`ack` false) or its ACK of ours.
  void OnSettings(bool ack);

  // What the connection timer decides at `now` (pure, unit-tested).
  enum class Verdict { kKeep, kSettingsTimeout, kIdle, kWriteTimeout };
  struct TimerState {
    bool settings_done = false;
    std::chrono::steady_clock::time_point settings_deadline;
    bool idle = false;  // no open stream
    std::chrono::steady_clock::time_point idle_since;
    bool writing = false;  // a write in flight
    std::chrono::steady_clock::time_point write_started;
    bool waiting = false;  // a stream's response waits for the client's window
    std::chrono::steady_clock::time_point waiting_since;  // the longest such wait's start
  };
  static Verdict Decide(const TimerState& t, const RelayConfig& config, std::chrono::steady_clock::time_point now,
                        std::chrono::steady_clock::time_point* next);

 private:
  void OnClose() override;
  void ArmTimer(std::chrono::steady_clock::time_point at);
  void OnTimer();
  // Resets (CANCEL) each stream whose response has waited for the client's
  // flow-control window, with no byte taken, for client_write_timeout;
  // fills t_.waiting for the others.
  void ResetStalledStreams(std::chrono::steady_clock::time_point now);
  boost::asio::steady_timer timer_;
  std::chrono::steady_clock::time_point timer_at_;
  bool terminating_ = false;  // GOAWAY sent for a timeout: close at the next tick
  bool peer_settings_ = false;
  bool settings_acked_ = false;
  TimerState t_;
  std::string src_env_;
  bool peer_ = false;
  std::string client_addr_;
  std::vector<Stream*> streams_;
  HeaderBlock scratch_;
};

}  // namespace lever::gateway
