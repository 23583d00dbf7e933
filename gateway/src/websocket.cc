// WebSocket streaming calls (RFC 6455, Boost.Beast). See gateway/websocket.md.
//
// One WsConn per upgraded connection, on the worker that accepted it. Its
// first text message (the JSON argument array) opens one streaming call on a
// relay Stream, routed and submitted exactly as an HTTP or gRPC call (same
// cold-start wait, same instance connection of the worker, no thread hop);
// the WsConn is that Stream's Downstream. Text frames carry JSON messages,
// binary frames bytes, both ways; the end of the call is the close code.
#include "websocket.h"

#include <algorithm>
#include <deque>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include "http_api.h"
#include "lever/json.h"
#include "lever/wire.h"
#include "stream_relay.h"
#include "worker.h"

namespace lever::gateway::ws {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxReplyMessage = size_t{64} << 20;  // one gRPC message from an instance
constexpr size_t kUpHighWater = 256u << 10;            // request bytes queued for the instance
constexpr size_t kOutHighWater = 256u << 10;           // messages queued for the client
constexpr std::chrono::milliseconds kAfterCloseGrace{5000};

JsonWriteOptions JsonOut() {
  JsonWriteOptions jo;
  jo.nonfinite_as_null = true;
  jo.bytes_as_base64 = true;
  return jo;
}

class WsConn final : public Downstream, public std::enable_shared_from_this<WsConn> {
 public:
  WsConn(WorkerImpl* w, Socket socket, RequestHead req, Upgrade up, const WebSocketOptions& o)
      : w_(w),
        o_(o),
        ws_(std::move(socket)),
        timer_(w->io_context()),
        req_(std::move(req)),
        up_(std::move(up)),
        idle_(o.idle_timeout, Clock::now()) {}

