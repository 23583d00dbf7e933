// The HTTP/1.1 API on Boost.Beast. See gateway/http_api.md.
//
// One HttpConn per connection, on the worker that owns the socket. Each POST
// becomes a gRPC call on a relay Stream (HEADERS + gRPC frames in `up`), routed
// and submitted to the worker's instance connection exactly as an h2 client
// stream is; the HttpConn is the Stream's Downstream: it turns the instance's
// gRPC frames into the HTTP response as they arrive.
#include "http_api.h"

#include <algorithm>
#include <limits>
#include <optional>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "http_parse.h"
#include "lever/json.h"
#include "lever/url.h"
#include "lever/wire.h"
#include "status_page.h"
#include "websocket.h"
#include "worker.h"

namespace lever::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;

// A unary JSON reply (or any message held whole: a stream's, a reply not
// sent as it arrives) from an instance.
constexpr size_t kMaxReplyMessage = size_t{64} << 20;
constexpr size_t kUpHighWater = 256u << 10;            // request bytes queued for the instance
constexpr size_t kOutHighWater = 64u << 10;            // response bytes queued for the client
constexpr size_t kKeepBytes = 64u << 10;               // buffer storage a connection keeps between requests

// Large buffers (a JSON reply held whole, its text) that the connections
// of one worker thread share: taken for a reply, given back after it, so a
// steady stream of large replies reuses warm memory instead of faulting in
// fresh pages each time, and what stays pinned is bounded per worker
// (kPoolBytes), not per keep-alive connection.
class BufferPool {
 public:
  static constexpr size_t kPoolBytes = 32u << 20;
  static constexpr size_t kPoolBuffers = 8;
  // An empty buffer with room for `n` bytes (the smallest pooled one that
  // fits, else a new one).
  std::string Take(size_t n) {
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i].capacity() >= n && (best == free_.size() || free_[i].capacity() < free_[best].capacity())) best = i;
    }
    std::string s;
    if (best != free_.size()) {
      bytes_ -= free_[best].capacity();
      s = std::move(free_[best]);
      free_[best] = std::move(free_.back());
      free_.pop_back();
    }
    s.reserve(n);
    return s;
  }
  // Keeps `s`'s storage if there is room, else frees it.
  void Give(std::string&& s) {
    size_t cap = s.capacity();
    if (cap <= kKeepBytes) return;  // small: not worth pooling
    if (free_.size() < kPoolBuffers && bytes_ + cap <= kPoolBytes) {
      s.clear();
      bytes_ += cap;
      free_.push_back(std::move(s));
    }
    std::string().swap(s);
  }

 private:
  std::vector<std::string> free_;
  size_t bytes_ = 0;
};

BufferPool& Pool() {
  thread_local BufferPool pool;  // one per worker thread
  return pool;
}

// Empties `s`, giving back large storage (a keep-alive connection must not
// pin its largest reply).
void Trim(std::string& s) {
  if (s.capacity() > kKeepBytes) {
    Pool().Give(std::move(s));
    std::string().swap(s);
  } else {
    s.clear();
  }
}
constexpr std::string_view kCorsHeaders =
    "Access-Control-Allow-Headers: Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token, "
    "Authorization\r\n";

std::string_view SV(beast::string_view v) { return {v.data(), v.size()}; }

class HttpConn final : public Downstream, public std::enable_shared_from_this<HttpConn> {
 public:
  HttpConn(WorkerImpl* w, Socket socket, const HttpApiOptions& o)
      : w_(w), o_(o), socket_(std::move(socket)), timer_(w->io_context()) {}

  void Start(const std::string& already_read) {
    SetTcpNoDelay(socket_);
    addr_ = PeerAddress(socket_);
    // Alive until Close(), whatever is pending: the relay and the worker hold
    // raw pointers to it (Stream::ds, the worker's HTTP list).
    self_ = shared_from_this();
    w_->AddHttp(this);
    auto b = buf_.prepare(already_read.size());
    std::memcpy(b.data(), already_read.data(), already_read.size());
    buf_.commit(already_read.size());
    ReadHeader();
  }

