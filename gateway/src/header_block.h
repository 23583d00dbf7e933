// A header block copied out of nghttp2's callbacks (private, pure: no I/O).
// See relay.md, "Life of a stream" and "Allocation".
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace lever::gateway {

// Headers in arrival order, names and values in one arena.
class HeaderBlock {
 public:
  // Arena and index storage above these is given back by Release (one burst
  // of large header blocks must not pin memory in every pooled stream).
  static constexpr size_t kKeepArenaBytes = 4u << 10;
  static constexpr size_t kKeepHeaders = 64;

  void Clear() {
    arena_.clear();
    refs_.clear();
  }
  // Clear, and give back large storage.
  void Release() {
    if (arena_.capacity() > kKeepArenaBytes) {
      std::string().swap(arena_);
    } else {
      arena_.clear();
    }
    if (refs_.capacity() > kKeepHeaders) {
      std::vector<Ref>().swap(refs_);
    } else {
      refs_.clear();
    }
  }
  bool empty() const { return refs_.empty(); }
  size_t size() const { return refs_.size(); }
  // Bytes of names and values.
  size_t bytes() const { return arena_.size(); }
  // Bytes held (for the pool's accounting and tests).
  size_t capacity() const { return arena_.capacity() + refs_.capacity() * sizeof(Ref); }
  void Add(std::string_view name, std::string_view value) {
    refs_.push_back({arena_.size(), name.size(), arena_.size() + name.size(), value.size()});
    arena_.append(name);
    arena_.append(value);
  }
  // The first value of `name` into *value; false when absent.
  bool Find(std::string_view name, std::string_view* value) const {
    for (const Ref& r : refs_) {
      if (std::string_view(arena_.data() + r.name_off, r.name_len) == name) {
        *value = std::string_view(arena_.data() + r.value_off, r.value_len);
        return true;
      }
    }
    return false;
  }
  // The i-th header (i < size()).
  std::string_view name(size_t i) const { return {arena_.data() + refs_[i].name_off, refs_[i].name_len}; }
  std::string_view value(size_t i) const { return {arena_.data() + refs_[i].value_off, refs_[i].value_len}; }
  // Fills `nv` (cleared first); the pointers are valid until the next Add/Clear.
  void ToNv(std::vector<nghttp2_nv>* nv) const {
    nv->clear();
    AppendNv(nv);
  }
  void AppendNv(std::vector<nghttp2_nv>* nv) const {
    for (const Ref& r : refs_) {
      nv->push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(arena_.data() + r.name_off)),
                               reinterpret_cast<uint8_t*>(const_cast<char*>(arena_.data() + r.value_off)),
                               r.name_len, r.value_len, NGHTTP2_NV_FLAG_NONE});
    }
  }

 private:
  struct Ref {
    size_t name_off, name_len, value_off, value_len;
  };
  std::string arena_;
  std::vector<Ref> refs_;
};

}  // namespace lever::gateway
