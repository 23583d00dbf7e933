// Test helpers shared by the codec tests.
#pragma once

#include <string>
#include <string_view>

namespace lever::testing {

// "0a 00", "0a-00" or "0a00" to bytes.
inline std::string Hex(std::string_view h) {
  std::string digits;
  for (char c : h) {
    if (c != ' ' && c != '-') digits.push_back(c);
  }
  std::string out;
  for (size_t i = 0; i + 1 < digits.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  }
  return out;
}

}  // namespace lever::testing

#include <ostream>

#include "lever/json.h"
#include "lever/value.h"

namespace lever {
// GoogleTest prints values with this (found by argument-dependent lookup).
inline void PrintTo(const Value& v, std::ostream* os) {
  JsonWriteOptions o;
  o.nonfinite_as_null = true;
  o.bytes_as_base64 = true;
  std::string s;
  (void)WriteJson(v, &s, o);
  *os << TypeName(v.type()) << " " << s;
}
}  // namespace lever
