// The node's status page: access rules and what to answer. See status_page.h.
#include "status_page.h"

#include <cctype>

#include "http_parse.h"
#include "status_assets.h"

namespace lever::gateway::pages {
namespace {

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

bool IContains(std::string_view haystack, std::string_view needle) {
  for (size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    if (IEquals(haystack.substr(i, needle.size()), needle)) return true;
  }
  return false;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Compares in time that depends only on the lengths.
bool TokenEquals(std::string_view given, std::string_view token) {
  if (token.empty() || given.size() != token.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < token.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ token[i]);
  return diff == 0;
}

bool IsLoopbackPeer(std::string_view addr) {
  return addr.starts_with("127.") || addr.starts_with("[::1]:") || addr.starts_with("[::ffff:127.");
}

// A Host header naming this machine's loopback: localhost, 127.x.x.x or
// [::1], with or without a port.
bool IsLoopbackHost(std::string_view host) {
  std::string_view name = host;
  if (name.starts_with('[')) {
    size_t end = name.find(']');
    if (end == std::string_view::npos) return false;
    std::string_view rest = name.substr(end + 1);
    if (!rest.empty() && !rest.starts_with(':')) return false;
    return name.substr(0, end + 1) == "[::1]";
  }
  name = name.substr(0, name.find(':'));
  if (IEquals(name, "localhost")) return true;
  if (!name.starts_with("127.")) return false;
  int dots = 0;
  for (char c : name) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

// The value of cookie `name` in a Cookie header, or empty.
std::string_view CookieValue(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view part = Trim(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    size_t eq = part.find('=');
    if (eq != std::string_view::npos && part.substr(0, eq) == name) return part.substr(eq + 1);
  }
  return {};
}

// The value of `name` in a query string (decoded), or false.
bool QueryValue(std::string_view query, std::string_view name, std::string* out) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = part.find('=');
    if (part.substr(0, eq) != name) continue;
    return http::PercentDecode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1), out, true);
  }
  return false;
}

constexpr std::string_view kPageHeaders =
    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n";
constexpr std::string_view kHtmlHeaders =
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; frame-ancestors 'none'\r\n";

Answer Text(int status, std::string_view text) {
  Answer a;
  a.status = status;
  a.content_type = "text/plain; charset=utf-8";
  a.body.assign(text);
  a.body.push_back('\n');
  a.headers.assign(kPageHeaders);
  return a;
}

Answer Json(int status, std::string_view message) {
  Answer a;
  a.status = status;
  a.content_type = "application/json";
  a.body = http::JsonString(message);
  a.headers.assign(kPageHeaders);
  return a;
}

constexpr std::string_view kDenied =
    "leverd's status page is served to loopback clients (http://127.0.0.1:<port>/), "
    "or with the admin token: open /?token=<the token in <data-dir>/admin.token>";

}  // namespace

bool BearerMatches(std::string_view authorization, std::string_view admin_token) {
  std::string_view auth = Trim(authorization);
  return auth.size() > 7 && IEquals(auth.substr(0, 7), "Bearer ") && TokenEquals(Trim(auth.substr(7)), admin_token);
}

int CheckAdminRequest(std::string_view origin, std::string_view authorization, std::string_view admin_token,
                      std::string* error) {
  if (!origin.empty()) {
    *error = "admin.lever does not answer web pages (this request has an Origin header): deploy and manage "
             "with the lever CLI, or a client that sends the admin token and no Origin";
    return 403;
  }
  if (!BearerMatches(authorization, admin_token)) {
    *error = std::string("admin.lever over HTTP needs the admin token: Authorization: Bearer <the token in "
                         "<data-dir>/admin.token>") +
             (Trim(authorization).empty() ? "" : " (the one given is wrong)");
    return 403;
  }
  return 0;
}

Access CheckAccess(const Credentials& c, std::string_view admin_token) {
  if (!admin_token.empty()) {
    if (BearerMatches(c.authorization, admin_token)) return Access::kToken;
    if (TokenEquals(CookieValue(c.cookie, kTokenCookie), admin_token)) return Access::kToken;
  }
  if (IsLoopbackPeer(c.client_addr) && IsLoopbackHost(c.host)) return Access::kLoopback;
  return Access::kDenied;
}

bool SameOrigin(std::string_view origin, std::string_view host) {
  if (host.empty()) return false;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (origin.size() == scheme.size() + host.size() && IEquals(origin.substr(0, scheme.size()), scheme) &&
        IEquals(origin.substr(scheme.size()), host)) {
      return true;
    }
  }
  return false;
}

bool IsPagePath(std::string_view path) { return path == "/" || path.starts_with("/_lever/"); }

Answer Serve(const Request& r, std::string_view admin_token) {
  std::string given;
  if (r.path == "/" && QueryValue(r.query, "token", &given)) {
    // A link with the token: keep it in a cookie the page's own requests
    // carry (never a cross-site one), and drop it from the address bar.
    if (!TokenEquals(given, admin_token)) return Text(403, "wrong admin token");
    Answer a = Text(303, "see /");
    a.headers += "Location: /\r\nSet-Cookie: ";
    a.headers += kTokenCookie;
    a.headers += "=" + given + "; Path=/; HttpOnly; SameSite=Strict\r\n";
    return a;
  }
  if (r.path == "/" && !IContains(r.accept, "text/html")) {
    return Json(404, "GET / is leverd's status page, for browsers (Accept: text/html); its data is GET /_lever/status");
  }
  Access access = CheckAccess(r.credentials, admin_token);
  if (r.path == "/_lever/status") {
    if (access == Access::kDenied) return Json(403, kDenied);
    Answer a;
    a.kind = Answer::Kind::kStatus;
    a.headers.assign(kPageHeaders);
    a.admin_token.assign(admin_token);  // checked here; the admin service checks it again
    return a;
  }
  for (size_t i = 0; i < kAssetCount; ++i) {
    const Asset& asset = kAssets[i];
    if (r.path != asset.path) continue;
    if (access == Access::kDenied) return Text(403, kDenied);
    Answer a;
    a.content_type = asset.content_type;
    a.body.assign(reinterpret_cast<const char*>(asset.data), asset.size);
    a.headers.assign(kPageHeaders);
    if (a.content_type.starts_with("text/html")) a.headers += kHtmlHeaders;
    return a;
  }
  return Json(404, "not found: " + std::string(r.path));
}

}  // namespace lever::gateway::pages