  // --- Downstream ---
  void OnResponseHeaders(const HeaderBlock& h, bool end) override {
    std::string_view v;
    if (h.Find(":status", &v) && v != "200") {
      fail_ = true;
      fail_code_ = Code::kUnavailable;
      fail_msg_ = "the instance answered HTTP status " + std::string(v);
    }
    if (end && h.Find("grpc-status", &v)) {
      grpc_status_ = v;
      if (h.Find("grpc-message", &v)) grpc_message_ = http::DecodeGrpcMessage(v);
    }
  }
  void OnFail(Code code, std::string_view message) override {
    if (fail_) return;
    fail_ = true;
    fail_code_ = code;
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
    if (fail_) return FailCall(http::HttpStatusFor(fail_code_), fail_msg_, false);
    if (streaming_ && !body_done_ && !reading_) ReadBody();
    if (s_ == nullptr || closed_) return;
    while (out_.size() < kOutHighWater && s_ != nullptr) {
      if (raw_left_ > 0) {  // a unary bytes reply: straight to the client
        size_t n = w_->TakeDown(s_, &out_, std::min<uint64_t>(raw_left_, 64u << 10));
        if (n == 0) break;
        raw_left_ -= n;
        continue;
      }
      if (w_->TakeDown(s_, &frames_, 64u << 10) == 0) break;
      if (!(streaming_ ? ParseFrames() : ParseReply())) return;
    }
    if (s_ != nullptr && s_->down_eof && s_->down.empty() && !closed_) Finish();
    Flush();
  }
  void Drain() override {
    draining_ = true;
    keep_alive_ = false;
    if (waiting_header_ && buf_.size() == 0) Close();
  }
  void Close() override {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
    timer_.cancel();
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
  const std::string& client_addr() const override { return addr_; }

 private:
  // --- request ---
  void ResetRequest() {
    parser_.emplace();
    origin_.clear();
    admin_token_.clear();
    http10_ = false;
    parser_->header_limit(static_cast<std::uint32_t>(std::min<size_t>(o_.max_header_bytes, UINT32_MAX)));
    parser_->body_limit((std::numeric_limits<std::uint64_t>::max)());
    Trim(body_);
    Trim(frames_);
    Trim(text_);
    Trim(out_);
    Trim(wbuf_);
    reply_len_ = 0;
    reply_known_ = raw_reply_ = false;
    raw_left_ = 0;
    handshake_ = first_line_done_ = body_done_ = resp_done_ = head_sent_ = false;
    app_error_ = false;
    app_error_value_ = Value();
    fail_ = false;
    grpc_status_.clear();
    grpc_message_.clear();
    out_mode_ = 0;
    abort_after_write_ = false;
    call_deadline_ = Clock::time_point::max();
  }

  void ReadHeader() {
    ResetRequest();
    if (draining_ && buf_.size() == 0) return Close();
    waiting_header_ = true;
    SetDeadline(Clock::now() + o_.idle_timeout);
    reading_ = true;
    bhttp::async_read_header(socket_, buf_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->reading_ = false;
      self->waiting_header_ = false;
      if (!self->closed_) self->OnHeader(ec);
      self->w_->FlushDirty();
    });
  }

  void OnHeader(beast::error_code ec) {
    if (ec == bhttp::error::header_limit) return Reply(431, "request headers exceed the limit");
    if (ec == bhttp::error::end_of_stream || ec == asio::error::eof || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset || (buf_.size() == 0 && ec == bhttp::error::partial_message)) {
      return Close();
    }
    if (ec) {
      keep_alive_ = false;
      origin_.clear();
      return Reply(400, "malformed HTTP request");
    }
    ++requests_;
    auto& req = parser_->get();
    http10_ = req.version() < 11;
    keep_alive_ = req.keep_alive() && !draining_ &&
                  (o_.max_requests_per_connection == 0 || requests_ < o_.max_requests_per_connection);
    origin_.assign(SV(req[bhttp::field::origin]));
    std::string_view target = SV(req.target());
    if (target.size() > o_.max_url_bytes) return Reply(414, "the URL exceeds the limit");
    std::string_view path = target.substr(0, target.find('?'));
    if (ws::WantsUpgrade(req)) return UpgradeToWebSocket();  // websocket.cc
    if ((req.method() == bhttp::verb::get || req.method() == bhttp::verb::head) && pages::IsPagePath(path)) {
      return ServePage(target, path);  // status_page.cc
    }
    if (req.method() == bhttp::verb::options) {
      body_done_ = parser_->is_done();
      std::string ignored;
      if (http::ParseTarget(target, SV(req[bhttp::field::host]), &target_, &ignored) == 0 &&
          http::IsAdminEnv(target_.env)) {
        origin_.clear();  // no CORS for admin: a preflight for it fails
        return Reply(403, "admin.lever does not answer CORS preflights: web pages cannot call it");
      }
      return Respond(200, "", "", "Access-Control-Allow-Methods: POST, OPTIONS\r\n");
    }
    if ((req.method() == bhttp::verb::get || req.method() == bhttp::verb::head) && path == "/metrics") {
      body_done_ = parser_->is_done();
      return Respond(200, "text/plain; version=0.0.4; charset=utf-8", Metrics(), "");
    }
    if (req.method() != bhttp::verb::post) {
      return Reply(405, "method not allowed: use POST (or OPTIONS)", "Allow: POST, OPTIONS\r\n");
    }
    std::string error;
    if (int status = http::ParseTarget(target, SV(req[bhttp::field::host]), &target_, &error); status != 0) {
      return Reply(status, error);
    }
    if (http::IsAdminEnv(target_.env)) {
      target_.env = "admin.lever";
      origin_.clear();  // an admin reply never carries CORS headers
      if (int status = pages::CheckAdminRequest(SV(req[bhttp::field::origin]), SV(req[bhttp::field::authorization]),
                                                o_.admin_token, &error);
          status != 0) {
        return Reply(status, error);
      }
      admin_token_ = o_.admin_token;  // checked: the admin service checks it again
    }
    streaming_ = target_.streaming;
    json_in_ = http::IsJsonBody(SV(req[bhttp::field::content_type]), streaming_);
    timeout_ms_ = 0;
    if (auto t = req.find("Lever-Timeout"); t != req.end()) {
      if (!http::ParseTimeout(SV(t->value()), &timeout_ms_)) {
        return Reply(400, "Lever-Timeout must be a duration such as 250ms, 2s or 1m");
      }
    }
    if (!streaming_ && parser_->content_length() && *parser_->content_length() > o_.max_body_bytes) {
      return Reply(413, "Exceeded maximum request size");
    }
    if (beast::iequals(req[bhttp::field::expect], "100-continue") && !parser_->is_done()) {
      out_.append(http10_ ? "HTTP/1.0 100 Continue\r\n\r\n" : "HTTP/1.1 100 Continue\r\n\r\n");
      Flush();
    }
    SetDeadline(Clock::now() + o_.idle_timeout);
    ReadBody();
  }

