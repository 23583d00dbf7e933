#include "lever/host/lever_json.h"

#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

namespace lever::host {
namespace {

using Json = nlohmann::ordered_json;

constexpr size_t kMaxLeverJsonBytes = 1 << 20;

Status ReadError(std::string why) {
  return InvalidArgument("Error trying to read lever.json: " + std::move(why));
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

Status GetString(const Json& v, std::string_view key, std::string* out) {
  if (!v.is_string()) return ReadError(std::string(key) + " must be a string");
  *out = v.get<std::string>();
  return Status::Ok();
}

Status GetBool(const Json& v, std::string_view key, bool* out) {
  if (!v.is_boolean()) return ReadError(std::string(key) + " must be true or false");
  *out = v.get<bool>();
  return Status::Ok();
}

Status GetInt(const Json& v, std::string_view key, int64_t* out) {
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
    return Status::Ok();
  }
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return ReadError(std::string(key) + " is too large");
    *out = static_cast<int64_t>(u);
    return Status::Ok();
  }
  return ReadError(std::string(key) + " must be an integer");
}

Status GetDouble(const Json& v, std::string_view key, double* out) {
  if (!v.is_number()) return ReadError(std::string(key) + " must be a number");
  *out = v.get<double>();
  if (!std::isfinite(*out)) return ReadError(std::string(key) + " must be finite");
  return Status::Ok();
}

}  // namespace

bool IsUrlSafeName(std::string_view name) {
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '~';
    if (!ok) return false;
  }
  return true;
}

bool IsValidEnvName(std::string_view name) {
  return name.size() >= 3 && name.size() <= 255 && IsUrlSafeName(name);
}

bool IsValidServiceName(std::string_view name) {
  return name.size() >= 3 && name.size() <= 255 && IsUrlSafeName(name);
}

Status ParseLeverConfig(std::string_view text, LeverConfig* out) {
  if (text.size() > kMaxLeverJsonBytes) return ReadError("file larger than 1 MiB");
  // operator>> reads one JSON value and leaves the rest of the stream alone,
  // as Go's json.Decoder does: trailing data is ignored.
  Json doc;
  try {
    std::istringstream in{std::string(text)};
    in >> doc;
  } catch (const Json::exception& e) {
    return ReadError(e.what());
  }
  if (!doc.is_object()) return ReadError("not a JSON object");

  LeverConfig config;
  std::vector<std::string> entry;
  std::string js_entry;
  std::string py_entry;
  double max_load = 0;
  int64_t ram = 0;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& key = it.key();
    const Json& v = it.value();
    if (v.is_null()) continue;
    Status s;
    if (EqualsIgnoreCase(key, "name")) {
      s = GetString(v, "name", &config.name);
    } else if (EqualsIgnoreCase(key, "description")) {
      s = GetString(v, "description", &config.description);
    } else if (EqualsIgnoreCase(key, "entry")) {
      if (!v.is_array()) return ReadError("entry must be an array of strings");
      entry.clear();
      for (const Json& arg : v) {
        if (!arg.is_string()) return ReadError("entry must be an array of strings");
        entry.push_back(arg.get<std::string>());
      }
    } else if (EqualsIgnoreCase(key, "jsEntry")) {
      s = GetString(v, "jsEntry", &js_entry);
    } else if (EqualsIgnoreCase(key, "pyEntry")) {
      s = GetString(v, "pyEntry", &py_entry);
    } else if (EqualsIgnoreCase(key, "private")) {
      s = GetBool(v, "private", &config.is_private);
    } else if (EqualsIgnoreCase(key, "maxInstanceLoad")) {
      s = GetDouble(v, "maxInstanceLoad", &max_load);
    } else if (EqualsIgnoreCase(key, "minInstances")) {
      s = GetInt(v, "minInstances", &config.min_instances);
    } else if (EqualsIgnoreCase(key, "ram")) {
      s = GetInt(v, "ram", &ram);
    } else if (EqualsIgnoreCase(key, "runtime")) {
      s = GetString(v, "runtime", &config.runtime);
      if (s.ok() && config.runtime != "process" && config.runtime != "docker") {
        return ReadError("runtime must be \"process\" or \"docker\"");
      }
    }  // "config" and unknown keys: ignored.
    if (!s.ok()) return s;
  }

  if (!IsValidServiceName(config.name)) return InvalidArgument("Invalid service name");
  if (int(!entry.empty()) + int(!js_entry.empty()) + int(!py_entry.empty()) > 1) {
    return InvalidArgument("More than one type of entry point specified");
  }
  if (entry.empty() && js_entry.empty() && py_entry.empty()) entry = {"./serve"};
  config.entry = std::move(entry);
  config.js_entry = std::move(js_entry);
  config.py_entry = std::move(py_entry);
  config.max_instance_load = max_load > 0 ? max_load : 10.0;
  if (config.min_instances < 0) config.min_instances = 0;
  config.ram_mb = ram > 0 ? ram : 50;
  *out = std::move(config);
  return Status::Ok();
}

}  // namespace lever::host
