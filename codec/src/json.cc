#include "lever/json.h"

#include <charconv>
#include <cmath>

#include <simdjson.h>

#include "utf8.h"

namespace lever {
namespace {

class Converter {
 public:
  explicit Converter(const DecodeLimits& limits) : limits_(limits) {}

  Status Convert(simdjson::dom::element e, Value* out, uint32_t depth) {
    if (++elements_ > limits_.max_elements) {
      return ResourceExhausted("json: more than " + std::to_string(limits_.max_elements) + " values");
    }
    switch (e.type()) {
      case simdjson::dom::element_type::NULL_VALUE: *out = Value(); return Status::Ok();
      case simdjson::dom::element_type::BOOL: *out = Value(bool(e.get_bool().value_unsafe())); return Status::Ok();
      case simdjson::dom::element_type::INT64: *out = Value(int64_t(e.get_int64().value_unsafe())); return Status::Ok();
      case simdjson::dom::element_type::UINT64: *out = Value(uint64_t(e.get_uint64().value_unsafe())); return Status::Ok();
      case simdjson::dom::element_type::DOUBLE: *out = Value(double(e.get_double().value_unsafe())); return Status::Ok();
      case simdjson::dom::element_type::STRING: *out = Value(std::string(e.get_string().value_unsafe())); return Status::Ok();
      case simdjson::dom::element_type::ARRAY: {
        if (depth >= limits_.max_depth) return TooDeep();
        simdjson::dom::array a = e.get_array().value_unsafe();
        Array arr;
        arr.reserve(a.size());
        for (simdjson::dom::element child : a) {
          arr.emplace_back();
          Status s = Convert(child, &arr.back(), depth + 1);
          if (!s.ok()) return s;
        }
        *out = Value(std::move(arr));
        return Status::Ok();
      }
      case simdjson::dom::element_type::OBJECT: {
        if (depth >= limits_.max_depth) return TooDeep();
        simdjson::dom::object o = e.get_object().value_unsafe();
        Map map;
        map.reserve(o.size());
        for (simdjson::dom::key_value_pair kv : o) {
          if (++elements_ > limits_.max_elements) {
            return ResourceExhausted("json: more than " + std::to_string(limits_.max_elements) + " values");
          }
          Value v;
          Status s = Convert(kv.value, &v, depth + 1);
          if (!s.ok()) return s;
          map.AppendUnchecked(std::string(kv.key), std::move(v));
        }
        map.DeduplicateKeys();
        *out = Value(std::move(map));
        return Status::Ok();
      }
    }
    return InvalidArgument("json: unknown element");
  }

 private:
  Status TooDeep() const {
    return ResourceExhausted("json: nesting deeper than " + std::to_string(limits_.max_depth));
  }
  const DecodeLimits& limits_;
  size_t elements_ = 0;
};

constexpr char kHex[] = "0123456789abcdef";

void AppendEscaped(std::string_view s, std::string* out) {
  out->push_back('"');
  size_t run = 0;  // start of the current run of bytes that need no escaping
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 15]);
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

void AppendBase64(std::string_view in, std::string* out) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  out->push_back('"');
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out->push_back(kAlphabet[n >> 18]);
    out->push_back(kAlphabet[(n >> 12) & 63]);
    out->push_back(kAlphabet[(n >> 6) & 63]);
    out->push_back(kAlphabet[n & 63]);
  }
  if (i < in.size()) {
    uint32_t n = uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) n |= uint8_t(in[i + 1]) << 8;
    out->push_back(kAlphabet[n >> 18]);
    out->push_back(kAlphabet[(n >> 12) & 63]);
    out->push_back(i + 1 < in.size() ? kAlphabet[(n >> 6) & 63] : '=');
    out->push_back('=');
  }
  out->push_back('"');
}

class Writer {
 public:
  Writer(std::string* out, const JsonWriteOptions& o) : out_(out), o_(o) {}