  // A checked upgrade hands the socket to websocket.cc; this connection ends.
  void UpgradeToWebSocket() {
    keep_alive_ = false;
    ws::Upgrade up;
    std::string error, extra;
    if (int status = ws::CheckUpgrade(parser_->get(), addr_, buf_.size(), o_, &up, &error, &extra); status != 0) {
      if (http::IsAdminEnv(up.target.env)) origin_.clear();  // an admin reply never carries CORS headers
      return Reply(status, error, extra);
    }
    WorkerImpl* w = w_;
    const HttpApiOptions& o = o_;
    Socket socket = std::move(socket_);
    ws::RequestHead head = std::move(parser_->get().base());
    Close();  // `this` may be gone
    ws::StartWebSocket(w, std::move(socket), std::move(head), std::move(up), o.websocket);
  }

  // The status page; GET /_lever/status is the admin service's Status("")
  // as a unary call.
  void ServePage(std::string_view target, std::string_view path) {
    auto& req = parser_->get();
    origin_.clear();  // same-origin only: no CORS headers
    size_t q = target.find('?');
    pages::Request pr{path, q == std::string_view::npos ? std::string_view() : target.substr(q + 1),
                      SV(req[bhttp::field::accept]),
                      {addr_, SV(req[bhttp::field::host]), SV(req[bhttp::field::authorization]),
                       SV(req[bhttp::field::cookie])}};
    pages::Answer a = pages::Serve(pr, o_.admin_token);
    if (a.kind == pages::Answer::Kind::kRespond) return Respond(a.status, a.content_type, a.body, a.headers);
    target_ = http::Target{"admin.lever", "admin", "", "Status", false};  // cli/common/admin_api.h
    streaming_ = false;
    json_in_ = true;
    timeout_ms_ = 0;
    admin_token_ = std::move(a.admin_token);
    body_ = "[\"\"]";
    OnBody({}, 0, true);
  }

