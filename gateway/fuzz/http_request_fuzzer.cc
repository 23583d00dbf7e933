// libFuzzer target: the HTTP API's request path on arbitrary bytes. Beast
// parses the request (with the API's header limit); the target and Host go
// through ParseTarget, the Content-Type through IsJsonBody, and the body
// (unary) or each line (streaming) through ParseArgs / the JSON parser, the
// way http_api.cc uses them. Nothing may crash; what parses must be sane.
#include <cstdint>
#include <cstdlib>
#include <string>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "http_parse.h"
#include "lever/json.h"
#include "lever/url.h"

namespace bhttp = boost::beast::http;
using lever::gateway::http::Target;

static std::string_view SV(boost::beast::string_view v) { return {v.data(), v.size()}; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(16u << 10);
  parser.body_limit(512u << 10);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (!parser.is_header_done()) return 0;
  auto& req = parser.get();
  Target t;
  std::string error;
  int status = lever::gateway::http::ParseTarget(SV(req.target()), SV(req[bhttp::field::host]), &t, &error);
  if (status != 0) {
    if ((status != 400 && status != 404) || error.empty()) std::abort();
    return 0;
  }
  // A parsed target always makes a Lever URL that parses back to itself.
  std::string url;
  lever::FormatUrl(lever::UrlView{t.env, t.service, t.resource, t.method}, &url);
  lever::UrlView back;
  if (!lever::ParseUrl(url, &back).ok() || back.env != t.env || back.service != t.service ||
      back.resource != t.resource || back.method != t.method) {
    std::abort();
  }
  if (!parser.is_done()) return 0;
  const std::string& body = req.body();
  bool json = lever::gateway::http::IsJsonBody(SV(req[bhttp::field::content_type]), t.streaming);
  lever::Array args;
  if (!t.streaming) {
    if (json && lever::gateway::http::ParseArgs(body, &args, &error) != 0 && error.empty()) std::abort();
    return 0;
  }
  size_t nl = body.find('\n');
  (void)lever::gateway::http::ParseArgs(std::string_view(body).substr(0, nl), &args, &error);
  if (nl == std::string::npos || !json) return 0;
  std::string_view rest = std::string_view(body).substr(nl + 1);
  while (!rest.empty()) {
    size_t e = rest.find('\n');
    lever::Value v;
    (void)lever::ParseJson(rest.substr(0, e), &v);
    rest = e == std::string_view::npos ? std::string_view() : rest.substr(e + 1);
  }
  return 0;
}
