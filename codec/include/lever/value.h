// lever::Value: the dynamic value every Lever call carries (arguments, results,
// errors, stream messages). It is the common model of the three encodings the
// codec speaks: msgpack (msgpack.h), JSON text (json.h) and the proto-JSON
// message of the original wire protocol (proto_json.h).
//
// Integer canonical form: an integer that fits int64 is always stored as kInt;
// only values above INT64_MAX are kUint. So Value(uint64_t{5}) == Value(5), and
// equality never has to compare across the two integer types.
//
// Maps keep insertion order (JSON objects and msgpack maps are sequences of
// pairs on the wire). Decoders apply "last duplicate key wins" (reference
// §2.3) so a map never holds the same key twice; Map::Set does the same.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace lever {

class Value;

// Raw bytes, distinct from text. Stored in a std::string so that the bytes move
// into and out of protobuf `bytes` fields without a copy.
class Bytes {
 public:
  Bytes() = default;
  explicit Bytes(std::string data) : data_(std::move(data)) {}
  Bytes(const void* data, size_t size) : data_(static_cast<const char*>(data), size) {}

  const std::string& data() const& { return data_; }
  std::string&& data() && { return std::move(data_); }
  std::string_view view() const { return data_; }
  size_t size() const { return data_.size(); }
  bool empty() const { return data_.empty(); }
  friend bool operator==(const Bytes&, const Bytes&) = default;

 private:
  std::string data_;
};

using Array = std::vector<Value>;

// An ordered map with string keys and unique keys. (Its inline members are
// defined after Value, which it holds, is complete.)
class Map {
 public:
  using Entry = std::pair<std::string, Value>;
  using const_iterator = std::vector<Entry>::const_iterator;
  using iterator = std::vector<Entry>::iterator;

  Map() = default;
  Map(std::initializer_list<Entry> entries);

  // Inserts or, when the key exists, replaces in place (keeps the first
  // position, takes the last value: JavaScript's and Go's behaviour).
  void Set(std::string key, Value value);
  // Appends without checking for duplicates: for decoders that already know
  // the key is new, and for building maps in bulk.
  void AppendUnchecked(std::string key, Value value);
  // Removes duplicate keys in O(n): each key keeps its first position and its
  // last value. Decoders append with AppendUnchecked and call this once.
  void DeduplicateKeys();
  const Value* Find(std::string_view key) const;
  Value* Find(std::string_view key);
  bool Erase(std::string_view key);

  size_t size() const;
  bool empty() const;
  void reserve(size_t n);
  const_iterator begin() const;
  const_iterator end() const;
  iterator begin();
  iterator end();
  const std::vector<Entry>& entries() const { return entries_; }

  // Order-sensitive equality: two maps are equal when they hold the same keys
  // in the same order with equal values.
  friend bool operator==(const Map& a, const Map& b);

 private:
  std::vector<Entry> entries_;
};

class Value {
 public:
  enum class Type : uint8_t { kNull, kBool, kInt, kUint, kDouble, kString, kBytes, kArray, kMap };

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : v_(b) {}
  Value(int i) : v_(int64_t{i}) {}
  Value(long i) : v_(int64_t{i}) {}
  Value(long long i) : v_(int64_t{i}) {}
  Value(unsigned u) : v_(int64_t{u}) {}
  Value(unsigned long u) { SetUnsigned(u); }
  Value(unsigned long long u) { SetUnsigned(u); }
  Value(double d) : v_(d) {}
  Value(float f) : v_(double{f}) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(Bytes b) : v_(std::move(b)) {}
  Value(Array a) : v_(std::move(a)) {}
  Value(Map m) : v_(std::move(m)) {}

  static Value FromBytes(std::string data) { return Value(Bytes(std::move(data))); }

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_int() const { return type() == Type::kInt; }
  bool is_uint() const { return type() == Type::kUint; }
  bool is_integer() const { return is_int() || is_uint(); }
  bool is_double() const { return type() == Type::kDouble; }
  bool is_number() const { return is_integer() || is_double(); }
  bool is_string() const { return type() == Type::kString; }
  bool is_bytes() const { return type() == Type::kBytes; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_map() const { return type() == Type::kMap; }

  // Accessors: the caller checks the type first (they assert in debug builds
  // through std::get's exception, which the codec never lets escape).
  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  uint64_t as_uint() const { return std::get<uint64_t>(v_); }
  double as_double() const { return std::get<double>(v_); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  std::string& as_string() { return std::get<std::string>(v_); }
  const Bytes& as_bytes() const { return std::get<Bytes>(v_); }
  Bytes& as_bytes() { return std::get<Bytes>(v_); }
  const Array& as_array() const { return std::get<Array>(v_); }
  Array& as_array() { return std::get<Array>(v_); }
  const Map& as_map() const { return std::get<Map>(v_); }
  Map& as_map() { return std::get<Map>(v_); }

  // Any number as a double (integers convert with the usual rounding).
  double ToDouble() const;

  // Deep structural equality. Numbers compare by type then value, except that
  // kInt and kUint never overlap (see the canonical form above). NaN equals
  // NaN here so that round-trip tests can compare values holding it.
  friend bool operator==(const Value& a, const Value& b);

 private:
  void SetUnsigned(uint64_t u) {
    if (u <= static_cast<uint64_t>(INT64_MAX)) {
      v_ = static_cast<int64_t>(u);
    } else {
      v_ = u;
    }
  }

  std::variant<std::monostate, bool, int64_t, uint64_t, double, std::string, Bytes, Array, Map> v_;
};

inline size_t Map::size() const { return entries_.size(); }
inline bool Map::empty() const { return entries_.empty(); }
inline void Map::reserve(size_t n) { entries_.reserve(n); }
inline Map::const_iterator Map::begin() const { return entries_.begin(); }
inline Map::const_iterator Map::end() const { return entries_.end(); }
inline Map::iterator Map::begin() { return entries_.begin(); }
inline Map::iterator Map::end() { return entries_.end(); }

// A short human-readable type name ("null", "int", "map", ...), for errors.
std::string_view TypeName(Value::Type t);

}  // namespace lever
