#include "grpc_status.h"

namespace lever::gateway {

void PercentEncodeGrpcMessage(std::string_view message, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char ch : message) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c <= 0x7E && c != '%') {
      out->push_back(ch);
    } else {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 0xF]);
    }
  }
}

}  // namespace lever::gateway
