#include "lever/value.h"

#include <cmath>
#include <unordered_map>

namespace lever {

Map::Map(std::initializer_list<Entry> entries) {
  entries_.reserve(entries.size());
  for (const Entry& e : entries) Set(e.first, e.second);
}

void Map::Set(std::string key, Value value) {
  if (Value* existing = Find(key)) {
    *existing = std::move(value);
    return;
  }
  entries_.emplace_back(std::move(key), std::move(value));
}

void Map::AppendUnchecked(std::string key, Value value) {
  entries_.emplace_back(std::move(key), std::move(value));
}

void Map::DeduplicateKeys() {
  size_t n = entries_.size();
  if (n < 2) return;
  std::vector<Entry> kept;
  if (n <= 8) {
    for (Entry& e : entries_) {
      Entry* dup = nullptr;
      for (Entry& k : kept) {
        if (k.first == e.first) dup = &k;
      }
      if (dup) {
        dup->second = std::move(e.second);
      } else {
        kept.push_back(std::move(e));
      }
    }
  } else {
    std::unordered_map<std::string_view, size_t> index;
    index.reserve(n);
    bool any = false;
    for (size_t i = 0; i < n && !any; ++i) any = !index.emplace(entries_[i].first, i).second;
    if (!any) return;  // the common case: no duplicates, nothing moves
    index.clear();
    std::vector<size_t> slot(n);  // entry i goes to kept[slot[i]]
    size_t unique = 0;
    for (size_t i = 0; i < n; ++i) {
      auto [it, inserted] = index.emplace(entries_[i].first, unique);
      slot[i] = it->second;
      if (inserted) ++unique;
    }
    kept.resize(unique);
    for (size_t i = 0; i < n; ++i) {
      Entry& dst = kept[slot[i]];
      if (dst.first.empty() && !entries_[i].first.empty()) dst.first = entries_[i].first;
      dst.second = std::move(entries_[i].second);
    }
  }
  entries_ = std::move(kept);
}

const Value* Map::Find(std::string_view key) const {
  for (const Entry& e : entries_) {
    if (e.first == key) return &e.second;
  }
  return nullptr;
}

Value* Map::Find(std::string_view key) {
  return const_cast<Value*>(static_cast<const Map*>(this)->Find(key));
}

bool Map::Erase(std::string_view key) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first == key) {
      entries_.erase(it);
      return true;
    }
  }
  return false;
}

bool operator==(const Map& a, const Map& b) { return a.entries_ == b.entries_; }

double Value::ToDouble() const {
  switch (type()) {
    case Type::kInt: return static_cast<double>(as_int());
    case Type::kUint: return static_cast<double>(as_uint());
    case Type::kDouble: return as_double();
    default: return 0;
  }
}

bool operator==(const Value& a, const Value& b) {
  if (a.type() != b.type()) return false;
  if (a.is_double()) {
    double x = a.as_double(), y = b.as_double();
    if (std::isnan(x) && std::isnan(y)) return true;
    // Distinguish 0.0 from -0.0: a codec that loses the sign is wrong.
    return x == y && std::signbit(x) == std::signbit(y);
  }
  return a.v_ == b.v_;
}

std::string_view TypeName(Value::Type t) {
  switch (t) {
    case Value::Type::kNull: return "null";
    case Value::Type::kBool: return "bool";
    case Value::Type::kInt: return "int";
    case Value::Type::kUint: return "uint";
    case Value::Type::kDouble: return "double";
    case Value::Type::kString: return "string";
    case Value::Type::kBytes: return "bytes";
    case Value::Type::kArray: return "array";
    case Value::Type::kMap: return "map";
  }
  return "unknown";
}

}  // namespace lever
