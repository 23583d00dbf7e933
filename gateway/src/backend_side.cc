#include "backend_side.h"

#include <sys/un.h>

#include <charconv>
#include <iterator>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>

#include "client_side.h"
#include "worker.h"

namespace lever::gateway {
namespace {

namespace asio = boost::asio;

constexpr std::string_view kSrcEnv = "x-lever-src-env";
constexpr std::string_view kClientAddr = "x-lever-client-addr";
constexpr std::string_view kClusterToken = "x-lever-cluster-token";
constexpr std::string_view kFencingToken = "x-lever-fencing-token";

// --- callbacks of the client sessions (toward instances) --------------------

struct BackendCallbacks {
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    auto* conn = static_cast<BackendConn*>(user);
    if (frame->hd.type == NGHTTP2_HEADERS) conn->scratch().Clear();
    return 0;
  }

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto* conn = static_cast<BackendConn*>(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = StreamOf(session, frame->hd.stream_id);
    if (s == nullptr) return 0;
    // A bounded response header list too: an instance cannot make the relay
    // hold more than max_header_list_bytes of headers for a call.
    if (conn->scratch().bytes() + s->trailers.bytes() + namelen + valuelen >
        conn->worker()->config().max_header_list_bytes) {
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream: the call fails
    }
    if (frame->headers.cat == NGHTTP2_HCAT_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
      s->trailers.Add(View(name, namelen), View(value, valuelen));
    } else {
      conn->scratch().Add(View(name, namelen), View(value, valuelen));
    }
    return 0;
  }

  static int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* conn = static_cast<BackendConn*>(user);
    WorkerImpl* w = conn->worker();
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      conn->OnGoaway(frame->goaway.error_code);
      return 0;
    }
    if (frame->hd.type == NGHTTP2_SETTINGS) {
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
        conn->OnSettingsAck();
      } else {
        conn->OnPeerSettings();
      }
      return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    Stream* s = StreamOf(session, frame->hd.stream_id);
    if (s == nullptr) return 0;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (s->ds != nullptr) {
      if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
        if (s->resp_started) return 0;
        s->resp_started = true;
        s->ds->OnResponseHeaders(conn->scratch(), end);
      }
      if (end) s->down_eof = true;
      s->ds->Wake();
      return 0;
    }
    if (s->client == nullptr) return 0;
    nghttp2_session* cs = s->client->session();
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
      if (s->resp_started) return 0;  // the relay already answered
      auto& nv = w->nv_scratch();
      conn->scratch().ToNv(&nv);
      s->resp_started = true;
      if (end) {
        s->down_eof = true;
        nghttp2_submit_response(cs, s->csid, nv.data(), nv.size(), nullptr);
      } else {
        nghttp2_data_provider prd = DownProvider(s);
        nghttp2_submit_response(cs, s->csid, nv.data(), nv.size(), &prd);
      }
      w->MarkDirty(s->client);
      return 0;
    }
    if (end) {
      s->down_eof = true;
      if (s->resp_started && s->down_deferred) {
        s->down_deferred = false;
        nghttp2_session_resume_data(cs, s->csid);
        w->MarkDirty(s->client);
      }
    }
    return 0;
  }

  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t sid, const uint8_t* data, size_t len,
                         void* user) {
    auto* conn = static_cast<BackendConn*>(user);
    Stream* s = StreamOf(session, sid);
    if (s == nullptr || !s->attached() || s->down_eof) {
      nghttp2_session_consume(session, sid, len);
      return 0;
    }
    s->down.Append(data, len);
    conn->worker()->AddBuffered(static_cast<int64_t>(len));
    // The connection window goes back at once, the stream's only as the
    // client takes the bytes: one client that does not read stalls its own
    // streams, never the worker's other calls to this instance.
    nghttp2_session_consume_connection(session, len);
    if (s->ds != nullptr) {
      s->ds->Wake();
      return 0;
    }
    if (s->resp_started && s->down_deferred) {
      s->down_deferred = false;
      nghttp2_session_resume_data(s->client->session(), s->csid);
      conn->worker()->MarkDirty(s->client);
    }
    return 0;
  }

  static int OnStreamClose(nghttp2_session* session, int32_t sid, uint32_t error_code, void* user) {
    auto* conn = static_cast<BackendConn*>(user);
    Stream* s = StreamOf(session, sid);
    if (s == nullptr || s->bconn != conn || s->bsid != sid) return 0;
    nghttp2_session_set_stream_user_data(session, sid, nullptr);
    conn->worker()->OnBackendStreamClosed(s, error_code, {});
    return 0;
  }

  static int OnFrameNotSend(nghttp2_session* session, const nghttp2_frame* frame, int, void* user) {
    // A request HEADERS that could not go out (cancelled before it was sent,
    // or the session is going away): the backend stream never opened.
    auto* conn = static_cast<BackendConn*>(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = StreamOf(session, frame->hd.stream_id);
    if (s == nullptr || s->bconn != conn || s->bsid != frame->hd.stream_id) return 0;
    conn->worker()->OnBackendStreamClosed(s, NGHTTP2_REFUSED_STREAM, {});
    return 0;
  }

  // Request DATA toward the instance, read from the stream's `up` buffer.
  static ssize_t ReadUp(nghttp2_session* session, int32_t sid, uint8_t* buf, size_t length, uint32_t* flags,
                        nghttp2_data_source* source, void* user) {
    auto* conn = static_cast<BackendConn*>(user);
    WorkerImpl* w = conn->worker();
    auto* s = static_cast<Stream*>(source->ptr);
    size_t n = s->up.Read(buf, length);
    if (n != 0) {
      s->up_taken = true;
      w->AddBuffered(-static_cast<int64_t>(n));
      if (!s->up_consumed && s->client != nullptr) {
        nghttp2_session_consume(s->client->session(), s->csid, n);
        w->MarkDirty(s->client);
      } else if (s->ds != nullptr) {
        s->ds->Wake();  // room for more of the HTTP body
      }
    }
    return EndOfRead(w, session, sid, n, s->up, s->up_eof, s->up_trailers, &s->up_deferred, flags);
  }
};