  void ReadBody() {
    if (reading_ || closed_ || body_done_) return;
    if (parser_->is_done()) return OnBody({}, 0, true);
    if (streaming_ && s_ != nullptr && s_->up.size() >= kUpHighWater) return;  // resumed by Process
    auto& body = parser_->get().body();
    body.data = rbuf_.data();
    body.size = rbuf_.size();
    reading_ = true;
    bhttp::async_read_some(socket_, buf_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->reading_ = false;
      if (!self->closed_) {
        if (ec == bhttp::error::need_buffer) ec = {};
        size_t got = self->rbuf_.size() - self->parser_->get().body().size;
        if (ec) {
          self->OnBodyError(ec);
        } else {
          self->OnBody(std::string_view(self->rbuf_.data(), got), got, self->parser_->is_done());
        }
      }
      self->w_->FlushDirty();
    });
  }

  void OnBodyError(beast::error_code ec) {
    if (ec == asio::error::eof || ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
        ec == bhttp::error::partial_message) {
      return Close();  // the client went away mid-body: cancel the call
    }
    keep_alive_ = false;
    if (s_ == nullptr && !head_sent_) return Reply(400, "malformed HTTP request body");
    Close();
  }

  void OnBody(std::string_view data, size_t, bool done) {
    if (streaming_) {
      SetDeadline(Clock::now() + o_.idle_timeout);
      OnStreamBytes(data, done);
      if (!done && !closed_) ReadBody();
      return;
    }
    if (body_.size() + data.size() > o_.max_body_bytes) return Reply(413, "Exceeded maximum request size");
    body_.append(data);
    if (!done) return ReadBody();
    body_done_ = true;
    Array args;
    if (json_in_) {
      std::string error;
      if (http::ParseArgs(body_, &args, &error) != 0) return Reply(400, error);
    } else {
      args.push_back(Value::FromBytes(std::move(body_)));
    }
    std::string msg, frame;
    if (Status s = wire::EncodeRpc(args, wire::Codec::kProtoJson, &msg); !s.ok()) return Reply(400, s.message());
    http::AppendGrpcFrame(msg, &frame);
    body_.clear();
    SetDeadline(Clock::time_point::max());  // the call may take its time (Lever-Timeout bounds it)
    OpenCall(wire::kUnaryMethod, frame, true);
    WatchPeer();
  }

  // While a unary call runs nothing else is read: watch the socket so that a
  // client that goes away cancels its call (bytes that arrive, a pipelined
  // request, are kept in buf_ for the next head).
  void WatchPeer() {
    if (reading_ || closed_ || s_ == nullptr || buf_.size() >= buf_.max_size()) return;
    reading_ = watching_ = true;
    size_t room = std::min<size_t>(4096, buf_.max_size() - buf_.size());
    socket_.async_read_some(buf_.prepare(room), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->reading_ = self->watching_ = false;
      if (self->closed_) return;
      if (ec == asio::error::operation_aborted) {
        self->AfterWrite();  // cancelled by AfterWrite: go on with the next request
      } else if (ec) {
        self->Close();  // the client went away: cancel the call
      } else {
        self->buf_.commit(n);
        if (self->s_ != nullptr) {
          self->WatchPeer();
        } else {
          self->AfterWrite();
        }
      }
      self->w_->FlushDirty();
    });
  }

  // Streaming request body: the first line is the argument array; then JSON
  // lines or raw chunks, each one StreamMessage.
  void OnStreamBytes(std::string_view data, bool done) {
    std::string frames;
    if (!first_line_done_) {
      size_t nl = data.find('\n');
      std::string_view part = data.substr(0, nl);
      if (body_.size() + part.size() > o_.max_line_bytes) return ClientStreamError(413, "the first line exceeds the line limit");
      body_.append(part);
      if (nl == std::string_view::npos && !done) return;
      data = nl == std::string_view::npos ? std::string_view() : data.substr(nl + 1);
      first_line_done_ = true;
      std::string_view line(body_);
      if (line.ends_with('\r')) line.remove_suffix(1);
      Array args;
      std::string error, msg;
      if (http::ParseArgs(line, &args, &error) != 0) return ClientStreamError(400, "first line: " + error);
      if (Status s = wire::EncodeStreamRpc(args, wire::Codec::kProtoJson, &msg); !s.ok()) {
        return ClientStreamError(400, s.message());
      }
      http::AppendGrpcFrame(msg, &frames);
      body_.clear();
      OpenCall(wire::kStreamMethod, frames, false);
      frames.clear();
      if (closed_) return;
    }
    if (s_ == nullptr) return;  // answered already; the rest is dropped
    std::string msg;
    if (json_in_) {
      while (!data.empty()) {
        size_t nl = data.find('\n');
        std::string_view part = data.substr(0, nl);
        if (body_.size() + part.size() > o_.max_line_bytes) return ClientStreamError(413, "a line exceeds the line limit");
        body_.append(part);
        if (nl == std::string_view::npos) break;
        data.remove_prefix(nl + 1);
        if (!AppendLine(&frames)) return;
      }
      if (done && !body_.empty() && !AppendLine(&frames)) return;
    } else if (!data.empty()) {
      msg.clear();
      (void)wire::EncodeStreamValue(Value::FromBytes(std::string(data)), false, wire::Codec::kProtoJson, &msg);
      http::AppendGrpcFrame(msg, &frames);
    }
    if (done) body_done_ = true;
    w_->PushUp(s_, frames, done);
  }

  // One complete JSON line in body_ -> a frame; false when the exchange ended.
  bool AppendLine(std::string* frames) {
    std::string_view line(body_);
    if (line.ends_with('\r')) line.remove_suffix(1);
    bool blank = line.find_first_not_of(" \t") == std::string_view::npos;
    if (!blank) {
      DecodeLimits limits;
      limits.max_depth = 64;
      Value v;
      std::string msg;
      Status s = ParseJson(line, &v, limits);
      if (s.ok()) s = wire::EncodeStreamValue(v, false, wire::Codec::kProtoJson, &msg);
      if (!s.ok()) {
        ClientStreamError(400, "invalid JSON line: " + s.message());
        return false;
      }
      http::AppendGrpcFrame(msg, frames);
    }
    body_.clear();
    return true;
  }

  void ClientStreamError(int status, const std::string& message) {
    keep_alive_ = false;
    if (s_ != nullptr) {
      Stream* s = s_;
      s_ = nullptr;
      w_->DetachDownstream(s, true);
    }
    if (head_sent_) return AbortResponse();
    Reply(status, message);
  }

  void OpenCall(const char* grpc_path, std::string_view initial, bool eof) {
    if (timeout_ms_ > 0) {
      call_deadline_ = Clock::now() + std::chrono::milliseconds(timeout_ms_);
      Arm();
    }
    s_ = OpenHttpCall(w_, this, target_, grpc_path, admin_token_, initial, eof, timeout_ms_);
  }

  // --- response ---
  bool ParseFrames() {
    int64_t used = http::ForEachGrpcFrame(frames_, kMaxReplyMessage,
                                          [this](std::string_view m) { return OnMessage(m); });
    if (closed_ || s_ == nullptr) return false;
    if (used < 0) {
      FailCall(502, "the instance sent a malformed reply", true);
      return false;
    }
    frames_.erase(0, static_cast<size_t>(used));
    return true;
  }

  // A unary reply. A bytes reply (byte_result, byte_error) goes to the client
  // as it arrives: the head (with the payload's Content-Length) once the
  // message's first bytes are in, then each piece straight from the relay's
  // buffer to the output (Process). Anything else is held whole, in one
  // buffer sized once from the gRPC prefix (at most kMaxReplyMessage), and
  // decoded in place by Finish.
  bool ParseReply() {
    if (raw_reply_) {  // bytes after the reply: a second message
      FailCall(502, "the instance sent a malformed reply", true);
      return false;
    }
    if (!reply_known_) {
      if (frames_.size() < 5) return true;
      auto* p = reinterpret_cast<const uint8_t*>(frames_.data());
      reply_len_ = (size_t{p[1]} << 24) | (size_t{p[2]} << 16) | (size_t{p[3]} << 8) | size_t{p[4]};
      if (p[0] != 0) {
        FailCall(502, "the instance sent a malformed reply", true);
        return false;
      }
      reply_known_ = true;
    }
    bool is_error = false;
    size_t header = 0;
    int raw = http::RawReplyHead(std::string_view(frames_).substr(5), reply_len_, &is_error, &header);
    if (raw < 0) return true;
    if (raw > 0) {
      raw_reply_ = true;
      uint64_t payload = reply_len_ - header;
      WriteHead(is_error ? 500 : 200, "application/octet-stream", static_cast<int64_t>(payload));
      std::string_view rest = std::string_view(frames_).substr(5 + header);
      size_t now = std::min<size_t>(rest.size(), payload);
      out_.append(rest.substr(0, now));
      raw_left_ = payload - now;
      frames_.erase(0, 5 + header + now);
      if (!frames_.empty()) return ParseReply();
      return true;
    }
    if (reply_len_ > kMaxReplyMessage) {
      FailCall(502, "the instance's reply exceeds " + std::to_string(kMaxReplyMessage >> 20) + " MiB", true);
      return false;
    }
    if (frames_.size() > 5 + reply_len_) {
      FailCall(502, "the instance sent a malformed reply", true);
      return false;
    }
    if (frames_.capacity() < 5 + reply_len_) {  // sized once
      std::string whole = Pool().Take(5 + reply_len_);
      whole.assign(frames_);
      Trim(frames_);
      frames_ = std::move(whole);
    }
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
      app_error_value_ = std::move(v);
      return true;
    }
    if (kind != wire::StreamKind::kMessage) return false;
    if (out_mode_ == 0) {
      out_mode_ = v.is_bytes() ? 2 : 1;
      WriteHead(200, out_mode_ == 2 ? "application/octet-stream" : "application/x-ndjson", -1);
    }
    text_.clear();
    if (out_mode_ == 2 && v.is_bytes()) {
      text_.assign(v.as_bytes().view());
    } else {
      JsonWriteOptions jo;
      jo.nonfinite_as_null = true;
      jo.bytes_as_base64 = true;
      if (!WriteJson(v, &text_, jo).ok()) return false;
      text_.push_back('\n');
    }
    WriteChunk(text_);
    return true;
  }

  // The instance ended the call (all its frames are parsed).
  void Finish() {
    bool partial = streaming_ ? !frames_.empty()
                              : raw_left_ > 0 || (!frames_.empty() && (!reply_known_ || frames_.size() < 5 + reply_len_));
    if (partial) return FailCall(502, "the instance's reply ended inside a message", true);
    if (grpc_status_.empty()) {
      std::string_view v;
      if (s_->trailers.Find("grpc-status", &v)) grpc_status_.assign(v);
      if (s_->trailers.Find("grpc-message", &v)) grpc_message_ = http::DecodeGrpcMessage(v);
    }
    int code = -1;
    if (!grpc_status_.empty()) code = std::atoi(grpc_status_.c_str());
    if (code != 0) {
      std::string message = grpc_message_.empty() ? "the call failed (grpc-status " + grpc_status_ + ")" : grpc_message_;
      if (code < 0) message = "the instance ended the call without a status";
      return FailCall(code < 0 ? 502 : http::HttpStatusFor(static_cast<Code>(code)), message, false);
    }
    Stream* s = s_;
    s_ = nullptr;
    w_->DetachDownstream(s, false);
    if (!streaming_) {
      if (raw_reply_) {  // all of it is in out_ or written
        resp_done_ = true;
        return Flush();
      }
      Value v;
      bool is_error = false;
      if (!reply_known_ || !wire::DecodeReply(std::string_view(frames_).substr(5, reply_len_), wire::Codec::kProtoJson,
                                              &v, &is_error)
                                .ok()) {
        return Reply(502, "the instance sent a malformed reply");
      }
      Trim(frames_);  // before the JSON text exists: one copy of the reply at a time beside the value
      return RespondValue(is_error ? 500 : 200, std::move(v), reply_len_);
    }
    if (!body_done_) keep_alive_ = false;  // the server ended first: the rest of the body is not read
    if (app_error_) {
      if (!head_sent_) return RespondValue(500, std::move(app_error_value_));
      text_.clear();
      JsonWriteOptions jo;
      jo.nonfinite_as_null = true;
      jo.bytes_as_base64 = true;
      Value wrapped(Map{{"error", std::move(app_error_value_)}});
      (void)WriteJson(wrapped, &text_, jo);
      text_.push_back('\n');
      WriteChunk(text_);
    }
    if (!head_sent_) WriteHead(200, "application/x-ndjson", -1);
    if (!http10_) out_.append("0\r\n\r\n");
    resp_done_ = true;
    Flush();
  }

  // The call failed: an HTTP error if nothing was sent yet, else the
  // response is cut off (no final chunk) and the connection closed.
  void FailCall(int status, const std::string& message, bool cancel) {
    if (s_ != nullptr) {
      Stream* s = s_;
      s_ = nullptr;
      w_->DetachDownstream(s, cancel);
    }
    if (streaming_ && !body_done_) keep_alive_ = false;
    if (head_sent_) return AbortResponse();
    Reply(status, message);
  }

  void AbortResponse() {
    keep_alive_ = false;
    abort_after_write_ = true;
    resp_done_ = true;
    Flush();
  }

  // The body is written from where it was made (no copy into out_).
  // `size_hint`: about the JSON text's size (the proto-JSON message's), so
  // that the text is allocated once.
  void RespondValue(int status, Value v, size_t size_hint = 0) {
    if (v.is_bytes()) return RespondOwned(status, "application/octet-stream", std::move(v.as_bytes()).data());
    std::string text = Pool().Take(size_hint);  // the reply's own buffer fits: just freed by Finish
    JsonWriteOptions jo;
    jo.nonfinite_as_null = true;
    jo.bytes_as_base64 = true;
    Status s = WriteJson(v, &text, jo);
    v = Value();
    if (!s.ok()) return Reply(502, "the reply has no JSON form");
    RespondOwned(status, "application/json", std::move(text));
  }

  // An error: a JSON string saying what went wrong.
  void Reply(int status, const std::string& message, std::string_view extra = {}) {
    if (s_ != nullptr) {
      Stream* s = s_;
      s_ = nullptr;
      w_->DetachDownstream(s, true);
    }
    Respond(status, "application/json", http::JsonString(message), extra);
  }

  void Respond(int status, std::string_view content_type, std::string_view body, std::string_view extra) {
    if (!parser_ || !parser_->is_done()) keep_alive_ = false;  // the body was not read
    body_done_ = true;
    if (head_sent_) return AbortResponse();
    WriteHead(status, content_type, static_cast<int64_t>(body.size()), extra);
    bool head = parser_ && parser_->get().method() == bhttp::verb::head;
    if (!head) out_.append(body);
    resp_done_ = true;
    Flush();
  }

  // Respond with a body that Flush writes after out_ (scatter-gather).
  void RespondOwned(int status, std::string_view content_type, std::string body) {
    if (!parser_ || !parser_->is_done()) keep_alive_ = false;
    body_done_ = true;
    if (head_sent_) return AbortResponse();
    WriteHead(status, content_type, static_cast<int64_t>(body.size()));
    tail_ = std::move(body);
    resp_done_ = true;
    Flush();
  }

  // `length` -1: chunked (close-delimited for HTTP/1.0).
  void WriteHead(int status, std::string_view content_type, int64_t length, std::string_view extra = {}) {
    head_sent_ = true;
    if (length < 0 && http10_) keep_alive_ = false;
    out_.append("HTTP/1.1 ");
    out_.append(std::to_string(status));
    out_.push_back(' ');
    out_.append(http::Reason(status));
    out_.append("\r\n");
    if (!content_type.empty()) {
      out_.append("Content-Type: ");
      out_.append(content_type);
      out_.append("\r\n");
    }
    if (!origin_.empty()) {
      out_.append("Access-Control-Allow-Origin: ");
      out_.append(origin_);
      out_.append("\r\nVary: Origin\r\n");
      out_.append(kCorsHeaders);
    }
    out_.append(extra);
    if (length >= 0) {
      out_.append("Content-Length: ");
      out_.append(std::to_string(length));
      out_.append("\r\n");
    } else if (!http10_) {
      out_.append("Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n");
    }
    if (!keep_alive_) {
      out_.append("Connection: close\r\n");
    } else if (http10_) {
      out_.append("Connection: keep-alive\r\n");
    }
    out_.append("\r\n");
    int cls = status / 100;
    if (cls >= 1 && cls <= 5) w_->counters().http_responses[cls].fetch_add(1, std::memory_order_relaxed);
  }

  void WriteChunk(std::string_view data) {
    if (data.empty()) return;
    if (!http10_) {
      char hex[20];
      int n = std::snprintf(hex, sizeof hex, "%zx\r\n", data.size());
      out_.append(hex, static_cast<size_t>(n));
    }
    out_.append(data);
    if (!http10_) out_.append("\r\n");
  }

  void Flush() {
    if (writing_ || closed_) return;
    if (out_.empty() && tail_.empty()) return AfterWrite();
    wbuf_.swap(out_);
    out_.clear();
    wtail_.swap(tail_);
    writing_ = true;
    if (s_ != nullptr || resp_done_) SetDeadline(Clock::now() + o_.idle_timeout);
    std::array<asio::const_buffer, 2> bufs{asio::buffer(wbuf_), asio::buffer(wtail_)};
    asio::async_write(socket_, bufs, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      Trim(self->wtail_);
      if (self->closed_) return;
      if (ec) {
        self->Close();
      } else if (!self->out_.empty() || !self->tail_.empty()) {
        self->Flush();
      } else {
        // A unary call waits for its instance without an idle deadline
        // (Lever-Timeout bounds it), also between pieces of its reply.
        if (self->s_ != nullptr && !self->streaming_) self->SetDeadline(Clock::time_point::max());
        self->AfterWrite();
        if (self->s_ != nullptr) self->Wake();  // room for more of the response
      }
      self->w_->FlushDirty();
    });
  }

  // Everything queued is written.
  void AfterWrite() {
    if (!resp_done_ || closed_ || writing_) return;
    if (watching_) {
      boost::system::error_code ignored;
      socket_.cancel(ignored);  // the watch read ends with operation_aborted and comes back here
      return;
    }
    if (abort_after_write_) return Close();
    if (s_ != nullptr) return;
    if (keep_alive_ && body_done_) {
      if (reading_) return;
      return ReadHeader();
    }
    // Close gracefully: half-close, then read (and drop) what the client
    // still sends for a short while, so the close is not a reset that eats
    // the answer.
    resp_done_ = false;
    closing_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_send, ignored);
    SetDeadline(Clock::now() + std::min<std::chrono::milliseconds>(o_.idle_timeout, std::chrono::seconds(2)));
    DrainInput();
  }

  void DrainInput() {
    if (reading_) return;
    reading_ = true;
    socket_.async_read_some(asio::buffer(rbuf_), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->reading_ = false;
      if (self->closed_) return;
      self->drained_ += n;
      if (ec || self->drained_ > (64u << 10)) return self->Close();
      self->DrainInput();
    });
  }

  // --- timers ---
  void SetDeadline(Clock::time_point t) {
    deadline_ = t;
    Arm();
  }
  void Arm() {
    // The call's deadline counts only while a call is open: once it ended, a
    // past Lever-Timeout deadline would fire again at once, forever, while a
    // slow reader drains the response.
    Clock::time_point t = s_ != nullptr ? std::min(deadline_, call_deadline_) : deadline_;
    if (t == Clock::time_point::max() || closed_) return;
    if (armed_ && armed_at_ <= t) return;
    armed_ = true;
    armed_at_ = t;
    uint64_t gen = ++timer_gen_;
    timer_.expires_at(t);
    timer_.async_wait([self = shared_from_this(), gen](beast::error_code) {
      if (gen != self->timer_gen_ || self->closed_) return;
      self->w_->counters().http_timer_fires.fetch_add(1, std::memory_order_relaxed);
      self->armed_ = false;
      self->OnTimer();
      self->w_->FlushDirty();
    });
  }
  void OnTimer() {
    auto now = Clock::now();
    if (s_ == nullptr) call_deadline_ = Clock::time_point::max();  // the call is over
    if (now >= call_deadline_ && s_ != nullptr) {
      call_deadline_ = Clock::time_point::max();
      FailCall(504, "deadline exceeded (Lever-Timeout " + std::to_string(timeout_ms_) + "ms)", true);
    } else if (now >= deadline_) {
      return Close();  // idle, slow, or not reading its response
    }
    Arm();
  }

  std::string Metrics() {
    GatewayStats st = w_->siblings != nullptr ? SumStats(*w_->siblings) : GatewayStats{};
    std::string m;
    auto metric = [&m](const char* name, const char* type, const char* help, int64_t v) {
      m += "# HELP ";
      m += name;
      m += ' ';
      m += help;
      m += "\n# TYPE ";
      m += name;
      m += ' ';
      m += type;
      m += '\n';
      m += name;
      m += ' ';
      m += std::to_string(v);
      m += '\n';
    };
    metric("lever_gateway_calls_total", "counter", "Calls (gRPC streams and HTTP calls) accepted since start.",
           st.streams_total);
    metric("lever_gateway_active_calls", "gauge", "Calls in flight.", st.active_streams);
    metric("lever_gateway_grpc_connections", "gauge", "Open HTTP/2 (gRPC) client connections.",
           st.client_connections);
    metric("lever_gateway_http_connections", "gauge", "Open HTTP/1.1 connections.", st.http_connections);
    metric("lever_gateway_instance_connections", "gauge", "Open connections to instances.", st.backend_connections);
    metric("lever_gateway_buffered_bytes", "gauge", "Call data held by the gateway.", st.buffered_bytes);
    metric("lever_gateway_peak_buffered_bytes", "gauge", "Most call data held at once since start.",
           st.peak_buffered_bytes);
    metric("lever_gateway_refused_connections", "counter",
           "Connections refused at accept by --max-connections or --max-connections-per-worker.",
           st.refused_connections);
    metric("lever_gateway_timed_out_connections", "counter",
           "HTTP/2 connections (clients or instances) closed by a SETTINGS, idle or write timeout.",
           st.timed_out_connections);
    metric("lever_gateway_pooled_calls", "gauge", "Idle call state kept for reuse.", st.pooled_streams);
    m += "# HELP lever_http_responses_total HTTP API responses by status class.\n";
    m += "# TYPE lever_http_responses_total counter\n";
    for (int c = 1; c <= 5; ++c) {
      m += "lever_http_responses_total{code=\"" + std::to_string(c) + "xx\"} " + std::to_string(st.http_responses[c]) +
           "\n";
    }
    return m;
  }

  WorkerImpl* w_;
  const HttpApiOptions& o_;
  Socket socket_;
  asio::steady_timer timer_;
  std::string addr_;
  beast::flat_buffer buf_{o_.max_header_bytes + 4096};
  std::optional<bhttp::request_parser<bhttp::buffer_body>> parser_;
  std::array<char, 65536> rbuf_;
  std::shared_ptr<HttpConn> hold_;  // while scheduled
  std::shared_ptr<HttpConn> self_;  // from Start until Close

  bool closed_ = false, draining_ = false, reading_ = false, writing_ = false, waiting_header_ = false;
  bool closing_ = false, watching_ = false;
  size_t drained_ = 0;
  uint32_t requests_ = 0;

  // The request in progress.
  http::Target target_;
  bool streaming_ = false, json_in_ = false, http10_ = false, keep_alive_ = true;
  std::string origin_;
  std::string admin_token_;  // lever-admin-token for a status call or a checked admin call
  int64_t timeout_ms_ = 0;
  std::string body_;  // unary body, or the current line of a streaming body
  bool first_line_done_ = false, body_done_ = false;

  // The call.
  Stream* s_ = nullptr;
  std::string frames_;  // gRPC frames from the instance, not yet parsed (unary: the reply, whole)
  size_t reply_len_ = 0;  // unary: the reply message's length, once reply_known_
  bool reply_known_ = false, raw_reply_ = false;
  uint64_t raw_left_ = 0;  // unary bytes reply: payload bytes still to come from the relay
  bool handshake_ = false;
  bool app_error_ = false;
  Value app_error_value_;
  bool fail_ = false;
  Code fail_code_ = Code::kOk;
  std::string fail_msg_;
  std::string grpc_status_, grpc_message_;
  int out_mode_ = 0;  // streaming response: 0 undecided, 1 NDJSON, 2 raw bytes
  std::string text_;

  // The response.
  bool head_sent_ = false, resp_done_ = false, abort_after_write_ = false;
  std::string out_, wbuf_;
  std::string tail_, wtail_;  // a whole body written after out_ (RespondOwned)

  // Timers: `deadline_` for I/O (idle), `call_deadline_` for Lever-Timeout.
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point call_deadline_ = Clock::time_point::max();
  bool armed_ = false;
  Clock::time_point armed_at_{};
  uint64_t timer_gen_ = 0;
};

}  // namespace

