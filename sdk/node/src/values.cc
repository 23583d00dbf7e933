#include "values.h"

#include <cmath>
#include <cstring>
#include <string>

namespace lever_node {
namespace {

constexpr double kMaxSafe = 9007199254740991.0;  // 2^53 - 1

void Check(Napi::Env env, napi_status s) {
  if (s != napi_ok) throw Napi::Error::New(env);
}

ValuePtr Must(Napi::Env env, lever_value* v) {
  if (v == nullptr) throw Napi::Error::New(env, "lever: out of memory");
  return ValuePtr(v);
}

ValuePtr StringToLever(Napi::Env env, napi_value value) {
  size_t len = 0;
  Check(env, napi_get_value_string_utf8(env, value, nullptr, 0, &len));
  char small[256];
  if (len < sizeof(small)) {
    Check(env, napi_get_value_string_utf8(env, value, small, sizeof(small), &len));
    return Must(env, lever_value_new_string(small, len));
  }
  std::string s(len, '\0');
  Check(env, napi_get_value_string_utf8(env, value, s.data(), len + 1, &len));
  return Must(env, lever_value_new_string(s.data(), len));
}

// Bytes of a Buffer/TypedArray/DataView/ArrayBuffer; false for other objects.
bool BytesOf(Napi::Env env, napi_value value, const void** data, size_t* len) {
  bool is = false;
  Check(env, napi_is_typedarray(env, value, &is));
  if (is) {
    napi_typedarray_type type;
    size_t length = 0, offset = 0;
    void* ptr = nullptr;
    Check(env, napi_get_typedarray_info(env, value, &type, &length, &ptr, nullptr, &offset));
    size_t elem = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: elem = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: elem = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: elem = 8; break;
      default: break;
    }
    *data = ptr;
    *len = length * elem;
    return true;
  }
  Check(env, napi_is_dataview(env, value, &is));
  if (is) {
    void* ptr = nullptr;
    size_t length = 0, offset = 0;
    Check(env, napi_get_dataview_info(env, value, &length, &ptr, nullptr, &offset));
    *data = ptr;
    *len = length;
    return true;
  }
  Check(env, napi_is_arraybuffer(env, value, &is));
  if (is) {
    void* ptr = nullptr;
    size_t length = 0;
    Check(env, napi_get_arraybuffer_info(env, value, &ptr, &length));
    *data = ptr;
    *len = length;
    return true;
  }
  return false;
}

ValuePtr ObjectToLever(Napi::Env env, napi_value value, int depth) {
  const void* data = nullptr;
  size_t len = 0;
  if (BytesOf(env, value, &data, &len)) return Must(env, lever_value_new_bytes(data, len));

  bool is_array = false;
  Check(env, napi_is_array(env, value, &is_array));
  if (is_array) {
    uint32_t n = 0;
    Check(env, napi_get_array_length(env, value, &n));
    ValuePtr out = Must(env, lever_value_new_array());
    for (uint32_t i = 0; i < n; i++) {
      napi_value item;
      Check(env, napi_get_element(env, value, i, &item));
      napi_valuetype t;
      Check(env, napi_typeof(env, item, &t));
      // Holes and undefined -> null (JSON.stringify's rule); a function or
      // symbol (a misplaced callback?) is a TypeError.
      ValuePtr v = t == napi_undefined ? Must(env, lever_value_new_null()) : ToLever(env, item, depth + 1);
      if (lever_value_array_push(out.get(), v.release()) != 0) throw Napi::Error::New(env, "lever: out of memory");
    }
    return out;
  }

  Napi::Object obj(env, value);
  Napi::Value to_json = obj.Get("toJSON");
  if (to_json.IsFunction()) {
    Napi::Value replaced = to_json.As<Napi::Function>().Call(value, {});
    return ToLever(env, replaced, depth + 1);
  }

  napi_value keys;
  Check(env, napi_get_all_property_names(env, value, napi_key_own_only,
                                         static_cast<napi_key_filter>(napi_key_enumerable | napi_key_skip_symbols),
                                         napi_key_numbers_to_strings, &keys));
  uint32_t n = 0;
  Check(env, napi_get_array_length(env, keys, &n));
  ValuePtr out = Must(env, lever_value_new_map());
  for (uint32_t i = 0; i < n; i++) {
    napi_value key, item;
    Check(env, napi_get_element(env, keys, i, &key));
    Check(env, napi_get_property(env, value, key, &item));
    napi_valuetype t;
    Check(env, napi_typeof(env, item, &t));
    if (t == napi_undefined || t == napi_function || t == napi_symbol) continue;
    std::string k = Napi::String(env, key).Utf8Value();
    ValuePtr v = ToLever(env, item, depth + 1);
    if (lever_value_map_set(out.get(), k.data(), k.size(), v.release()) != 0) {
      throw Napi::Error::New(env, "lever: out of memory");
    }
  }
  return out;
}

}  // namespace

