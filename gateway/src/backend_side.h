// The instance side of the relay (private): one nghttp2 *client* session per
// (worker, instance). Connect (bounded), wait for the instance's SETTINGS
// before submitting, GOAWAY, and placing a call again when the connection
// died before the instance saw anything of it. See gateway/relay.md.
#pragma once

#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "h2_conn.h"
#include "header_block.h"
#include "lever/host/router.h"

namespace lever::gateway {

class BackendConn final : public H2Conn {
 public:
  BackendConn(WorkerImpl* w, host::BackendPtr backend);
  ~BackendConn() override;
  void Connect();
  bool connected() const { return connected_; }
  bool usable() const { return !closed_ && !goaway_; }
  const host::BackendPtr& backend() const { return backend_; }
  // Opens the backend stream for `s` now or once connected.
  void Submit(Stream* s);
  void RemoveStream(Stream* s);  // s->bconn cleared by caller
  void OnGoaway(uint32_t error_code);
  // The instance's first SETTINGS frame: it speaks HTTP/2 on this connection.
  void OnPeerSettings();
  // The instance acknowledged our SETTINGS.
  void OnSettingsAck();
  HeaderBlock& scratch() { return scratch_; }

 private:
  void OnConnected();
  void OnClose() override;
  bool SubmitNow(Stream* s);
  host::BackendPtr backend_;
  bool connected_ = false;
  // Streams are submitted only once the instance sent its SETTINGS: until
  // then nothing of a call has reached it, so a connection that dies first
  // (an instance that just crashed, still accepting in the kernel) lets the
  // relay place its calls again instead of failing them.
  bool peer_ready_ = false;
  bool settings_acked_ = false;  // with peer_ready_: the SETTINGS timer is off
  bool goaway_ = false;
  bool failed_reported_ = false;
  std::string fail_message_;
  boost::asio::steady_timer connect_timer_;
  std::vector<Stream*> streams_;  // open or queued
  HeaderBlock scratch_;
};

}  // namespace lever::gateway