const nghttp2_session_callbacks* SessionCallbacksOfBackend() {
  static const SessionCallbacks callbacks([](nghttp2_session_callbacks* cb) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &BackendCallbacks::OnBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(cb, &BackendCallbacks::OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &BackendCallbacks::OnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &BackendCallbacks::OnDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &BackendCallbacks::OnStreamClose);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, &BackendCallbacks::OnFrameNotSend);
  });
  return callbacks.get();
}

}  // namespace

// --- BackendConn ----------------------------------------------------------------

BackendConn::BackendConn(WorkerImpl* w, host::BackendPtr backend)
    : H2Conn(w, w->io_context()), backend_(std::move(backend)), connect_timer_(w->io_context()) {
  ready_ = false;
}

BackendConn::~BackendConn() = default;

void BackendConn::Connect() {
  const std::string& address = backend_->address();
  boost::system::error_code ec;
  asio::generic::stream_protocol::endpoint endpoint;
  if (address.starts_with("unix:") && address.size() - 5 < sizeof(sockaddr_un::sun_path) && address.size() > 5) {
    endpoint = asio::local::stream_protocol::endpoint(address.substr(5));  // cannot throw: length checked
  } else {
    size_t colon = address.rfind(':');
    std::string_view host = std::string_view(address).substr(0, colon == std::string::npos ? 0 : colon);
    uint16_t port = 0;
    std::string_view port_text = colon == std::string::npos ? std::string_view() : std::string_view(address).substr(colon + 1);
    auto [ptr, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
    if (host == "localhost") host = "127.0.0.1";
    asio::ip::address ip = asio::ip::make_address(host, ec);
    if (colon == std::string::npos || perr != std::errc() || ptr != port_text.data() + port_text.size() || ec) {
      fail_message_ = "instance address \"" + address + "\" is neither unix:/path (under 108 bytes) nor ip:port";
      failed_reported_ = true;
      backend_->OnConnectionFailed();
      // Fail on the next turn, after the caller queued its stream.
      asio::post(w_->io_context(), [self = shared_from_this(), this] {
        Close();
        w_->FlushDirty();
      });
      return;
    }
    endpoint = asio::ip::tcp::endpoint(ip, port);
  }
  connect_timer_.expires_after(w_->config().connect_timeout);
  connect_timer_.async_wait([self = shared_from_this(), this](boost::system::error_code timer_ec) {
    if (timer_ec || connected_ || closed_) return;
    fail_message_ = "timed out connecting to instance " + backend_->address();
    failed_reported_ = true;
    backend_->OnConnectionFailed();
    Close();
    w_->FlushDirty();
  });
  socket_.async_connect(endpoint, [self = shared_from_this(), this](boost::system::error_code connect_ec) {
    if (closed_) return;
    connect_timer_.cancel();
    if (connect_ec) {
      fail_message_ = "could not connect to instance " + backend_->address() + ": " + connect_ec.message();
      failed_reported_ = true;
      backend_->OnConnectionFailed();
      Close();
    } else {
      OnConnected();
    }
    w_->FlushDirty();
  });
}

void BackendConn::OnConnected() {
  if (nghttp2_session_client_new3(&session_, SessionCallbacksOfBackend(), this, RelaySessionOption(),
                                  memory_->mem()) != 0) {
    fail_message_ = "out of memory";
    Close();
    return;
  }
  SetTcpNoDelay(socket_);
  const RelayConfig& config = w_->config();
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, config.stream_window},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(config.connection_window));
  connected_ = true;
  ready_ = true;
  fail_message_ = "connection to instance " + backend_->address() + " lost";
  // A wedged instance (accepting in its kernel backlog, never answering)
  // must not hold the calls queued here: no SETTINGS and ACK in time, and
  // the connection closes; those calls are placed again (OnClose).
  connect_timer_.expires_after(config.instance_settings_timeout);
  connect_timer_.async_wait([self = shared_from_this(), this](boost::system::error_code timer_ec) {
    if (timer_ec || closed_ || (peer_ready_ && settings_acked_)) return;
    fail_message_ = "instance " + backend_->address() + " sent no HTTP/2 SETTINGS in time";
    failed_reported_ = true;
    backend_->OnConnectionFailed();
    w_->counters().timed_out.fetch_add(1, std::memory_order_relaxed);
    Close();
    w_->FlushDirty();
  });
  // What queued while connecting is submitted on the instance's SETTINGS.
  StartRead();
  w_->MarkDirty(this);
}

