#include "relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstddef>
#include <charconv>
#include <mutex>
#include <type_traits>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "grpc_status.h"
#include "lever/url.h"

namespace lever::gateway {
namespace {

namespace asio = boost::asio;

constexpr std::string_view kLeverUrl = "lever-url";
constexpr std::string_view kSrcEnv = "x-lever-src-env";
constexpr std::string_view kClientAddr = "x-lever-client-addr";
constexpr size_t kMaxHeaderBytes = 64u << 10;

std::string_view View(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

nghttp2_nv Nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    NGHTTP2_NV_FLAG_NONE};
}

Stream* StreamOf(nghttp2_session* session, int32_t sid) {
  return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, sid));
}

// --- shared pieces of the two directions ------------------------------------

}  // namespace

void SetTcpNoDelay(Socket& socket) {
  boost::system::error_code ec;
  auto local = socket.local_endpoint(ec);
  if (ec) return;
  if (local.protocol().family() == AF_INET || local.protocol().family() == AF_INET6) {
    int one = 1;
    ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

// "ip:port", "[ip6]:port", or "unix:<path of the listener>" (unix clients
// are unnamed).
std::string PeerAddress(Socket& socket) {
  boost::system::error_code ec;
  auto peer = socket.remote_endpoint(ec);
  if (ec) return "";
  char text[INET6_ADDRSTRLEN] = {};
  const sockaddr* sa = peer.data();
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  if (sa->sa_family == AF_UNIX) {
    auto local = socket.local_endpoint(ec);
    if (ec || local.size() <= offsetof(sockaddr_un, sun_path)) return "unix:";
    auto* un = reinterpret_cast<const sockaddr_un*>(local.data());
    size_t n = local.size() - offsetof(sockaddr_un, sun_path);
    return "unix:" + std::string(un->sun_path, strnlen(un->sun_path, n));
  }
  return "";
}

// --- callbacks of the server session (toward clients) -----------------------

// The end of a data source read, the same in both directions: once one side's
// buffer is drained and that side has ended, EOF (with its trailers, if any);
// while it waits for more, DEFERRED; otherwise the `n` bytes just copied.
ssize_t EndOfRead(WorkerImpl* w, nghttp2_session* session, int32_t sid, size_t n, const ByteBuf& buffer, bool eof,
                  const HeaderBlock& trailers, bool* deferred, uint32_t* flags) {
  if (!buffer.empty()) return static_cast<ssize_t>(n);
  if (eof) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!trailers.empty()) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      auto& nv = w->nv_scratch();
      trailers.ToNv(&nv);
      nghttp2_submit_trailer(session, sid, nv.data(), nv.size());
    }
  } else if (n == 0) {
    *deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

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
                      const uint8_t* value, size_t valuelen, uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = StreamOf(session, frame->hd.stream_id);
    if (s == nullptr) return 0;
    std::string_view n = View(name, namelen), v = View(value, valuelen);
    // Reference §2.4: every client x-* header is dropped (no spoofing).
    if (n.starts_with("x-")) return 0;
    // A bounded header list: beyond it the call is answered RESOURCE_EXHAUSTED.
    if (s->headers_too_large || s->req.bytes() + s->up_trailers.bytes() + namelen + valuelen > kMaxHeaderBytes) {
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
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    Stream* s = StreamOf(session, frame->hd.stream_id);
    if (s == nullptr) return 0;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (end) s->up_eof = true;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      if (s->headers_too_large) {
        w->FailClient(s, Code::kResourceExhausted, "request headers exceed 64 KiB");
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
      w->AddBuffered(-static_cast<int64_t>(n));
      // The backend may send more only as the client takes it.
      if (!s->down_consumed && s->bconn != nullptr && s->bsid > 0) {
        nghttp2_session_consume(s->bconn->session(), s->bsid, n);
        w->MarkDirty(s->bconn);
      }
    }
    return EndOfRead(w, session, sid, n, s->down, s->down_eof, s->trailers, &s->down_deferred, flags);
  }
};

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
      conn->OnGoaway();
      return 0;
    }
    if (frame->hd.type == NGHTTP2_SETTINGS && (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
      conn->OnPeerSettings();
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
        nghttp2_data_provider prd;
        prd.source.ptr = s;
        prd.read_callback = &ClientCallbacks::ReadDown;
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

namespace {

struct Callbacks {
  nghttp2_session_callbacks* server = nullptr;
  nghttp2_session_callbacks* client = nullptr;
  nghttp2_option* option = nullptr;
  Callbacks() {
    nghttp2_session_callbacks_new(&server);
    nghttp2_session_callbacks_set_on_begin_headers_callback(server, &ClientCallbacks::OnBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(server, &ClientCallbacks::OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(server, &ClientCallbacks::OnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(server, &ClientCallbacks::OnDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(server, &ClientCallbacks::OnStreamClose);

    nghttp2_session_callbacks_new(&client);
    nghttp2_session_callbacks_set_on_begin_headers_callback(client, &BackendCallbacks::OnBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(client, &BackendCallbacks::OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(client, &BackendCallbacks::OnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(client, &BackendCallbacks::OnDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(client, &BackendCallbacks::OnStreamClose);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(client, &BackendCallbacks::OnFrameNotSend);

    nghttp2_option_new(&option);
    // Flow control end to end: bytes are consumed only as the other side
    // takes them (nghttp2_session_consume).
    nghttp2_option_set_no_auto_window_update(option, 1);
  }
  ~Callbacks() {
    nghttp2_session_callbacks_del(server);
    nghttp2_session_callbacks_del(client);
    nghttp2_option_del(option);
  }
};

const Callbacks& GetCallbacks() {
  static const Callbacks callbacks;
  return callbacks;
}

}  // namespace

namespace {

// Workers by serial, for Router answers that arrive on other threads. Only
// the cold-start path takes the lock.
struct WorkerRegistry {
  std::mutex mu;
  std::unordered_map<uint32_t, std::weak_ptr<WorkerImpl>> workers;
};
WorkerRegistry& Registry() {
  static WorkerRegistry* registry = new WorkerRegistry;  // never destroyed: late answers may come at exit
  return *registry;
}
std::atomic<uint32_t> next_worker_serial{1};
thread_local WorkerImpl* current_worker = nullptr;

}  // namespace

// The Router's `done`: 16 trivially copyable bytes, which std::function keeps
// in its small buffer (no heap allocation per call).
struct RouteDone {
  WorkerImpl::RouteTicket ticket;
  void operator()(host::RouteResult result) const { WorkerImpl::Deliver(ticket, std::move(result)); }
};
static_assert(std::is_trivially_copyable_v<RouteDone> && sizeof(RouteDone) <= 16);

// --- H2Conn -------------------------------------------------------------------

H2Conn::~H2Conn() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

void H2Conn::StartRead() {
  socket_.async_read_some(asio::buffer(rbuf_), [self = shared_from_this(), this](boost::system::error_code ec,
                                                                                  size_t n) {
    if (closed_) return;
    if (ec || !Feed(rbuf_.data(), n)) {
      Close();
      w_->FlushDirty();
      return;
    }
    // Forward first: the next read (often a speculative recv that finds
    // nothing) stays off the critical path.
    w_->FlushDirty();
    if (!closed_) StartRead();
  });
}

bool H2Conn::Feed(const uint8_t* data, size_t n) {
  ssize_t rv = nghttp2_session_mem_recv(session_, data, n);
  if (rv < 0) return false;
  w_->MarkDirty(this);
  return true;
}

void H2Conn::Flush() {
  if (closed_ || writing_ || !ready_) return;
  wbuf_.clear();
  for (;;) {
    const uint8_t* p = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &p);
    if (n < 0) {
      Close();
      return;
    }
    if (n == 0) break;
    wbuf_.insert(wbuf_.end(), p, p + n);
    if (wbuf_.size() >= (256u << 10)) break;
  }
  if (wbuf_.empty()) {
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) Close();
    return;
  }
  writing_ = true;
  asio::async_write(socket_, asio::buffer(wbuf_),
                    [self = shared_from_this(), this](boost::system::error_code ec, size_t) {
                      writing_ = false;
                      if (closed_) return;
                      if (ec) {
                        Close();
                      } else {
                        w_->MarkDirty(this);
                      }
                      w_->FlushDirty();
                    });
}

void H2Conn::Close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.close(ec);
  OnClose();
  w_->OnConnClosed(this);
}

// --- ClientConn -----------------------------------------------------------------

ClientConn::ClientConn(WorkerImpl* w, Socket socket, std::string src_env)
    : H2Conn(w, std::move(socket)), src_env_(std::move(src_env)) {}

ClientConn::~ClientConn() = default;

bool ClientConn::Init(const std::string& preface) {
  const Callbacks& cb = GetCallbacks();
  if (nghttp2_session_server_new2(&session_, cb.server, this, cb.option) != 0) return false;
  const RelayConfig& config = w_->config();
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, config.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, config.stream_window},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(config.connection_window));
  SetTcpNoDelay(socket_);
  client_addr_ = PeerAddress(socket_);
  if (!Feed(reinterpret_cast<const uint8_t*>(preface.data()), preface.size())) return false;
  StartRead();
  return true;
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
}

void ClientConn::Goaway() {
  if (closed_) return;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  w_->MarkDirty(this);
}

void ClientConn::OnClose() {
  std::vector<Stream*> streams;
  streams.swap(streams_);
  for (Stream* s : streams) {
    s->client_index = SIZE_MAX;
    w_->OnClientStreamClosed(s, NGHTTP2_CANCEL);
  }
}

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
  const Callbacks& cb = GetCallbacks();
  if (nghttp2_session_client_new2(&session_, cb.client, this, cb.option) != 0) {
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
  // What queued while connecting is submitted on the instance's SETTINGS.
  StartRead();
  w_->MarkDirty(this);
}

void BackendConn::OnPeerSettings() {
  if (peer_ready_) return;
  peer_ready_ = true;
  // Submit what queued while connecting (the list may shrink as we go).
  std::vector<Stream*> queued = streams_;
  for (Stream* s : queued) {
    if (s->bconn == this && s->bsid < 0) SubmitNow(s);
  }
  w_->MarkDirty(this);
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
  if (s->client != nullptr) {
    if (!s->client->src_env().empty()) nv.push_back(Nv(kSrcEnv, s->client->src_env()));
    // Where the call came from (the admin service asks off-machine callers
    // for a token); clients cannot set it, every x-* header of theirs is gone.
    if (!s->client->client_addr().empty()) nv.push_back(Nv(kClientAddr, s->client->client_addr()));
  } else if (s->ds != nullptr && !s->ds->client_addr().empty()) {
    nv.push_back(Nv(kClientAddr, s->ds->client_addr()));  // HTTP calls are always external
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
  s->bsid = sid;
  s->call_started = true;
  backend_->OnCallStart();
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

void BackendConn::OnGoaway() {
  if (goaway_) return;
  goaway_ = true;
  if (!failed_reported_) {
    failed_reported_ = true;
    backend_->OnConnectionFailed();
  }
  w_->ForgetBackend(this);  // no new streams here; existing ones finish
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
      s->rerouted = true;
      s->bconn = nullptr;
      s->backend.reset();
      w_->Route(s, s->client != nullptr ? std::string_view(s->client->src_env()) : std::string_view());
      continue;
    }
    w_->OnBackendStreamClosed(s, NGHTTP2_INTERNAL_ERROR, fail_message_.empty() ? "connection to instance lost" : fail_message_);
  }
}

// --- WorkerImpl -----------------------------------------------------------------

WorkerImpl::WorkerImpl(size_t index, const RelayConfig& config, host::Router* router)
    : io_(1), index_(index), serial_(next_worker_serial.fetch_add(1)), config_(config), router_(router) {}

WorkerImpl::~WorkerImpl() {
  {
    std::lock_guard<std::mutex> lock(Registry().mu);
    Registry().workers.erase(serial_);
  }
  // Connections hold sessions whose callbacks point here: drop them first.
  clients_.clear();
  backends_.clear();
  retired_.clear();
  graveyard_.clear();
}

void WorkerImpl::StartClient(Socket socket, std::string preface, std::string src_env) {
  auto conn = std::make_shared<ClientConn>(this, std::move(socket), std::move(src_env));
  clients_.push_back(conn);
  counters_.clients.fetch_add(1, std::memory_order_relaxed);
  if (!conn->Init(preface)) conn->Close();
  if (draining_) conn->Goaway();
  FlushDirty();
}

Stream* WorkerImpl::NewStream() {
  Stream* s;
  if (free_streams_.empty()) {
    all_streams_.push_back(std::make_unique<Stream>());
    s = all_streams_.back().get();
    s->slot = static_cast<uint32_t>(all_streams_.size() - 1);
  } else {
    s = free_streams_.back();
    free_streams_.pop_back();
  }
  counters_.streams.fetch_add(1, std::memory_order_relaxed);
  counters_.streams_total.fetch_add(1, std::memory_order_relaxed);
  return s;
}

void WorkerImpl::MaybeRelease(Stream* s) {
  if (s->attached() || s->bconn != nullptr || s->routing) return;
  AddBuffered(-static_cast<int64_t>(s->up.size() + s->down.size()));
  if (s->call_started) s->backend->OnCallEnd();
  s->Reset();
  ++s->gen;
  free_streams_.push_back(s);
  counters_.streams.fetch_sub(1, std::memory_order_relaxed);
}

void WorkerImpl::AddBuffered(int64_t n) {
  int64_t now = counters_.buffered.load(std::memory_order_relaxed) + n;
  counters_.buffered.store(now, std::memory_order_relaxed);  // single writer per worker
  if (now > counters_.peak.load(std::memory_order_relaxed)) counters_.peak.store(now, std::memory_order_relaxed);
}

void WorkerImpl::Route(Stream* s, std::string_view src_env) {
  UrlView url;
  if (s->url.empty()) {
    FailClient(s, Code::kInvalidArgument, "missing lever-url header (lever://<env>/<service>/<resource>/<method>)");
    return;
  }
  Status parsed = ParseUrl(s->url, &url);
  if (!parsed.ok()) {
    scratch_.assign("bad lever-url: ");
    scratch_.append(parsed.message());
    FailClient(s, Code::kInvalidArgument, scratch_);
    return;
  }
  if (!url.absolute()) {
    FailClient(s, Code::kInvalidArgument, "lever-url must be absolute: lever://<env>/<service>/<resource>/<method>");
    return;
  }
  if (!IsInternalEnv(url.env)) {
    scratch_.assign("cannot route to environment \"");
    scratch_.append(url.env);
    scratch_.append("\": only environments ending in .lever are routable");
    FailClient(s, Code::kInvalidArgument, scratch_);
    return;
  }
  s->routing = true;
  host::RouteRequest request{url.env, url.service, url.resource, url.method, src_env};
  router_->Route(request, RouteDone{RouteTicket{serial_, s->slot, s->gen}});
}

void WorkerImpl::Register() {
  std::lock_guard<std::mutex> lock(Registry().mu);
  Registry().workers[serial_] = weak_from_this();
}

void WorkerImpl::RunThread() {
  current_worker = this;
  if (config_.busy_poll.count() <= 0) {
    io_.run();
  } else {
    // Spin on the reactor for a while after each burst of work before
    // sleeping in epoll: trades CPU for the wake-up latency.
    while (!io_.stopped()) {
      if (io_.poll() > 0) continue;
      auto until = std::chrono::steady_clock::now() + config_.busy_poll;
      bool ran = false;
      while (!io_.stopped() && std::chrono::steady_clock::now() < until) {
        if (io_.poll() > 0) {
          ran = true;
          break;
        }
      }
      if (!ran) io_.run_one();
    }
  }
  current_worker = nullptr;
}

void WorkerImpl::Deliver(RouteTicket ticket, host::RouteResult result) {
  if (current_worker != nullptr && current_worker->serial_ == ticket.worker) {
    // Synchronous answer (inside Route, on the worker): the caller flushes.
    current_worker->OnTicket(ticket, std::move(result));
    return;
  }
  std::shared_ptr<WorkerImpl> w;
  {
    std::lock_guard<std::mutex> lock(Registry().mu);
    auto it = Registry().workers.find(ticket.worker);
    if (it != Registry().workers.end()) w = it->second.lock();
  }
  if (!w) return;  // the gateway is gone
  WorkerImpl* raw = w.get();
  asio::post(raw->io_, [raw, ticket, result = std::move(result)]() mutable {
    raw->OnTicket(ticket, std::move(result));
    raw->FlushDirty();
  });
}

void WorkerImpl::OnTicket(RouteTicket ticket, host::RouteResult result) {
  if (ticket.slot >= all_streams_.size()) return;
  Stream* s = all_streams_[ticket.slot].get();
  if (s->gen == ticket.gen && s->routing) OnRouted(s, std::move(result));
}

void WorkerImpl::OnRouted(Stream* s, host::RouteResult result) {
  s->routing = false;
  if (!s->attached()) {
    MaybeRelease(s);
    return;
  }
  if (!result.status.ok()) {
    FailClient(s, result.status.code(), result.status.message());
    return;
  }
  if (!result.backend) {
    FailClient(s, Code::kUnavailable, "no instance for this call");
    return;
  }
  s->backend = std::move(result.backend);
  GetBackendConn(s->backend)->Submit(s);
}

BackendConn* WorkerImpl::GetBackendConn(const host::BackendPtr& backend) {
  auto it = backends_.find(backend->id());
  if (it != backends_.end() && it->second->usable()) return it->second.get();
  if (it != backends_.end()) {
    retired_.push_back(std::move(it->second));
    backends_.erase(it);
  }
  auto conn = std::make_shared<BackendConn>(this, backend);
  backends_.emplace(backend->id(), conn);
  counters_.backends.fetch_add(1, std::memory_order_relaxed);
  conn->Connect();
  return conn.get();
}

void WorkerImpl::ForgetBackend(BackendConn* c) {
  auto it = backends_.find(c->backend()->id());
  if (it != backends_.end() && it->second.get() == c) {
    retired_.push_back(std::move(it->second));
    backends_.erase(it);
  }
}

void WorkerImpl::OnClientStreamClosed(Stream* s, uint32_t error_code) {
  if (s->client == nullptr) return;
  if (s->client_index != SIZE_MAX) s->client->RemoveStream(s);
  nghttp2_session* cs = s->client->session();
  // Whatever the backend did not take is dropped: give the connection window back.
  if (!s->up_consumed) {
    if (!s->up.empty()) nghttp2_session_consume_connection(cs, s->up.size());
    s->up_consumed = true;
  }
  AddBuffered(-static_cast<int64_t>(s->up.size()));
  s->up.Clear();
  s->client = nullptr;
  ReleaseBackendSide(s, error_code != NGHTTP2_NO_ERROR);
}

// The downstream (h2 client or HTTP exchange) is gone: a cancel resets the
// instance's stream (its handler sees the cancellation), a finished exchange
// just releases it; a stream still queued on a connecting BackendConn leaves
// the queue. Then the response bytes held for it are dropped.
void WorkerImpl::ReleaseBackendSide(Stream* s, bool cancel) {
  if (s->bconn != nullptr) {
    if (s->bsid > 0) {
      if (!s->down_consumed) {
        if (!s->down.empty()) nghttp2_session_consume_connection(s->bconn->session(), s->down.size());
        s->down_consumed = true;
      }
      nghttp2_submit_rst_stream(s->bconn->session(), NGHTTP2_FLAG_NONE, s->bsid,
                                cancel ? NGHTTP2_CANCEL : NGHTTP2_NO_ERROR);
      MarkDirty(s->bconn);
    } else {
      s->bconn->RemoveStream(s);
      s->bconn = nullptr;
    }
  }
  AddBuffered(-static_cast<int64_t>(s->down.size()));
  s->down.Clear();
  MaybeRelease(s);
}

void WorkerImpl::OnBackendStreamClosed(Stream* s, uint32_t error_code, std::string_view conn_lost) {
  BackendConn* c = s->bconn;
  if (c == nullptr) return;
  if (s->backend_index != SIZE_MAX) c->RemoveStream(s);
  if (!s->down_consumed) {
    if (!s->down.empty() && c->session() != nullptr) nghttp2_session_consume_connection(c->session(), s->down.size());
    s->down_consumed = true;
  }
  s->bconn = nullptr;
  s->bsid = -2;
  if (s->call_started) {
    s->call_started = false;
    s->backend->OnCallEnd();
  }
  if (s->attached()) {
    // What the instance did not take of the request is dropped.
    if (!s->up.empty()) {
      if (!s->up_consumed && s->client != nullptr) nghttp2_session_consume(s->client->session(), s->csid, s->up.size());
      AddBuffered(-static_cast<int64_t>(s->up.size()));
      s->up.Clear();
    }
    s->discard_up = true;
    if (!conn_lost.empty()) {
      FailClient(s, Code::kUnavailable, conn_lost);
    } else if (!s->down_eof) {
      if (error_code == NGHTTP2_REFUSED_STREAM || error_code == NGHTTP2_NO_ERROR) {
        FailClient(s, Code::kUnavailable, "the instance refused the call (it is going away)");
      } else if (s->resp_started && s->client == nullptr) {
        FailClient(s, Code::kUnavailable, "the instance reset the call");
      } else if (s->resp_started) {
        // RST_STREAM maps through with its code.
        nghttp2_submit_rst_stream(s->client->session(), NGHTTP2_FLAG_NONE, s->csid, error_code);
        MarkDirty(s->client);
      } else if (error_code == NGHTTP2_CANCEL) {
        FailClient(s, Code::kCancelled, "the instance cancelled the call");
      } else {
        FailClient(s, Code::kUnavailable, "the instance reset the call");
      }
    }
  }
  MaybeRelease(s);
}

void WorkerImpl::FailClient(Stream* s, Code code, std::string_view message) {
  if (s->client == nullptr) {
    if (s->ds == nullptr) return;
    AddBuffered(-static_cast<int64_t>(s->up.size()));
    s->up.Clear();
    s->discard_up = true;
    if (s->bconn != nullptr && s->bsid > 0) {
      nghttp2_submit_rst_stream(s->bconn->session(), NGHTTP2_FLAG_NONE, s->bsid, NGHTTP2_CANCEL);
      MarkDirty(s->bconn);
    }
    if (!s->down_eof) {
      s->down_eof = true;
      s->ds->OnFail(code, message);
      s->ds->Wake();
    }
    return;
  }
  nghttp2_session* cs = s->client->session();
  if (!s->up.empty()) {
    if (!s->up_consumed) nghttp2_session_consume(cs, s->csid, s->up.size());
    AddBuffered(-static_cast<int64_t>(s->up.size()));
    s->up.Clear();
  }
  s->discard_up = true;
  if (s->bconn != nullptr && s->bsid > 0) {
    nghttp2_submit_rst_stream(s->bconn->session(), NGHTTP2_FLAG_NONE, s->bsid, NGHTTP2_CANCEL);
    MarkDirty(s->bconn);
  }
  char code_text[16];
  auto [end, ec] = std::to_chars(code_text, code_text + sizeof code_text, static_cast<int>(code));
  (void)ec;
  std::string_view code_view(code_text, static_cast<size_t>(end - code_text));
  if (!s->resp_started) {
    enc_scratch_.clear();
    PercentEncodeGrpcMessage(message, &enc_scratch_);
    nghttp2_nv nv[] = {
        Nv(":status", "200"),
        Nv("content-type", "application/grpc"),
        Nv("grpc-status", code_view),
        Nv("grpc-message", enc_scratch_),
    };
    s->resp_started = true;
    s->down_eof = true;
    nghttp2_submit_response(cs, s->csid, nv, std::size(nv), nullptr);
  } else if (!s->down_eof) {
    s->trailers.Clear();
    s->trailers.Add("grpc-status", code_view);
    enc_scratch_.clear();
    PercentEncodeGrpcMessage(message, &enc_scratch_);
    s->trailers.Add("grpc-message", enc_scratch_);
    s->down_eof = true;
    s->down_deferred = false;
    nghttp2_session_resume_data(cs, s->csid);
  }
  MarkDirty(s->client);
}

void WorkerImpl::MarkDirty(H2Conn* c) {
  if (c->dirty || c->closed()) return;
  c->dirty = true;
  dirty_.push_back(c);
}

void WorkerImpl::FlushDirty() {
  if (flushing_) return;
  flushing_ = true;
  while (!dirty_.empty() || !ds_dirty_.empty()) {
    if (!ds_dirty_.empty()) {
      ds_list_.swap(ds_dirty_);
      for (size_t i = 0; i < ds_list_.size(); ++i) {
        Downstream* d = ds_list_[i];
        if (d == nullptr) continue;  // closed meanwhile
        d->scheduled = false;
        d->Process();
      }
      ds_list_.clear();
      continue;
    }
    flush_list_.swap(dirty_);
    for (H2Conn* c : flush_list_) {
      c->dirty = false;
      c->Flush();
    }
    flush_list_.clear();
  }
  flushing_ = false;
  graveyard_.clear();
}

void WorkerImpl::OnConnClosed(H2Conn* c) {
  // Keep the object alive until the end of this event (FlushDirty).
  if (auto* client = dynamic_cast<ClientConn*>(c)) {
    for (auto it = clients_.begin(); it != clients_.end(); ++it) {
      if (it->get() == client) {
        graveyard_.push_back(*it);
        *it = std::move(clients_.back());
        clients_.pop_back();
        counters_.clients.fetch_sub(1, std::memory_order_relaxed);
        break;
      }
    }
  } else if (auto* backend = dynamic_cast<BackendConn*>(c)) {
    ForgetBackend(backend);
    for (auto it = retired_.begin(); it != retired_.end(); ++it) {
      if (it->get() == backend) {
        graveyard_.push_back(*it);
        *it = std::move(retired_.back());
        retired_.pop_back();
        counters_.backends.fetch_sub(1, std::memory_order_relaxed);
        break;
      }
    }
  }
}

void WorkerImpl::Drain() {
  draining_ = true;
  for (auto& c : clients_) c->Goaway();
  std::vector<Downstream*> http = http_;
  for (Downstream* d : http) d->Drain();
  FlushDirty();
}

void WorkerImpl::CloseAll() {
  std::vector<Downstream*> http = http_;
  for (Downstream* d : http) d->Close();
  std::vector<std::shared_ptr<ClientConn>> clients = clients_;
  for (auto& c : clients) c->Close();
  std::vector<std::shared_ptr<BackendConn>> backends;
  for (auto& [id, c] : backends_) backends.push_back(c);
  for (auto& c : retired_) backends.push_back(c);
  for (auto& c : backends) c->Close();
  FlushDirty();
}

// --- downstreams ----------------------------------------------------------------

void WorkerImpl::Schedule(Downstream* d) {
  if (d->scheduled) return;
  d->scheduled = true;
  ds_dirty_.push_back(d);
}

void WorkerImpl::PushUp(Stream* s, std::string_view data, bool eof) {
  if (s->discard_up || s->up_eof) return;
  if (!data.empty()) {
    s->up.Append(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    AddBuffered(static_cast<int64_t>(data.size()));
  }
  if (eof) s->up_eof = true;
  if (s->bconn != nullptr && s->bsid > 0 && s->up_deferred) {
    s->up_deferred = false;
    nghttp2_session_resume_data(s->bconn->session(), s->bsid);
    MarkDirty(s->bconn);
  }
}

size_t WorkerImpl::TakeDown(Stream* s, std::string* out, size_t max) {
  size_t n = std::min(max, s->down.size());
  if (n == 0) return 0;
  size_t old = out->size();
  out->resize(old + n);
  s->down.Read(reinterpret_cast<uint8_t*>(out->data() + old), n);
  AddBuffered(-static_cast<int64_t>(n));
  if (!s->down_consumed && s->bconn != nullptr && s->bsid > 0) {
    nghttp2_session_consume(s->bconn->session(), s->bsid, n);
    MarkDirty(s->bconn);
  }
  return n;
}

void WorkerImpl::DetachDownstream(Stream* s, bool cancel) {
  if (s->ds == nullptr) return;
  s->ds = nullptr;
  AddBuffered(-static_cast<int64_t>(s->up.size()));
  s->up.Clear();
  s->up_consumed = true;
  ReleaseBackendSide(s, cancel);
}

void WorkerImpl::AddHttp(Downstream* d) {
  http_.push_back(d);
  counters_.http_connections.fetch_add(1, std::memory_order_relaxed);
}

void WorkerImpl::RemoveHttp(Downstream* d) {
  for (auto it = http_.begin(); it != http_.end(); ++it) {
    if (*it == d) {
      *it = http_.back();
      http_.pop_back();
      counters_.http_connections.fetch_sub(1, std::memory_order_relaxed);
      break;
    }
  }
  // A closed connection must not be processed after it is gone.
  for (auto& p : ds_dirty_) {
    if (p == d) p = nullptr;
  }
  for (auto& p : ds_list_) {
    if (p == d) p = nullptr;
  }
}

}  // namespace lever::gateway