Stream* OpenHttpCall(WorkerImpl* w, Downstream* d, const http::Target& t, const char* grpc_path,
                     std::string_view admin_token, std::string_view initial, bool eof, int64_t timeout_ms) {
  Stream* s = w->NewStream();
  s->ds = d;
  FormatUrl(UrlView{t.env, t.service, t.resource, t.method}, &s->url);
  s->req.Add(":method", "POST");
  s->req.Add(":scheme", "http");
  s->req.Add(":path", grpc_path);
  s->req.Add(":authority", t.env);
  s->req.Add("content-type", "application/grpc");
  s->req.Add("te", "trailers");
  s->req.Add(wire::kUrlKey, s->url);
  if (timeout_ms > 0) s->req.Add("grpc-timeout", std::to_string(timeout_ms) + "m");
  if (!admin_token.empty()) s->req.Add("lever-admin-token", admin_token);
  w->PushUp(s, initial, eof);
  w->Route(s, {});  // HTTP calls are external: private services are refused
  return s;
}

void StartHttpApi(WorkerImpl* w, Socket socket, std::string already_read, const HttpApiOptions& options) {
  auto conn = std::make_shared<HttpConn>(w, std::move(socket), options);
  conn->Start(already_read);
  w->FlushDirty();
}

GatewayStats SumStats(const std::vector<std::shared_ptr<WorkerImpl>>& workers) {
  GatewayStats stats;
  for (auto& w : workers) {
    WorkerCounters& c = w->counters();
    stats.buffered_bytes += c.buffered.load(std::memory_order_relaxed);
    stats.peak_buffered_bytes += c.peak.load(std::memory_order_relaxed);
    stats.active_streams += c.streams.load(std::memory_order_relaxed);
    stats.client_connections += c.clients.load(std::memory_order_relaxed);
    stats.backend_connections += c.backends.load(std::memory_order_relaxed);
    stats.streams_total += c.streams_total.load(std::memory_order_relaxed);
    stats.http_connections += c.http_connections.load(std::memory_order_relaxed);
    for (int i = 0; i < 6; ++i) stats.http_responses[i] += c.http_responses[i].load(std::memory_order_relaxed);
    stats.refused_connections += c.refused.load(std::memory_order_relaxed);
    stats.timed_out_connections += c.timed_out.load(std::memory_order_relaxed);
    stats.pooled_streams += c.pooled.load(std::memory_order_relaxed);
    stats.pooled_stream_bytes += c.pooled_bytes.load(std::memory_order_relaxed);
    stats.http_timer_wakeups += c.http_timer_fires.load(std::memory_order_relaxed);
    stats.busy_polls += c.busy_polls.load(std::memory_order_relaxed);
  }
  return stats;
}

}  // namespace lever::gateway
