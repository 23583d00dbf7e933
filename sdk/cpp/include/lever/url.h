// Lever URLs (reference §2.4, §4.2).
//
//   absolute: lever://<env>[:<port>]/<service>[/<resource>]/<method>
//   relative: /<service>[/<resource>]/<method>
//
// The serialised form always has four slots, with an empty resource written
// as `//`: lever://dev.lever/helloService//sayHello. Parsing takes the service
// up to the first `/` after it and the method after the last `/`; everything
// in between is the resource, which may itself contain `/`.
#pragma once

#include <string>
#include <string_view>

#include "lever/status.h"

namespace lever {

// A parsed URL whose fields point into the parsed text (no allocation).
struct UrlView {
  std::string_view env;  // empty for a relative URL; the port, if any, is dropped
  std::string_view service;
  std::string_view resource;  // may be empty
  std::string_view method;
  bool absolute() const { return !env.empty(); }
};

struct Url {
  std::string env;
  std::string service;
  std::string resource;
  std::string method;

  Url() = default;
  Url(std::string e, std::string s, std::string r, std::string m)
      : env(std::move(e)), service(std::move(s)), resource(std::move(r)), method(std::move(m)) {}
  explicit Url(const UrlView& v) : env(v.env), service(v.service), resource(v.resource), method(v.method) {}
  UrlView view() const { return {env, service, resource, method}; }
  // The absolute four-slot form (requires a non-empty env), or the relative
  // form `/service/resource/method` when env is empty.
  std::string ToString() const;
  friend bool operator==(const Url&, const Url&) = default;
};

// Parses an absolute or relative Lever URL. Errors (INVALID_ARGUMENT): a scheme
// other than `lever:`, no service, no method, an empty service or method, an
// empty env in an absolute URL, a URL over 4096 bytes, control characters.
Status ParseUrl(std::string_view text, UrlView* out);
Status ParseUrl(std::string_view text, Url* out);

// Appends the four-slot serialisation to `out` (see above).
void FormatUrl(const UrlView& url, std::string* out);

// Streaming is decided by the method name alone (reference §2.7): it ends
// with `Chan`, ends with `_chan`, or is `chan` (case-sensitive).
bool IsChanMethod(std::string_view method);

// The environment suffix that marks routable, internal environments.
inline constexpr std::string_view kInternalEnvSuffix = ".lever";
inline bool IsInternalEnv(std::string_view env) {
  return env.size() > kInternalEnvSuffix.size() && env.ends_with(kInternalEnvSuffix);
}

}  // namespace lever
