// The WebSocket upgrade check and close reasons: pure, no I/O (fuzzed by
// fuzz/websocket_upgrade_fuzzer.cc). See websocket.h and gateway/websocket.md.
#include <algorithm>
#include <cctype>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

#include "status_page.h"
#include "websocket.h"

namespace lever::gateway::ws {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

std::string_view SV(beast::string_view v) { return {v.data(), v.size()}; }

bool IEquals(std::string_view a, std::string_view b) {
  return beast::iequals(beast::string_view(a.data(), a.size()), beast::string_view(b.data(), b.size()));
}

// `token` is one of the comma-separated tokens of a header value.
bool HasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view part = list.substr(0, comma);
    while (!part.empty() && (part.front() == ' ' || part.front() == '\t')) part.remove_prefix(1);
    while (!part.empty() && (part.back() == ' ' || part.back() == '\t')) part.remove_suffix(1);
    if (IEquals(part, token)) return true;
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  return false;
}

// A Sec-WebSocket-Key: base64 of 16 bytes (RFC 6455 4.2.1).
bool ValidKey(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  for (char c : key.substr(0, 22)) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return false;
  }
  return true;
}

}  // namespace

bool WantsUpgrade(const RequestHead& req) {
  auto it = req.find(bhttp::field::upgrade);
  return it != req.end() && HasToken(SV(it->value()), "websocket");
}

int CheckUpgrade(const RequestHead& req, std::string_view client_addr, size_t buffered, const HttpApiOptions& options,
                 Upgrade* out, std::string* error, std::string* extra_headers) {
  if (req.method() != bhttp::verb::get) {
    *error = "a WebSocket upgrade must be a GET";
    return 400;
  }
  if (req.version() < 11 || !HasToken(SV(req[bhttp::field::connection]), "upgrade")) {
    *error = "a WebSocket upgrade needs HTTP/1.1 and Connection: Upgrade";
    return 400;
  }
  if (req[bhttp::field::sec_websocket_version] != "13") {
    *error = "this server speaks WebSocket version 13 (RFC 6455)";
    extra_headers->assign("Sec-WebSocket-Version: 13\r\n");
    return 426;
  }
  if (!ValidKey(SV(req[bhttp::field::sec_websocket_key]))) {
    *error = "Sec-WebSocket-Key must be the base64 of 16 bytes";
    return 400;
  }
  if (buffered != 0) {
    *error = "the client sent data before the WebSocket handshake finished";
    return 400;
  }
  std::string_view host = SV(req[bhttp::field::host]);
  if (int status = http::ParseTarget(SV(req.target()), host, &out->target, error); status != 0) return status;
  if (!out->target.streaming) {
    *error = "\"" + out->target.method +
             "\" is not a streaming method: a WebSocket opens a streaming call (a method whose name ends in Chan); "
             "call this one with POST";
    return 400;
  }
  std::string_view origin = SV(req[bhttp::field::origin]);
  const auto& allowed = options.websocket.allowed_origins;
  if (!origin.empty() && !allowed.empty() && std::find(allowed.begin(), allowed.end(), origin) == allowed.end()) {
    *error = "WebSocket connections from origin " + std::string(origin) + " are not allowed (leverd --ws-allowed-origins)";
    return 403;
  }
  out->client_addr.assign(client_addr);
  if (http::IsAdminEnv(out->target.env)) {
    out->target.env = "admin.lever";
    // The admin service is leverd's own: a browser reaches it only from
    // leverd's pages, under the status page's access rule, so that no other
    // site's page can deploy code through a loopback leverd; anything else
    // shows the token (docs/security.md).
    pages::Credentials c{client_addr, host, SV(req[bhttp::field::authorization]), SV(req[bhttp::field::cookie])};
    pages::Access access = pages::CheckAccess(c, options.admin_token);
    if (!origin.empty() && (!pages::SameOrigin(origin, host) || access == pages::Access::kDenied)) {
      *error = "admin.lever takes WebSocket connections only from leverd's own pages";
      return 403;
    }
    if (origin.empty() && access != pages::Access::kToken) {
      return pages::CheckAdminRequest(origin, SV(req[bhttp::field::authorization]), options.admin_token, error);
    }
    // Checked here; the admin service checks the token again.
    out->admin_token = options.admin_token;
  }
  return 0;
}

std::string CloseReason(std::string_view text) {
  constexpr size_t kMax = 123;
  if (text.size() <= kMax) return std::string(text);
  size_t n = kMax;
  // Back up over UTF-8 continuation bytes so the cut is on a character boundary.
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return std::string(text.substr(0, n));
}

}  // namespace lever::gateway::ws
