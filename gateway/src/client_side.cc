#include "client_side.h"

#include <iterator>

#include "backend_side.h"
#include "worker.h"

namespace lever::gateway {
namespace {

constexpr std::string_view kLeverUrl = "lever-url";
constexpr std::string_view kClusterToken = "x-lever-cluster-token";
constexpr std::string_view kPeerSrcEnv = "x-lever-src-env";
constexpr std::string_view kPeerClientAddr = "x-lever-client-addr";
// After a timeout's GOAWAY, how long a client has to take it before the
// connection is closed anyway.
constexpr std::chrono::milliseconds kGoawayLinger{1000};

// --- callbacks of the server session (toward clients) -----------------------

struct ClientCallbacks {
  static int OnBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* conn = static_cast<ClientConn*>(user);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    Stream* s = conn->worker()->NewStream();
    s->client = conn;
    s->csid = frame->hd.stream_id;
    conn->AddStream(s);
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    return 0;
  }

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = StreamOf(session, frame->hd.stream_id);
    if (s == nullptr) return 0;
    std::string_view n = View(name, namelen), v = View(value, valuelen);
    // Reference §2.4: every client x-* header is dropped (no spoofing). On
    // the peer port the relaying node's own headers are kept once its
    // cluster token is checked (at the end of the headers).
    if (n.starts_with("x-")) {
      auto* conn = static_cast<ClientConn*>(user);
      if (conn->peer() && frame->headers.cat == NGHTTP2_HCAT_REQUEST && v.size() <= 1024) {
        if (n == kClusterToken) {
          s->peer_authed = TokenEquals(v, conn->worker()->config().cluster_token);
        } else if (n == kPeerSrcEnv) {
          s->peer_src_env.assign(v);
        } else if (n == kPeerClientAddr) {
          s->peer_client_addr.assign(v);
        }
      }
      return 0;
    }
    // A bounded header list (RelayConfig::max_header_list_bytes): beyond it
    // the call is answered RESOURCE_EXHAUSTED.
    if (s->headers_too_large ||
        s->req.bytes() + s->up_trailers.bytes() + namelen + valuelen > s->client->worker()->config().max_header_list_bytes) {
      s->headers_too_large = true;
      return 0;
    }
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      if (n == kLeverUrl) s->url.assign(v);
      s->req.Add(n, v);
    } else {
      s->up_trailers.Add(n, v);
    }
    return 0;
  }

  static int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* conn = static_cast<ClientConn*>(user);
    WorkerImpl* w = conn->worker();
    if (frame->hd.type == NGHTTP2_SETTINGS) {
      conn->OnSettings((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0);
      return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    Stream* s = StreamOf(session, frame->hd.stream_id);
    if (s == nullptr) return 0;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (end) s->up_eof = true;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      if (s->headers_too_large) {
        w->FailClient(s, Code::kResourceExhausted, "request headers exceed the header list limit");
        return 0;
      }
      if (conn->peer()) {
        if (!s->peer_authed) {
          w->FailClient(s, Code::kUnauthenticated, "the peer port takes calls from Lever nodes with the cluster token only");
          return 0;
        }
        w->Route(s, s->peer_src_env, /*from_peer=*/true);
        return 0;
      }
      w->Route(s, conn->src_env());
      return 0;
    }
    if (end && s->bconn != nullptr && s->bsid > 0 && s->up_deferred) {
      s->up_deferred = false;
      nghttp2_session_resume_data(s->bconn->session(), s->bsid);
      w->MarkDirty(s->bconn);
    }
    return 0;
  }

  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t sid, const uint8_t* data, size_t len,
                         void* user) {
    auto* conn = static_cast<ClientConn*>(user);
    Stream* s = StreamOf(session, sid);
    if (s == nullptr || s->discard_up) {
      nghttp2_session_consume(session, sid, len);
      return 0;
    }
    s->up.Append(data, len);
    conn->worker()->AddBuffered(static_cast<int64_t>(len));
    if (s->bconn != nullptr && s->bsid > 0 && s->up_deferred) {
      s->up_deferred = false;
      nghttp2_session_resume_data(s->bconn->session(), s->bsid);
      conn->worker()->MarkDirty(s->bconn);
    }
    return 0;
  }

  static int OnStreamClose(nghttp2_session* session, int32_t sid, uint32_t error_code, void* user) {
    auto* conn = static_cast<ClientConn*>(user);
    Stream* s = StreamOf(session, sid);
    if (s == nullptr || s->client != conn || s->csid != sid) return 0;
    nghttp2_session_set_stream_user_data(session, sid, nullptr);
    conn->worker()->OnClientStreamClosed(s, error_code);
    return 0;
  }

  // Response DATA toward the client, read from the stream's `down` buffer.
  static ssize_t ReadDown(nghttp2_session* session, int32_t sid, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void* user) {
    auto* conn = static_cast<ClientConn*>(user);
    WorkerImpl* w = conn->worker();
    auto* s = static_cast<Stream*>(source->ptr);
    size_t n = s->down.Read(buf, length);
    if (n != 0) {
      s->down_waiting_since = {};  // the client takes it
      w->AddBuffered(-static_cast<int64_t>(n));
      // The backend may send more only as the client takes it.
      if (!s->down_consumed && s->bconn != nullptr && s->bsid > 0) {
        nghttp2_session_consume_stream(s->bconn->session(), s->bsid, n);
        w->MarkDirty(s->bconn);
      }
    }
    return EndOfRead(w, session, sid, n, s->down, s->down_eof, s->trailers, &s->down_deferred, flags);
  }
};


