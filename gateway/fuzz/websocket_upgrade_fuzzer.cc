// libFuzzer target: what leverd decides for a GET before any I/O, on
// arbitrary bytes. Beast parses the request head (with the API's header
// limit); ws::CheckUpgrade judges it as an upgrade and pages::Serve as a page
// request, from a loopback and a remote peer, with and without an admin
// token. Nothing may crash; every refusal has a status and a message, every
// acceptance a streaming target.
#include <cstdint>
#include <cstdlib>
#include <string>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "status_page.h"
#include "websocket.h"

namespace bhttp = boost::beast::http;
using namespace lever::gateway;

static std::string_view SV(boost::beast::string_view v) { return {v.data(), v.size()}; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The bytes also stand for a close reason: it must fit and stay a prefix.
  std::string reason = ws::CloseReason(std::string_view(reinterpret_cast<const char*>(data), size));
  if (reason.size() > 123 || std::string_view(reinterpret_cast<const char*>(data), size).substr(0, reason.size()) !=
                                 reason) {
    std::abort();
  }
  bhttp::request_parser<bhttp::empty_body> parser;
  parser.header_limit(16u << 10);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (!parser.is_header_done()) return 0;
  const auto& req = parser.get();
  HttpApiOptions options;
  for (std::string_view token : {"", "T0123456789012345678901234567890123456789"}) {
    options.admin_token.assign(token);
    options.websocket.allowed_origins = token.empty() ? std::vector<std::string>{}
                                                      : std::vector<std::string>{"https://app.example"};
    for (std::string_view peer : {"127.0.0.1:4000", "10.1.2.3:4000", "unix:/run/env-dev.lever.sock"}) {
      ws::Upgrade up;
      std::string error, extra;
      int status = ws::CheckUpgrade(req, peer, 0, options, &up, &error, &extra);
      if (status != 0 && ((status != 400 && status != 403 && status != 404 && status != 426) || error.empty())) {
        std::abort();
      }
      if (status == 0 && (!up.target.streaming || up.target.method.empty() || up.client_addr != peer)) std::abort();
      if (!up.admin_token.empty() && (up.target.env != "admin.lever" || up.admin_token != token)) std::abort();

      std::string_view target = SV(req.target());
      size_t q = target.find('?');
      pages::Request pr{target.substr(0, q), q == std::string_view::npos ? std::string_view() : target.substr(q + 1),
                        SV(req[bhttp::field::accept]),
                        {peer, SV(req[bhttp::field::host]), SV(req[bhttp::field::authorization]),
                         SV(req[bhttp::field::cookie])}};
      if (!pages::IsPagePath(pr.path)) continue;
      pages::Answer a = pages::Serve(pr, token);
      if (a.kind == pages::Answer::Kind::kRespond && (a.status < 200 || a.status > 499 || a.content_type.empty())) {
        std::abort();
      }
      // Only the admin token itself is ever forwarded, and only to one who showed it.
      if (!a.admin_token.empty() && a.admin_token != token) std::abort();
    }
  }
  return 0;
}
