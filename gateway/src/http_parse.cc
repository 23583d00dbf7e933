#include "http_parse.h"

#include <cctype>
#include <charconv>

#include "lever/json.h"
#include "lever/url.h"

namespace lever::gateway::http {
namespace {

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Environment names: what a DNS name or a Lever env may hold.
bool ValidEnv(std::string_view env) {
  if (env.empty() || env.size() > 253) return false;
  for (char c : env) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == '_';
    if (!ok) return false;
  }
  return true;
}

// Lever URLs travel as gRPC metadata: printable ASCII only.
bool PrintableAscii(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

bool PercentDecode(std::string_view in, std::string* out, bool plus_is_space) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = Hex(in[i + 1]), lo = Hex(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

bool IsAdminEnv(std::string_view env) {
  constexpr std::string_view kAdmin = "admin.lever";
  if (env.size() != kAdmin.size()) return false;
  for (size_t i = 0; i < env.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(env[i])) != kAdmin[i]) return false;
  }
  return true;
}

int ParseTarget(std::string_view target, std::string_view host, Target* out, std::string* error) {
  *out = Target{};
  std::string_view path = target, query;
  if (size_t q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  if (size_t h = query.find('#'); h != std::string_view::npos) query = query.substr(0, h);
  if (path.empty() || path[0] != '/') {
    *error = "the path must be /<service>[/<resource>]/<method>";
    return 400;
  }
  // The environment: ?forceenv= wins over Host.
  std::string env;
  bool forced = false;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string key, value;
    if (!PercentDecode(pair.substr(0, eq), &key, true) ||
        !PercentDecode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), &value, true)) {
      *error = "malformed percent-encoding in the query";
      return 400;
    }
    if (key == "forceenv") {
      env = std::move(value);
      forced = true;
    }
  }
  if (!forced) {
    std::string_view h = host;
    if (h.starts_with('[')) {
      size_t close = h.find(']');
      h = close == std::string_view::npos ? h : h.substr(0, close + 1);
    } else if (size_t colon = h.rfind(':'); colon != std::string_view::npos) {
      h = h.substr(0, colon);
    }
    env.assign(h);
  }
  std::string decoded;
  if (!PercentDecode(path, &decoded)) {
    *error = "malformed percent-encoding in the path";
    return 400;
  }
  if (!PrintableAscii(decoded)) {
    *error = "the path holds control or non-ASCII characters once percent-decoded";
    return 400;
  }
  std::string_view p(decoded);
  p.remove_prefix(1);
  size_t first = p.find('/');
  if (first == std::string_view::npos) {
    *error = "the path must be /<service>[/<resource>]/<method>: no method";
    return 400;
  }
  size_t last = p.rfind('/');
  out->service.assign(p.substr(0, first));
  out->method.assign(p.substr(last + 1));
  if (first != last) out->resource.assign(p.substr(first + 1, last - first - 1));
  if (out->service.empty()) {
    *error = "the path must be /<service>[/<resource>]/<method>: empty service";
    return 400;
  }
  if (out->method.empty()) {
    *error = "the path must be /<service>[/<resource>]/<method>: empty method";
    return 400;
  }
  if (decoded.size() > 3000) {
    *error = "the path is too long for a Lever URL";
    return 400;
  }
  if (env.empty()) {
    *error = "no environment: send ?forceenv=<env> or a Host header naming it (e.g. dev.lever)";
    return 404;
  }
  if (!ValidEnv(env)) {
    *error = "malformed environment name \"" + (PrintableAscii(env) ? env : std::string("?")) + "\"";
    return 400;
  }
  if (!IsInternalEnv(env)) {
    *error = "environment \"" + env + "\" not found (only environments ending in .lever are routable; use ?forceenv=dev.lever)";
    return 404;
  }
  out->env = std::move(env);
  out->streaming = IsChanMethod(out->method);
  return 0;
}

std::string MediaType(std::string_view content_type) {
  std::string_view t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  std::string out(t);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsJsonBody(std::string_view content_type, bool streaming) {
  std::string t = MediaType(content_type);
  return t == "application/json" || (streaming && t == "application/x-ndjson");
}

int ParseArgs(std::string_view text, Array* args, std::string* error) {
  args->clear();
  DecodeLimits limits;
  limits.max_depth = 64;
  Value v;
  Status s = ParseJson(text, &v, limits);
  if (!s.ok()) {
    *error = "invalid JSON: " + s.message();
    return 400;
  }
  if (v.is_null()) return 0;
  if (!v.is_array()) {
    *error = "the body must be a JSON array of arguments (or null for none)";
    return 400;
  }
  *args = std::move(v.as_array());
  return 0;
}

bool ParseTimeout(std::string_view text, int64_t* millis) {
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || n <= 0) return false;
  std::string_view unit(ptr, static_cast<size_t>(text.data() + text.size() - ptr));
  int64_t scale = unit.empty() || unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60000 : 0;
  if (scale == 0 || n > (int64_t{1} << 40) / scale) return false;
  *millis = n * scale;
  return true;
}

int HttpStatusFor(Code code) {
  switch (code) {
    case Code::kOk: return 200;
    case Code::kInvalidArgument:
    case Code::kOutOfRange: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kNotFound:
    case Code::kUnimplemented: return 404;
    case Code::kResourceExhausted: return 429;
    case Code::kCancelled: return 499;
    case Code::kUnavailable: return 503;
    case Code::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

std::string_view Reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

std::string JsonString(std::string_view text) {
  std::string out;
  // Error texts may quote client input: invalid UTF-8 becomes '?'.
  if (!WriteJson(Value(std::string(text)), &out).ok()) {
    std::string clean;
    for (unsigned char c : text) clean.push_back(c < 0x80 ? static_cast<char>(c) : '?');
    out.clear();
    (void)WriteJson(Value(clean), &out);
  }
  return out;
}

std::string DecodeGrpcMessage(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && Hex(in[i + 1]) >= 0 && Hex(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(Hex(in[i + 1]) * 16 + Hex(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

void AppendGrpcFrame(std::string_view message, std::string* out) {
  uint32_t n = static_cast<uint32_t>(message.size());
  char h[5] = {0, static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
               static_cast<char>(n)};
  out->append(h, 5);
  out->append(message);
}

int RawReplyHead(std::string_view prefix, size_t message_len, bool* is_error, size_t* header) {
  if (message_len == 0) return 0;
  if (prefix.empty()) return -1;
  uint8_t tag = static_cast<uint8_t>(prefix[0]);
  if (tag != 0x12 && tag != 0x22) return 0;  // field 2 or 4, length-delimited
  uint64_t len = 0;
  for (size_t i = 1; i < 11; ++i) {
    if (i >= message_len) return 0;
    if (i >= prefix.size()) return -1;
    uint8_t b = static_cast<uint8_t>(prefix[i]);
    len |= uint64_t{b & 0x7fu} << (7 * (i - 1));
    if ((b & 0x80) == 0) {
      if (len != message_len - (i + 1)) return 0;
      *is_error = tag == 0x22;
      *header = i + 1;
      return 1;
    }
  }
  return 0;
}

}  // namespace lever::gateway::http
