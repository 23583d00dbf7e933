// Conversions between JS values and lever_value trees (lever.h).
//
// JS -> Lever (ToLever): null/undefined -> null; booleans; numbers that are
// integers within +-2^53 -> int, other numbers -> double; BigInt -> int (or
// uint above INT64_MAX; out of 64-bit range is a TypeError); strings; Buffer,
// any TypedArray/DataView (its bytes) and ArrayBuffer -> bytes; arrays;
// objects with a toJSON method (Date) -> what toJSON returns; other objects ->
// map of their own enumerable string keys, skipping undefined, functions and
// symbols (JSON.stringify's rule); undefined in an array -> null. A function
// or symbol elsewhere (an argument, an array element), or nesting deeper than
// kMaxDepth (a cycle), is a TypeError.
//
// Lever -> JS (FromLever): ints within +-(2^53-1) -> number, larger ints and
// every uint -> BigInt; doubles -> number; bytes -> Buffer (a copy); maps ->
// plain objects (a "__proto__" key becomes an own property).
#pragma once

#include <napi.h>

#include <memory>

#include "lever.h"

namespace lever_node {

constexpr int kMaxDepth = 100;

struct ValueDeleter {
  void operator()(lever_value* v) const { lever_value_free(v); }
};
using ValuePtr = std::unique_ptr<lever_value, ValueDeleter>;

// Throws Napi::TypeError on values that cannot be sent.
ValuePtr ToLever(Napi::Env env, napi_value value, int depth = 0);
// `v` NULL gives undefined.
Napi::Value FromLever(Napi::Env env, const lever_value* v, int depth = 0);

}  // namespace lever_node
