#include "lever/url.h"

namespace lever {
namespace {

constexpr size_t kMaxUrlSize = 4096;
constexpr std::string_view kScheme = "lever://";

bool HasControlChars(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// Parses "/service[/resource]/method" into the view.
Status ParsePath(std::string_view path, UrlView* out) {
  if (path.empty() || path[0] != '/') return InvalidArgument("lever URL: path must start with '/'");
  path.remove_prefix(1);
  size_t first = path.find('/');
  if (first == std::string_view::npos) {
    return InvalidArgument("lever URL: needs /<service>/<method>");
  }
  size_t last = path.rfind('/');
  out->service = path.substr(0, first);
  out->method = path.substr(last + 1);
  out->resource = first == last ? std::string_view() : path.substr(first + 1, last - first - 1);
  if (out->service.empty()) return InvalidArgument("lever URL: empty service name");
  if (out->method.empty()) return InvalidArgument("lever URL: empty method name");
  return Status::Ok();
}

}  // namespace

Status ParseUrl(std::string_view text, UrlView* out) {
  *out = UrlView{};
  if (text.size() > kMaxUrlSize) return InvalidArgument("lever URL: longer than 4096 bytes");
  if (HasControlChars(text)) return InvalidArgument("lever URL: contains control characters");
  if (text.starts_with('/')) {
    if (text.starts_with("//")) {
      // "//env/..." is a scheme-relative absolute URL, as Go's url.Parse reads it.
      text.remove_prefix(2);
    } else {
      return ParsePath(text, out);
    }
  } else {
    size_t colon = text.find(':');
    if (colon == std::string_view::npos || !text.starts_with(kScheme)) {
      return InvalidArgument("lever URL: scheme must be lever://");
    }
    text.remove_prefix(kScheme.size());
  }
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return InvalidArgument("lever URL: needs /<service>/<method>");
  std::string_view host = text.substr(0, slash);
  if (size_t port = host.rfind(':'); port != std::string_view::npos) host = host.substr(0, port);
  if (host.empty()) return InvalidArgument("lever URL: empty environment");
  out->env = host;
  return ParsePath(text.substr(slash), out);
}

Status ParseUrl(std::string_view text, Url* out) {
  UrlView v;
  Status s = ParseUrl(text, &v);
  if (s.ok()) *out = Url(v);
  return s;
}

void FormatUrl(const UrlView& url, std::string* out) {
  if (!url.env.empty()) {
    out->append(kScheme);
    out->append(url.env);
  }
  out->push_back('/');
  out->append(url.service);
  out->push_back('/');
  out->append(url.resource);
  out->push_back('/');
  out->append(url.method);
}

std::string Url::ToString() const {
  std::string s;
  FormatUrl(view(), &s);
  return s;
}

bool IsChanMethod(std::string_view method) {
  return method == "chan" || method.ends_with("Chan") || method.ends_with("_chan");
}

}  // namespace lever
