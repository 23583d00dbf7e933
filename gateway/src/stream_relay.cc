// The per-stream relay state machine: routing, answering with an error,
// either side closing, and the calls of a Downstream (HTTP exchanges).
// See gateway/relay.md, "Life of a stream", "Errors", "Flow control".
#include <charconv>
#include <iterator>

#include "backend_side.h"
#include "client_side.h"
#include "grpc_status.h"
#include "lever/url.h"
#include "worker.h"

namespace lever::gateway {

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


bool TokenEquals(std::string_view presented, std::string_view ours) {
  if (ours.empty() || presented.size() != ours.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < ours.size(); ++i) diff |= static_cast<unsigned char>(presented[i] ^ ours[i]);
  return diff == 0;
}

void WorkerImpl::Route(Stream* s, std::string_view src_env, bool from_peer) {
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
  host::RouteRequest request{url.env, url.service, url.resource, url.method, src_env, from_peer};
  uint64_t gen = s->gen;
  host::PendingRoute pending = router_->RouteCancellable(request, RouteDone{RouteTicket{serial_, s->slot, gen}});
  // A call that waits (cold start) can be taken back if its caller goes.
  if (pending && s->gen == gen && s->routing) s->pending = std::move(pending);
}

// The caller went away while its call waited in the host's queue: it leaves
// the queue now (its `done` runs here with CANCELLED, which releases it).
void WorkerImpl::CancelRouting(Stream* s) {
  if (!s->routing || !s->pending) return;
  host::PendingRoute pending = std::move(s->pending);
  s->pending = {};
  router_->CancelRoute(pending);
}

void WorkerImpl::OnRouted(Stream* s, host::RouteResult result) {
  s->routing = false;
  s->pending = {};
  if (result.backend) {
    // The host counted the call on the backend when it placed it: whatever
    // becomes of the call now, OnCallEnd is owed once.
    s->backend = std::move(result.backend);
    s->call_started = true;
  }
  if (!s->attached()) {
    MaybeRelease(s);
    return;
  }
  if (!result.status.ok()) {
    FailClient(s, result.status.code(), result.status.message());
    return;
  }
  if (!s->backend) {
    FailClient(s, Code::kUnavailable, "no instance for this call");
    return;
  }
  GetBackendConn(s->backend)->Submit(s);
}

// The call goes to the host again (it never reached the instance it was
// placed on): that placement ends.
void WorkerImpl::Replace(Stream* s) {
  s->rerouted = true;
  s->bconn = nullptr;
  s->bsid = -1;
  if (s->call_started) {
    s->call_started = false;
    s->backend->OnCallEnd();
  }
  s->backend.reset();
  if (s->client != nullptr && s->client->peer()) {
    Route(s, s->peer_src_env, /*from_peer=*/true);
  } else {
    Route(s, s->client != nullptr ? std::string_view(s->client->src_env()) : std::string_view());
  }
}

void WorkerImpl::FailClient(Stream* s, Code code, std::string_view message) {
  if (!s->attached()) return;
  // The relay answers: the rest of the request is dropped (its window given
  // back to an h2 client), and the instance's stream, if open, is cancelled.
  if (!s->up.empty()) {
    if (s->client != nullptr && !s->up_consumed) nghttp2_session_consume(s->client->session(), s->csid, s->up.size());
    AddBuffered(-static_cast<int64_t>(s->up.size()));
    s->up.Clear();
  }
  s->discard_up = true;
  if (s->bconn != nullptr && s->bsid > 0) {
    nghttp2_submit_rst_stream(s->bconn->session(), NGHTTP2_FLAG_NONE, s->bsid, NGHTTP2_CANCEL);
    MarkDirty(s->bconn);
  }
  if (s->client == nullptr) {
    if (!s->down_eof) {
      s->down_eof = true;
      s->ds->OnFail(code, message);
      s->ds->Wake();
    }
    return;
  }
  nghttp2_session* cs = s->client->session();
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
  CancelRouting(s);  // last: it may release the stream
}

// The downstream (h2 client or HTTP exchange) is gone: a cancel resets the
// instance's stream (its handler sees the cancellation), a finished exchange
// just releases it; a stream still queued on a connecting BackendConn leaves
// the queue. Then the response bytes held for it are dropped.
void WorkerImpl::ReleaseBackendSide(Stream* s, bool cancel) {
  if (s->bconn != nullptr) {
    if (s->bsid > 0) {
      s->down_consumed = true;  // (its connection window went back on receipt)
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
  if (error_code == NGHTTP2_REFUSED_STREAM && conn_lost.empty() && s->attached() && !s->resp_started &&
      !s->up_taken && !s->rerouted) {
    // Refused before the instance read any of it (it is going away: a
    // graceful GOAWAY): the call goes elsewhere, once.
    Replace(s);
    return;
  }
  s->down_consumed = true;  // (its connection window went back on receipt)
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

// --- downstreams -----------------------------------------------------------

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
    nghttp2_session_consume_stream(s->bconn->session(), s->bsid, n);
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
  CancelRouting(s);  // last: it may release the stream
}

}  // namespace lever::gateway