  void Start() {
    self_ = shared_from_this();
    w_->AddHttp(this);
    ws_.read_message_max(o_.max_message_bytes);
    ws_.auto_fragment(true);
    ws_.write_buffer_bytes(std::max<size_t>(o_.max_frame_bytes, 8));
    // Beast's own timer bounds only the handshakes (the closing one too);
    // the idle rule is ours (IdleRule).
    websocket::stream_base::timeout t{};
    t.handshake_timeout = std::min<std::chrono::milliseconds>(o_.idle_timeout, std::chrono::seconds(10));
    t.idle_timeout = websocket::stream_base::none();
    t.keep_alive_pings = false;
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& r) { r.set(bhttp::field::server, "leverd"); }));
    ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
      if (args_done_) idle_.Received(Clock::now());  // pings, pongs, close: the client is alive
      if (kind == websocket::frame_type::close) OnCloseFrame();
    });
    ws_.async_accept(req_, [self = shared_from_this()](beast::error_code ec) {
      if (!self->closed_) self->OnAccepted(ec);
      self->w_->FlushDirty();
    });
    Arm();
  }

  // --- Downstream ---
  void OnResponseHeaders(const HeaderBlock& h, bool end) override {
    std::string_view v;
    if (h.Find(":status", &v) && v != "200") {
      OnFail(Code::kUnavailable, "the instance answered HTTP status " + std::string(v));
    }
    if (end && h.Find("grpc-status", &v)) {
      grpc_status_ = v;
      if (h.Find("grpc-message", &v)) grpc_message_ = http::DecodeGrpcMessage(v);
    }
  }
  void OnFail(Code, std::string_view message) override {
    if (fail_) return;
    fail_ = true;
    fail_msg_.assign(message);
  }
  void Wake() override {
    if (closed_ || scheduled) return;
    hold_ = shared_from_this();
    w_->Schedule(this);
  }
  void Process() override {
    auto self = std::move(hold_);
    if (closed_ || s_ == nullptr) return;
    if (fail_) return EndCall(websocket::close_code::internal_error, fail_msg_, false);
    Read();
    while (s_ != nullptr && out_bytes_ < kOutHighWater) {
      if (w_->TakeDown(s_, &frames_, 64u << 10) == 0) break;
      if (!ParseFrames()) return;
    }
    if (s_ != nullptr && s_->down_eof && s_->down.empty()) Finish();
  }
  void Drain() override {
    draining_ = true;
    if (s_ == nullptr) StartClose(websocket::close_code::going_away, "leverd is stopping");
  }
  void Close() override {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    boost::system::error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);
    if (s_ != nullptr) {
      Stream* s = s_;
      s_ = nullptr;
      w_->DetachDownstream(s, true);
    }
    w_->RemoveHttp(this);
    scheduled = false;
    auto keep = std::move(hold_);
    auto keep_self = std::move(self_);  // may be the last reference: nothing after this
  }
  const std::string& client_addr() const override { return up_.client_addr; }

 private:
  void OnAccepted(beast::error_code ec) {
    if (ec) return Close();  // CheckUpgrade passed, so only I/O errors get here
    open_ = true;
    w_->counters().http_responses[1].fetch_add(1, std::memory_order_relaxed);  // 101
    if (draining_) StartClose(websocket::close_code::going_away, "leverd is stopping");
    if (close_pending_) return Write();  // a close asked for during the handshake
    Read();
  }

  // --- client -> instance ---
  void Read() {
    if (reading_ || !open_ || peer_closed_ || closing_ || closed_) return;
    if (args_done_ && s_ == nullptr) return;  // the call ended: only the close is left
    if (s_ != nullptr && s_->up.size() >= kUpHighWater) return;  // resumed by Process
    reading_ = true;
    ws_.async_read(rbuf_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->reading_ = false;
      if (!self->closed_) self->OnRead(ec);
      self->w_->FlushDirty();
    });
  }

  void OnRead(beast::error_code ec) {
    if (ec == websocket::error::closed) {
      // The closing handshake is over (OnCloseFrame saw the client's close).
      if (s_ == nullptr) Close();
      return;
    }
    if (ec) {
      // A limit (Beast sent 1009 for message_too_big, 1007 for bad UTF-8, 1002
      // for a protocol error) or a dead connection: cancel the call.
      return Close();
    }
    idle_.Received(Clock::now());
    std::string_view data(static_cast<const char*>(rbuf_.data().data()), rbuf_.size());
    bool text = ws_.got_text();
    std::string frames;
    if (!args_done_) {
      if (!text) {
        return Refuse(websocket::close_code::bad_payload,
                      "the first message must be a text frame with the JSON argument array");
      }
      Array args;
      std::string error, msg;
      if (http::ParseArgs(data, &args, &error) != 0) {
        return Refuse(websocket::close_code::bad_payload, "first message: " + error);
      }
      if (Status s = wire::EncodeStreamRpc(args, wire::Codec::kProtoJson, &msg); !s.ok()) {
        return Refuse(websocket::close_code::bad_payload, s.message());
      }
      http::AppendGrpcFrame(msg, &frames);
      args_done_ = true;
      Consume();
      s_ = OpenHttpCall(w_, this, up_.target, wire::kStreamMethod, up_.admin_token, frames, false);
    } else if (s_ != nullptr) {
      Value v;
      if (text) {
        DecodeLimits limits;
        limits.max_depth = 64;
        if (Status s = ParseJson(data, &v, limits); !s.ok()) {
          return Refuse(websocket::close_code::bad_payload, "invalid JSON message: " + s.message());
        }
      } else {
        v = Value::FromBytes(std::string(data));
      }
      std::string msg;
      if (Status s = wire::EncodeStreamValue(v, false, wire::Codec::kProtoJson, &msg); !s.ok()) {
        return Refuse(websocket::close_code::bad_payload, s.message());
      }
      Consume();
      http::AppendGrpcFrame(msg, &frames);
      w_->PushUp(s_, frames, false);
    } else {
      Consume();
    }
    Arm();
    Read();
  }

  // Drops the message read; a big one's storage goes too.
  void Consume() {
    rbuf_.consume(rbuf_.size());
    if (rbuf_.capacity() > (64u << 10)) rbuf_.shrink_to_fit();
  }

  // The client's close frame, seen while Beast reads it (it answers it and
  // closes the socket by itself): the call is half-closed, so its handler sees
  // the end of its input rather than a cancellation; with nobody to read what
  // it still sends, it has kAfterCloseGrace (at most the idle timeout) to
  // finish before it is cancelled.
  void OnCloseFrame() {
    if (peer_closed_) return;
    peer_closed_ = true;
    out_.clear();
    out_bytes_ = 0;
    if (s_ == nullptr || closing_) return;
    w_->PushUp(s_, {}, true);
    after_close_ = Clock::now() + std::min<std::chrono::milliseconds>(kAfterCloseGrace, o_.idle_timeout);
    Arm();
    Wake();
    w_->FlushDirty();  // the read that carries this frame ends only with the TCP connection
  }

  // The client broke the protocol of the call: cancel it and close.
  void Refuse(websocket::close_code code, const std::string& reason) {
    if (s_ != nullptr) {
      Stream* s = s_;
      s_ = nullptr;
      w_->DetachDownstream(s, true);
    }
    args_done_ = true;
    out_.clear();
    out_bytes_ = 0;
    StartClose(code, reason);
  }

  // --- instance -> client ---
  bool ParseFrames() {
    int64_t used = http::ForEachGrpcFrame(frames_, kMaxReplyMessage, [this](std::string_view m) { return OnMessage(m); });
    if (closed_ || s_ == nullptr) return false;
    if (used < 0) {
      EndCall(websocket::close_code::internal_error, "the instance sent a malformed reply", true);
      return false;
    }
    frames_.erase(0, static_cast<size_t>(used));
    return true;
  }

  bool OnMessage(std::string_view m) {
    if (!handshake_) {
      handshake_ = true;
      return m.empty();
    }
    if (app_error_) return true;  // nothing after an error counts
    wire::StreamKind kind;
    Value v;
    Array args;
    if (!wire::DecodeStreamMessage(m, wire::Codec::kProtoJson, &kind, &v, &args).ok()) return false;
    if (kind == wire::StreamKind::kError) {
      app_error_ = true;
      if (v.is_string()) {
        app_error_text_ = v.as_string();
      } else {
        (void)WriteJson(v, &app_error_text_, JsonOut());
      }
      return true;
    }
    if (kind != wire::StreamKind::kMessage) return false;
    if (peer_closed_) return true;  // nobody reads it any more
    OutMessage out;
    if (v.is_bytes()) {
      out.binary = true;
      out.data.assign(v.as_bytes().view());
    } else if (!WriteJson(v, &out.data, JsonOut()).ok()) {
      return false;
    }
    out_bytes_ += out.data.size();
    out_.push_back(std::move(out));
    Write();
    return true;
  }

  // The instance ended the call (all its frames are parsed).
  void Finish() {
    if (!frames_.empty()) {
      return EndCall(websocket::close_code::internal_error, "the instance's reply ended inside a message", true);
    }
    if (grpc_status_.empty()) {
      std::string_view v;
      if (s_->trailers.Find("grpc-status", &v)) grpc_status_.assign(v);
      if (s_->trailers.Find("grpc-message", &v)) grpc_message_ = http::DecodeGrpcMessage(v);
    }
    if (grpc_status_.empty()) {
      return EndCall(websocket::close_code::internal_error, "the instance ended the call without a status", true);
    }
    if (grpc_status_ != "0") {
      std::string message = grpc_message_.empty() ? "the call failed (grpc-status " + grpc_status_ + ")" : grpc_message_;
      return EndCall(websocket::close_code::internal_error, message, false);
    }
    if (app_error_) return EndCall(websocket::close_code::internal_error, app_error_text_, false);
    EndCall(websocket::close_code::normal, "", false);
  }

  // The call is over: release the Stream, send what is queued, then close.
  void EndCall(websocket::close_code code, const std::string& reason, bool cancel) {
    if (s_ != nullptr) {
      Stream* s = s_;
      s_ = nullptr;
      w_->DetachDownstream(s, cancel);
    }
    if (peer_closed_) {
      if (!reading_) Close();  // else when Beast's closing handshake ends (OnRead)
      return;
    }
    StartClose(code, reason);
  }

  void Write() {
    if (writing_ || !open_ || peer_closed_ || closed_) return;
    if (out_.empty()) {
      if (close_pending_) SendClose();
      return;
    }
    writing_ = true;
    wmsg_ = std::move(out_.front());
    out_.pop_front();
    out_bytes_ -= wmsg_.data.size();
    ws_.binary(wmsg_.binary);
    ws_.async_write(asio::buffer(wmsg_.data), [self = shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      if (self->closed_) return;
      if (ec) return self->Close();
      self->wmsg_.data.clear();
      self->Write();
      if (self->s_ != nullptr) self->Wake();  // room for more of the response
      self->w_->FlushDirty();
    });
  }

  // Closes after the queued messages (Write sends the close frame).
  void StartClose(websocket::close_code code, std::string_view reason) {
    if (close_pending_ || closing_ || closed_) return;
    close_pending_ = true;
    // Whatever the client does (not reading, not answering the close), the
    // connection is gone by then.
    close_deadline_ = Clock::now() + std::min<std::chrono::milliseconds>(o_.idle_timeout, std::chrono::seconds(10));
    Arm();
    close_ = websocket::close_reason(code);
    close_.reason = CloseReason(reason);
    if (!open_) return;  // the handshake finishes first (OnAccepted reads, Write closes)
    Write();
  }

  void SendClose() {
    if (closing_ || peer_closed_) return;
    closing_ = true;
    close_pending_ = false;
    // Beast waits for the client's close frame (bounded by its handshake
    // timeout), reading and dropping what comes before it.
    ws_.async_close(close_, [self = shared_from_this()](beast::error_code) {
      self->Close();
      self->w_->FlushDirty();
    });
  }

  // --- timers ---
  bool MayPing() const { return open_ && args_done_ && !closing_ && !peer_closed_; }
  void Arm() {
    if (closed_) return;
    Clock::time_point t = std::min(after_close_, close_deadline_);
    if (!close_pending_ && !closing_ && t == Clock::time_point::max()) t = idle_.NextCheck(MayPing());
    if (t == Clock::time_point::max()) return;
    if (armed_ && armed_at_ <= t) return;
    armed_ = true;
    armed_at_ = t;
    uint64_t gen = ++timer_gen_;
    timer_.expires_at(t);
    timer_.async_wait([self = shared_from_this(), gen](beast::error_code) {
      if (gen != self->timer_gen_ || self->closed_) return;
      self->armed_ = false;
      self->OnTimer();
      self->w_->FlushDirty();
    });
  }
  void OnTimer() {
    Clock::time_point now = Clock::now();
    if (now >= close_deadline_) return Close();  // the closing handshake did not finish
    if (after_close_ != Clock::time_point::max()) {
      if (now >= after_close_) return Close();  // the half-closed call did not finish: cancel it
      return Arm();
    }
    if (close_pending_ || closing_) return Arm();
    switch (idle_.Check(now, MayPing())) {
      case IdleRule::Action::kClose:
        return Refuse(websocket::close_code::going_away, "idle timeout");
      case IdleRule::Action::kPing:
        if (!pinging_) {
          pinging_ = true;
          ws_.async_ping({}, [self = shared_from_this()](beast::error_code ec) {
            self->pinging_ = false;
            if (ec && !self->closed_) self->Close();
            self->w_->FlushDirty();
          });
        }
        break;
      case IdleRule::Action::kNone:
        break;
    }
    Arm();
  }

  struct OutMessage {
    bool binary = false;
    std::string data;
  };

  WorkerImpl* w_;
  const WebSocketOptions& o_;
  websocket::stream<Socket> ws_;
  asio::steady_timer timer_;
  boost::beast::http::request<boost::beast::http::empty_body> req_;
  Upgrade up_;
  IdleRule idle_;
  std::shared_ptr<WsConn> hold_;  // while scheduled
  std::shared_ptr<WsConn> self_;  // from Start until Close

  bool open_ = false, closed_ = false, draining_ = false, reading_ = false, writing_ = false, pinging_ = false;
  bool args_done_ = false, peer_closed_ = false;
  bool close_pending_ = false, closing_ = false;
  websocket::close_reason close_;
  beast::flat_buffer rbuf_;

  // The call.
  Stream* s_ = nullptr;
  std::string frames_;  // gRPC frames from the instance, not yet parsed
  bool handshake_ = false, app_error_ = false, fail_ = false;
  std::string app_error_text_, fail_msg_, grpc_status_, grpc_message_;
  std::deque<OutMessage> out_;
  OutMessage wmsg_;     // the message being written
  size_t out_bytes_ = 0;  // queued in out_

  Clock::time_point after_close_ = Clock::time_point::max();    // OnCloseFrame
  Clock::time_point close_deadline_ = Clock::time_point::max();  // StartClose
  bool armed_ = false;
  Clock::time_point armed_at_{};
  uint64_t timer_gen_ = 0;
};

}  // namespace

void StartWebSocket(WorkerImpl* w, Socket socket, RequestHead req, Upgrade upgrade, const WebSocketOptions& options) {
  auto conn = std::make_shared<WsConn>(w, std::move(socket), std::move(req), std::move(upgrade), options);
  conn->Start();
  w->FlushDirty();
}

}  // namespace lever::gateway::ws
