// msgpack encoding of lever::Value (on msgpack-c).
//
// Mapping: null↔nil, bool↔bool, kInt/kUint↔the smallest int format,
// double↔float64 (float32 is decoded, never produced), string↔str, bytes↔bin,
// array↔array, map↔map with str keys.
//
// Decoding policies:
//  - str must be valid UTF-8 (INVALID_ARGUMENT otherwise): Lever strings are
//    text and cross into JSON and protobuf, which require it. Use bin for bytes.
//  - map keys must be str; a non-string key is INVALID_ARGUMENT.
//  - duplicate keys: the last value wins, at the first key's position.
//  - ext types (including the timestamp ext -1) have no Value and are
//    INVALID_ARGUMENT ("msgpack ext type N is not supported").
//  - exactly one value must fill the input; trailing bytes are INVALID_ARGUMENT.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include "lever/limits.h"
#include "lever/status.h"
#include "lever/value.h"

namespace lever {

// Appends the msgpack encoding of `v` to `*out`. Never fails.
void EncodeMsgpack(const Value& v, std::string* out);
std::string EncodeMsgpack(const Value& v);

// Decodes exactly one msgpack value filling `in`.
Status DecodeMsgpack(std::string_view in, Value* out, const DecodeLimits& limits = {});

// A read-only view of a msgpack buffer that decodes nothing up front: strings
// and bytes are string_views into the buffer. Cheap to copy (two pointers).
// Create it with MsgpackView::Parse, which validates the whole buffer against
// the limits (and the policies above) in one pass without allocating, so every
// accessor afterwards is safe.
class MsgpackView {
 public:
  // An empty view reads as null.
  MsgpackView() : p_(kNil), end_(kNil + 1) {}
  static Status Parse(std::string_view in, MsgpackView* out, const DecodeLimits& limits = {});

  Value::Type type() const;
  bool is_null() const { return type() == Value::Type::kNull; }
  bool as_bool() const;
  int64_t as_int() const;    // kInt only
  uint64_t as_uint() const;  // kUint only
  double as_double() const;
  std::string_view as_string() const;  // kString
  std::string_view as_bytes() const;   // kBytes
  // Number of elements of an array or entries of a map; 0 for scalars.
  size_t size() const;
  // The i-th element of an array (i < size()); O(i) skips.
  MsgpackView at(size_t i) const;
  // The value of `key` in a map (last one wins); false if absent.
  bool Find(std::string_view key, MsgpackView* value) const;
  // Calls fn(MsgpackView) for each array element, or fn(key, value) for maps.
  template <typename Fn>
  void ForEach(Fn&& fn) const;
  // The whole encoded value this view spans.
  std::string_view encoded() const { return {p_, static_cast<size_t>(end_ - p_)}; }
  // Materializes the value.
  Value ToValue() const;

 private:
  MsgpackView(const char* p, const char* end) : p_(p), end_(end) {}
  friend class MsgpackViewAccess;
  static constexpr char kNil[] = "\xc0";
  const char* p_;
  const char* end_;  // end of this value's encoding
};

namespace internal {
void ForEachArray(const char* p, void (*fn)(void*, MsgpackView), void* ctx);
void ForEachMap(const char* p, void (*fn)(void*, std::string_view, MsgpackView), void* ctx);
}  // namespace internal

template <typename Fn>
void MsgpackView::ForEach(Fn&& fn) const {
  if constexpr (std::is_invocable_v<Fn, MsgpackView>) {
    if (type() != Value::Type::kArray) return;
    internal::ForEachArray(
        p_, [](void* ctx, MsgpackView v) { (*static_cast<std::remove_reference_t<Fn>*>(ctx))(v); }, &fn);
  } else {
    if (type() != Value::Type::kMap) return;
    internal::ForEachMap(
        p_,
        [](void* ctx, std::string_view k, MsgpackView v) { (*static_cast<std::remove_reference_t<Fn>*>(ctx))(k, v); },
        &fn);
  }
}

}  // namespace lever