const nghttp2_session_callbacks* SessionCallbacksOfClient() {
  static const SessionCallbacks callbacks([](nghttp2_session_callbacks* cb) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &ClientCallbacks::OnBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(cb, &ClientCallbacks::OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &ClientCallbacks::OnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &ClientCallbacks::OnDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &ClientCallbacks::OnStreamClose);
  });
  return callbacks.get();
}

}  // namespace

nghttp2_data_provider DownProvider(Stream* s) {
  nghttp2_data_provider prd;
  prd.source.ptr = s;
  prd.read_callback = &ClientCallbacks::ReadDown;
  return prd;
}

// --- ClientConn -----------------------------------------------------------------

ClientConn::ClientConn(WorkerImpl* w, Socket socket, std::string src_env, bool peer)
    : H2Conn(w, std::move(socket)), timer_(w->io_context()), src_env_(std::move(src_env)), peer_(peer) {}

ClientConn::~ClientConn() = default;

bool ClientConn::Init(const std::string& preface) {
  if (nghttp2_session_server_new3(&session_, SessionCallbacksOfClient(), this, RelaySessionOption(),
                                  memory_->mem()) != 0) {
    return false;
  }
  const RelayConfig& config = w_->config();
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, config.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, config.stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, config.max_header_list_bytes},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(config.connection_window));
  SetTcpNoDelay(socket_);
  client_addr_ = PeerAddress(socket_);
  auto now = std::chrono::steady_clock::now();
  t_.settings_deadline = now + config.client_settings_timeout;
  t_.idle = true;
  t_.idle_since = now;
  if (!Feed(reinterpret_cast<const uint8_t*>(preface.data()), preface.size())) return false;
  StartRead();
  std::chrono::steady_clock::time_point next{};
  if (Decide(t_, config, now, &next) == Verdict::kKeep) ArmTimer(next);
  return true;
}

void ClientConn::OnSettings(bool ack) {
  if (ack) {
    settings_acked_ = true;
  } else {
    peer_settings_ = true;
  }
  t_.settings_done = peer_settings_ && settings_acked_;
}

ClientConn::Verdict ClientConn::Decide(const TimerState& t, const RelayConfig& config,
                                       std::chrono::steady_clock::time_point now,
                                       std::chrono::steady_clock::time_point* next) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point at = Clock::time_point::max();
  if (!t.settings_done) {
    if (now >= t.settings_deadline) return Verdict::kSettingsTimeout;
    at = t.settings_deadline;
  }
  if (t.writing && config.client_write_timeout.count() > 0) {
    Clock::time_point deadline = t.write_started + config.client_write_timeout;
    if (now >= deadline) return Verdict::kWriteTimeout;
    at = std::min(at, deadline);
  }
  if (config.client_idle_timeout.count() > 0) {
    if (t.idle) {
      Clock::time_point deadline = t.idle_since + config.client_idle_timeout;
      if (now >= deadline) return Verdict::kIdle;
      at = std::min(at, deadline);
    } else {
      // Busy: look again later (idle_since is set when the last stream ends).
      at = std::min(at, now + config.client_idle_timeout);
    }
  }
  if (config.client_write_timeout.count() > 0 && !t.writing) {
    at = std::min(at, now + config.client_write_timeout);  // a write may start meanwhile
  }
  if (config.client_write_timeout.count() > 0 && t.waiting) {
    at = std::min(at, t.waiting_since + config.client_write_timeout);  // ResetStalledStreams then
  }
  *next = at;
  return Verdict::kKeep;
}