  Status Write(const Value& v, int level) {
    switch (v.type()) {
      case Value::Type::kNull: out_->append("null"); return Status::Ok();
      case Value::Type::kBool: out_->append(v.as_bool() ? "true" : "false"); return Status::Ok();
      case Value::Type::kInt: return Number(v.as_int());
      case Value::Type::kUint: return Number(v.as_uint());
      case Value::Type::kDouble: return Double(v.as_double());
      case Value::Type::kString:
        if (!internal::ValidUtf8(v.as_string())) return InvalidArgument("json: string is not valid UTF-8");
        AppendEscaped(v.as_string(), out_);
        return Status::Ok();
      case Value::Type::kBytes:
        if (!o_.bytes_as_base64) return InvalidArgument("json: bytes have no JSON form");
        AppendBase64(v.as_bytes().view(), out_);
        return Status::Ok();
      case Value::Type::kArray: {
        const Array& a = v.as_array();
        out_->push_back('[');
        for (size_t i = 0; i < a.size(); ++i) {
          if (i) out_->push_back(',');
          Newline(level + 1);
          Status s = Write(a[i], level + 1);
          if (!s.ok()) return s;
        }
        if (!a.empty()) Newline(level);
        out_->push_back(']');
        return Status::Ok();
      }
      case Value::Type::kMap: {
        const Map& m = v.as_map();
        out_->push_back('{');
        bool first = true;
        for (const auto& [key, value] : m) {
          if (!first) out_->push_back(',');
          first = false;
          Newline(level + 1);
          if (!internal::ValidUtf8(key)) return InvalidArgument("json: key is not valid UTF-8");
          AppendEscaped(key, out_);
          out_->append(o_.indent > 0 ? ": " : ":");
          Status s = Write(value, level + 1);
          if (!s.ok()) return s;
        }
        if (!m.empty()) Newline(level);
        out_->push_back('}');
        return Status::Ok();
      }
    }
    return InvalidArgument("json: unknown value type");
  }

 private:
  template <typename T>
  Status Number(T n) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, n);
    out_->append(buf, r.ptr);
    return Status::Ok();
  }

  Status Double(double d) {
    if (!std::isfinite(d)) {
      if (o_.nonfinite_as_null) {
        out_->append("null");
        return Status::Ok();
      }
      return InvalidArgument("json: NaN and infinity have no JSON form");
    }
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, d);
    std::string_view text(buf, r.ptr - buf);
    out_->append(text);
    if (text.find_first_of(".e") == std::string_view::npos) out_->append(".0");
    return Status::Ok();
  }

  void Newline(int level) {
    if (o_.indent <= 0) return;
    out_->push_back('\n');
    out_->append(static_cast<size_t>(level) * o_.indent, ' ');
  }

  std::string* out_;
  const JsonWriteOptions& o_;
};

}  // namespace

Status ParseJson(std::string_view text, Value* out, const DecodeLimits& limits) {
  if (text.size() > limits.max_size) {
    return ResourceExhausted("json: input of " + std::to_string(text.size()) + " bytes exceeds the limit of " +
                             std::to_string(limits.max_size));
  }
  // One parser per thread keeps its buffers between calls.
  thread_local simdjson::dom::parser parser;
  // simdjson bounds its own structural stack by max_depth; leave room for the
  // error to be ours (a clear limit message) rather than its DEPTH_ERROR.
  size_t want_depth = std::min<size_t>(size_t{limits.max_depth} + 2, 20000);
  if (parser.capacity() < text.size() || parser.max_depth() != want_depth) {
    if (parser.allocate(std::max(text.size(), parser.capacity()), want_depth) != simdjson::SUCCESS) {
      return ResourceExhausted("json: cannot allocate parser buffers");
    }
  }
  simdjson::dom::element root;
  simdjson::error_code err = parser.parse(text.data(), text.size(), true).get(root);
  switch (err) {
    case simdjson::SUCCESS: break;
    case simdjson::NUMBER_OUT_OF_RANGE:
      return InvalidArgument("json: number out of range");
    case simdjson::DEPTH_ERROR:
      return ResourceExhausted("json: nesting deeper than " + std::to_string(limits.max_depth));
    case simdjson::UTF8_ERROR: return InvalidArgument("json: text is not valid UTF-8");
    case simdjson::EMPTY: return InvalidArgument("json: empty input");
    default: return InvalidArgument(std::string("json: ") + simdjson::error_message(err));
  }
  Converter c(limits);
  return c.Convert(root, out, 0);
}

Status WriteJson(const Value& v, std::string* out, const JsonWriteOptions& options) {
  Writer w(out, options);
  return w.Write(v, 0);
}

}  // namespace lever
