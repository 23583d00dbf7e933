// JSON text for lever::Value.
//
// Parsing is done by simdjson (Debian libsimdjson-dev): it validates UTF-8 and
// the grammar in one SIMD pass, is the fastest well-kept C++ JSON parser, and
// its DOM gives exact int64/uint64/double distinctions; the writer is our own
// (a straight append into a std::string with std::to_chars for numbers).
//
// Policies:
//  - integers that fit int64 are kInt, above INT64_MAX up to UINT64_MAX kUint;
//    larger integers are INVALID_ARGUMENT ("number out of range"), never
//    silently rounded. Numbers with a fraction or exponent are kDouble.
//  - duplicate object keys: the last value wins at the first key's position.
//  - input must be valid UTF-8 (simdjson checks); the writer checks strings
//    too and fails with INVALID_ARGUMENT on invalid UTF-8.
//  - NaN and ±Inf have no JSON form: the writer fails with INVALID_ARGUMENT
//    unless JsonWriteOptions::nonfinite_as_null is set (what JavaScript does).
//  - bytes have no JSON form: the writer fails with INVALID_ARGUMENT unless
//    bytes_as_base64 is set.
//  - doubles are written in the shortest form that reads back to the same
//    double, always with a '.' or exponent so they read back as doubles.
#pragma once

#include <string>
#include <string_view>

#include "lever/limits.h"
#include "lever/status.h"
#include "lever/value.h"

namespace lever {

struct JsonWriteOptions {
  bool nonfinite_as_null = false;
  bool bytes_as_base64 = false;
  // Indent with this many spaces per level and put each element on its own
  // line; 0 writes compact JSON.
  int indent = 0;
};

Status ParseJson(std::string_view text, Value* out, const DecodeLimits& limits = {});
// Appends the JSON text of `v` to `*out`. On error `*out` may hold a prefix.
Status WriteJson(const Value& v, std::string* out, const JsonWriteOptions& options = {});

}  // namespace lever