void ClientConn::ArmTimer(std::chrono::steady_clock::time_point at) {
  if (closed_ || at == std::chrono::steady_clock::time_point::max()) return;
  timer_at_ = at;
  timer_.expires_at(at);
  timer_.async_wait([self = shared_from_this(), this](boost::system::error_code ec) {
    if (ec || closed_) return;
    OnTimer();
    w_->FlushDirty();
  });
}

void ClientConn::OnTimer() {
  auto now = std::chrono::steady_clock::now();
  if (terminating_) {
    Close();  // it did not take the GOAWAY in time
    return;
  }
  ResetStalledStreams(now);
  t_.idle = streams_.empty();
  t_.writing = writing_;
  t_.write_started = write_started_;
  std::chrono::steady_clock::time_point next{};
  Verdict v = Decide(t_, w_->config(), now, &next);
  if (v == Verdict::kKeep) {
    ArmTimer(next);
    return;
  }
  w_->counters().timed_out.fetch_add(1, std::memory_order_relaxed);
  if (v == Verdict::kWriteTimeout) {
    Close();  // it reads nothing: a GOAWAY would not get through either
    return;
  }
  // GOAWAY, then close once it is written (Flush) or after a short linger.
  nghttp2_session_terminate_session(session_, v == Verdict::kSettingsTimeout ? NGHTTP2_SETTINGS_TIMEOUT
                                                                             : NGHTTP2_NO_ERROR);
  terminating_ = true;
  w_->MarkDirty(this);
  ArmTimer(now + kGoawayLinger);
}

void ClientConn::ResetStalledStreams(std::chrono::steady_clock::time_point now) {
  using Clock = std::chrono::steady_clock;
  auto timeout = w_->config().client_write_timeout;
  t_.waiting = false;
  if (timeout.count() <= 0) return;
  Clock::time_point earliest = Clock::time_point::max();
  bool reset = false;
  // Submitting RST_STREAM closes nothing yet (nghttp2 does at the next send),
  // so streams_ stays as it is during the walk.
  for (Stream* s : streams_) {
    if (s->down.empty()) {
      s->down_waiting_since = {};
      continue;
    }
    if (s->down_waiting_since == Clock::time_point::max()) continue;  // reset already
    if (s->down_waiting_since == Clock::time_point{}) s->down_waiting_since = now;
    if (now - s->down_waiting_since >= timeout) {
      // A reader that shut its window: nghttpx's --stream-write-timeout.
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->csid, NGHTTP2_CANCEL);
      s->down_waiting_since = Clock::time_point::max();
      reset = true;
      continue;
    }
    earliest = std::min(earliest, s->down_waiting_since);
  }
  if (earliest != Clock::time_point::max()) {
    t_.waiting = true;
    t_.waiting_since = earliest;
  }
  if (reset) w_->MarkDirty(this);
}

void ClientConn::AddStream(Stream* s) {
  s->client_index = streams_.size();
  streams_.push_back(s);
}

void ClientConn::RemoveStream(Stream* s) {
  size_t i = s->client_index;
  if (i >= streams_.size() || streams_[i] != s) return;
  streams_[i] = streams_.back();
  streams_[i]->client_index = i;
  streams_.pop_back();
  if (streams_.empty()) t_.idle_since = std::chrono::steady_clock::now();
}

void ClientConn::Goaway() {
  if (closed_) return;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  w_->MarkDirty(this);
}

void ClientConn::OnClose() {
  timer_.cancel();
  std::vector<Stream*> streams;
  streams.swap(streams_);
  for (Stream* s : streams) {
    s->client_index = SIZE_MAX;
    w_->OnClientStreamClosed(s, NGHTTP2_CANCEL);
  }
}

}  // namespace lever::gateway
