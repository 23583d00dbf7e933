// The node's status page on the HTTP port (private). See gateway/status_page.md.
//
// GET / (for a client that accepts text/html) is a page of plain HTML, CSS
// and JavaScript embedded in leverd at build time (gateway/status/). Its data
// comes from GET /_lever/status, the JSON of `lever ps --json`, which the HTTP
// API answers by calling the admin service's Status method (so there is one
// source for both), and its log tail from a WebSocket call to the admin
// service's LogsChan. Everything here is pure: http_api.cc asks Serve() what
// to answer and does the I/O.
#pragma once

#include <string>
#include <string_view>

namespace lever::gateway::pages {

// Who may see the node's pages and reach admin.lever from a browser:
// a loopback TCP client whose Host header is a loopback name (so that a page
// of another site cannot read them through DNS rebinding), or anyone who
// presents the admin token (Authorization: Bearer, or the cookie the page
// sets). Instances, on their environment's unix socket, are never loopback.
enum class Access { kDenied, kLoopback, kToken };

struct Credentials {
  std::string_view client_addr;    // PeerAddress: "ip:port", "[ip6]:port", "unix:..."
  std::string_view host;           // the Host header
  std::string_view authorization;  // the Authorization header
  std::string_view cookie;         // the Cookie header
};
Access CheckAccess(const Credentials& c, std::string_view admin_token);

// `authorization` (an Authorization header) is "Bearer <admin_token>".
bool BearerMatches(std::string_view authorization, std::string_view admin_token);

// A POST or OPTIONS of the HTTP API to admin.lever (not a page, not a
// WebSocket): 0 to go on, the call then carrying the admin token; else 403
// with `error`. A browser request (an Origin header) is always refused, so no
// web page can drive admin, whatever its Host (DNS rebinding) or cookies; any
// other request needs Authorization: Bearer <admin token>, from loopback too.
int CheckAdminRequest(std::string_view origin, std::string_view authorization, std::string_view admin_token,
                      std::string* error);

// `origin` (an Origin header) names the page's own server `host` (Host
// header): "http://<host>" or "https://<host>".
bool SameOrigin(std::string_view origin, std::string_view host);

// GET and HEAD paths that are node pages: "/" and "/_lever/...".
bool IsPagePath(std::string_view path);

struct Request {
  std::string_view path;   // the target's path, not decoded
  std::string_view query;  // after '?', or empty
  std::string_view accept;
  Credentials credentials;
};

struct Answer {
  // kRespond: answer status/content_type/body/headers. kStatus: answer with
  // the value of the admin service's Status("") as JSON (GET /_lever/status),
  // sending `admin_token` as lever-admin-token when it is not empty (the
  // caller passed CheckAccess, so it may act as the node's admin).
  enum class Kind { kRespond, kStatus } kind = Kind::kRespond;
  int status = 200;
  std::string content_type;
  std::string body;
  std::string headers;  // extra response header lines, each ending in \r\n
  std::string admin_token;
};

// What to answer to a GET/HEAD of a page path.
Answer Serve(const Request& request, std::string_view admin_token);

// The cookie that carries the admin token for the page's own requests.
inline constexpr std::string_view kTokenCookie = "lever_admin_token";

}  // namespace lever::gateway::pages
