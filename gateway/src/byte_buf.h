// A FIFO of bytes for relayed DATA (private, pure: no I/O). See relay.md,
// "Allocation".
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace lever::gateway {

// Keeps its storage between uses (a pooled stream reuses it), compacts when
// more than half of it is consumed, and gives back large storage on Release.
class ByteBuf {
 public:
  // Storage above this is given back by Release (a pooled stream must not
  // pin a window's worth).
  static constexpr size_t kKeepBytes = 64u << 10;

  size_t size() const { return data_.size() - head_; }
  bool empty() const { return head_ == data_.size(); }
  size_t capacity() const { return data_.capacity(); }
  void Append(const uint8_t* p, size_t n) {
    if (head_ != 0 && head_ == data_.size()) Clear();
    if (head_ > kKeepBytes && head_ > data_.size() / 2) {
      data_.erase(data_.begin(), data_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    data_.insert(data_.end(), p, p + n);
  }
  // Moves up to `n` bytes to `out`; returns how many.
  size_t Read(uint8_t* out, size_t n) {
    n = std::min(n, size());
    if (n != 0) std::memcpy(out, data_.data() + head_, n);
    head_ += n;
    if (head_ == data_.size()) Clear();
    return n;
  }
  void Clear() {
    data_.clear();
    head_ = 0;
  }
  void Release() {
    Clear();
    if (data_.capacity() > kKeepBytes) std::vector<uint8_t>().swap(data_);
  }

 private:
  std::vector<uint8_t> data_;
  size_t head_ = 0;
};

}  // namespace lever::gateway
