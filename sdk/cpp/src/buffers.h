// Moving bytes between std::string and grpc::ByteBuffer (private).
#pragma once

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <string>
#include <string_view>
#include <vector>

namespace lever::internal {

// Wraps `data` in a ByteBuffer. Small payloads are copied; large ones are
// moved into the slice without a copy.
inline grpc::ByteBuffer ToByteBuffer(std::string&& data) {
  if (data.size() < 4096) {
    grpc::Slice slice(data.data(), data.size());
    return grpc::ByteBuffer(&slice, 1);
  }
  auto* owned = new std::string(std::move(data));
  grpc::Slice slice(owned->data(), owned->size(), [](void* p) { delete static_cast<std::string*>(p); }, owned);
  return grpc::ByteBuffer(&slice, 1);
}

// An empty (zero-length) message: the streaming handshake's server frame.
inline grpc::ByteBuffer EmptyByteBuffer() {
  grpc::Slice slice;
  return grpc::ByteBuffer(&slice, 1);
}

// A contiguous view of a ByteBuffer's bytes; `storage` holds them when the
// buffer has several slices.
class FlatBytes {
 public:
  explicit FlatBytes(const grpc::ByteBuffer& bb) {
    bb.Dump(&slices_).IgnoreError();
    if (slices_.size() == 1) {
      view_ = std::string_view(reinterpret_cast<const char*>(slices_[0].begin()), slices_[0].size());
    } else {
      storage_.reserve(bb.Length());
      for (const grpc::Slice& s : slices_) storage_.append(reinterpret_cast<const char*>(s.begin()), s.size());
      view_ = storage_;
    }
  }
  std::string_view view() const { return view_; }

 private:
  std::vector<grpc::Slice> slices_;
  std::string storage_;
  std::string_view view_;
};

}  // namespace lever::internal