ValuePtr ToLever(Napi::Env env, napi_value value, int depth) {
  if (depth > kMaxDepth) throw Napi::TypeError::New(env, "Value is nested too deeply (is it circular?)");
  napi_valuetype t;
  Check(env, napi_typeof(env, value, &t));
  switch (t) {
    case napi_undefined:
    case napi_null:
      return Must(env, lever_value_new_null());
    case napi_boolean: {
      bool b = false;
      Check(env, napi_get_value_bool(env, value, &b));
      return Must(env, lever_value_new_bool(b ? 1 : 0));
    }
    case napi_number: {
      double d = 0;
      Check(env, napi_get_value_double(env, value, &d));
      if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) <= kMaxSafe && !(d == 0 && std::signbit(d))) {
        return Must(env, lever_value_new_int(static_cast<int64_t>(d)));
      }
      return Must(env, lever_value_new_double(d));
    }
    case napi_bigint: {
      int64_t i = 0;
      bool lossless = false;
      Check(env, napi_get_value_bigint_int64(env, value, &i, &lossless));
      if (lossless) return Must(env, lever_value_new_int(i));
      uint64_t u = 0;
      Check(env, napi_get_value_bigint_uint64(env, value, &u, &lossless));
      if (lossless) return Must(env, lever_value_new_uint(u));
      throw Napi::TypeError::New(env, "BigInt out of the 64-bit range");
    }
    case napi_string:
      return StringToLever(env, value);
    case napi_object:
      return ObjectToLever(env, value, depth);
    default:
      throw Napi::TypeError::New(env, std::string("Invalid JSON value: cannot send a ") +
                                          (t == napi_function ? "function" : t == napi_symbol ? "symbol" : "native handle"));
  }
}

Napi::Value FromLever(Napi::Env env, const lever_value* v, int depth) {
  if (v == nullptr) return env.Undefined();
  switch (lever_value_type(v)) {
    case LEVER_TYPE_NULL:
      return env.Null();
    case LEVER_TYPE_BOOL:
      return Napi::Boolean::New(env, lever_value_bool(v) != 0);
    case LEVER_TYPE_INT: {
      int64_t i = lever_value_int(v);
      if (i > -9007199254740992LL && i < 9007199254740992LL) return Napi::Number::New(env, static_cast<double>(i));
      return Napi::BigInt::New(env, i);
    }
    case LEVER_TYPE_UINT:
      return Napi::BigInt::New(env, lever_value_uint(v));
    case LEVER_TYPE_DOUBLE:
      return Napi::Number::New(env, lever_value_double(v));
    case LEVER_TYPE_STRING: {
      size_t len = 0;
      const char* s = lever_value_string(v, &len);
      return Napi::String::New(env, s ? s : "", len);
    }
    case LEVER_TYPE_BYTES: {
      size_t len = 0;
      const void* p = lever_value_bytes(v, &len);
      return Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(p), len);
    }
    case LEVER_TYPE_ARRAY: {
      size_t n = lever_value_size(v);
      Napi::Array a = Napi::Array::New(env, n);
      for (size_t i = 0; i < n; i++) a.Set(static_cast<uint32_t>(i), FromLever(env, lever_value_at(v, i), depth + 1));
      return a;
    }
    case LEVER_TYPE_MAP: {
      size_t n = lever_value_size(v);
      Napi::Object o = Napi::Object::New(env);
      for (size_t i = 0; i < n; i++) {
        size_t klen = 0;
        const char* k = lever_value_key_at(v, i, &klen);
        Napi::String key = Napi::String::New(env, k ? k : "", klen);
        Napi::Value item = FromLever(env, lever_value_at(v, i), depth + 1);
        if (klen == 9 && std::memcmp(k, "__proto__", 9) == 0) {
          o.DefineProperty(Napi::PropertyDescriptor::Value(key, item, napi_default_jsproperty));
        } else {
          o.Set(key, item);
        }
      }
      return o;
    }
  }
  return env.Null();
}

}  // namespace lever_node