void BackendConn::OnPeerSettings() {
  if (peer_ready_) return;
  peer_ready_ = true;
  if (settings_acked_) connect_timer_.cancel();
  // Submit what queued while connecting (the list may shrink as we go).
  std::vector<Stream*> queued = streams_;
  for (Stream* s : queued) {
    if (s->bconn == this && s->bsid < 0) SubmitNow(s);
  }
  w_->MarkDirty(this);
}

void BackendConn::OnSettingsAck() {
  settings_acked_ = true;
  if (peer_ready_) connect_timer_.cancel();
}

void BackendConn::Submit(Stream* s) {
  s->bconn = this;
  s->backend_index = streams_.size();
  streams_.push_back(s);
  if (peer_ready_) SubmitNow(s);
}

bool BackendConn::SubmitNow(Stream* s) {
  auto& nv = w_->nv_scratch();
  s->req.ToNv(&nv);
  // Reference §2.4: the relay's own header, only for calls that arrived on an
  // environment's internal socket.
  if (s->client != nullptr && s->client->peer()) {
    // Relayed by another node: its headers, checked with its token.
    if (!s->peer_src_env.empty()) nv.push_back(Nv(kSrcEnv, s->peer_src_env));
    if (!s->peer_client_addr.empty()) nv.push_back(Nv(kClientAddr, s->peer_client_addr));
  } else if (s->client != nullptr) {
    if (!s->client->src_env().empty()) nv.push_back(Nv(kSrcEnv, s->client->src_env()));
    // Where the call came from (the admin service asks off-machine callers
    // for a token); clients cannot set it, every x-* header of theirs is gone.
    if (!s->client->client_addr().empty()) nv.push_back(Nv(kClientAddr, s->client->client_addr()));
  } else if (s->ds != nullptr && !s->ds->client_addr().empty()) {
    nv.push_back(Nv(kClientAddr, s->ds->client_addr()));  // HTTP calls are always external
  }
  // Another node's peer port takes calls with the cluster token only.
  if (backend_->is_peer()) nv.push_back(Nv(kClusterToken, w_->config().cluster_token));
  // A resource's owner in a cluster: its fencing token with every call (the
  // call's own backend: the connection is shared by the instance's resources).
  if (s->backend) {
    if (std::string_view t = s->backend->fencing_token(); !t.empty()) nv.push_back(Nv(kFencingToken, t));
  }
  nghttp2_data_provider prd;
  prd.source.ptr = s;
  prd.read_callback = &BackendCallbacks::ReadUp;
  bool body = !(s->up_eof && s->up.empty() && s->up_trailers.empty());
  int32_t sid = nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(), body ? &prd : nullptr, s);
  if (sid < 0) {
    RemoveStream(s);
    s->bconn = nullptr;
    w_->FailClient(s, Code::kUnavailable, "could not open a stream to the instance");
    w_->MaybeRelease(s);
    return false;
  }
  s->bsid = sid;  // the host counted the call when it placed it (Router contract)
  w_->MarkDirty(this);
  return true;
}

void BackendConn::RemoveStream(Stream* s) {
  size_t i = s->backend_index;
  if (i >= streams_.size() || streams_[i] != s) return;
  streams_[i] = streams_.back();
  streams_[i]->backend_index = i;
  streams_.pop_back();
}

// GOAWAY is not death: a graceful one (NO_ERROR: the instance is shutting
// down, or closing an old connection) drains this connection: no new
// streams here, the open ones finish, refused ones go elsewhere. Only an
// error GOAWAY is reported as a failed connection (the host then checks).
void BackendConn::OnGoaway(uint32_t error_code) {
  if (goaway_) return;
  goaway_ = true;
  if (error_code != NGHTTP2_NO_ERROR && !failed_reported_) {
    failed_reported_ = true;
    backend_->OnConnectionFailed();
  }
  w_->ForgetBackend(this);
}

void BackendConn::OnClose() {
  connect_timer_.cancel();
  if (!failed_reported_ && !goaway_) {
    failed_reported_ = true;
    backend_->OnConnectionFailed();
  }
  std::vector<Stream*> streams;
  streams.swap(streams_);
  for (Stream* s : streams) {
    s->backend_index = SIZE_MAX;
    if (!peer_ready_ && s->bsid < 0 && !s->rerouted && s->attached() && s->bconn == this) {
      // The instance never spoke HTTP/2 here, so it saw nothing of this call:
      // place it again, once (the host no longer offers a backend whose
      // connection failed until it has checked it).
      w_->Replace(s);
      continue;
    }
    w_->OnBackendStreamClosed(s, NGHTTP2_INTERNAL_ERROR, fail_message_.empty() ? "connection to instance lost" : fail_message_);
  }
}

}  // namespace lever::gateway
