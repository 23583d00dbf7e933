#include "config_file.h"

#include <cstdint>
#include <cstdio>
#include <map>
#include <sstream>

namespace lever::leverd {
namespace {

[[noreturn]] void Fail(size_t line, const std::string& what) {
  throw CLI::ConfigError("config file line " + std::to_string(line) + ": " + what);
}

bool IsSpace(char c) { return c == ' ' || c == '\t'; }
bool IsBareKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

void AppendUtf8(uint32_t cp, std::string* out, size_t line) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) Fail(line, "\\u escape is not a Unicode scalar value");
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Reads a quoted string starting at s[*i] (the quote); leaves *i after the
// closing quote.
std::string ReadQuoted(const std::string& s, size_t* i, size_t line) {
  char quote = s[*i];
  if (s.compare(*i, 3, std::string(3, quote)) == 0) Fail(line, "multi-line strings are not supported");
  std::string out;
  for (size_t j = *i + 1; j < s.size(); ++j) {
    char c = s[j];
    if (c == quote) {
      *i = j + 1;
      return out;
    }
    if (quote == '\'' || c != '\\') {
      out.push_back(c);
      continue;
    }
    if (++j >= s.size()) break;
    switch (s[j]) {
      case '"': out.push_back('"'); break;
      case '\\': out.push_back('\\'); break;
      case 'b': out.push_back('\b'); break;
      case 't': out.push_back('\t'); break;
      case 'n': out.push_back('\n'); break;
      case 'f': out.push_back('\f'); break;
      case 'r': out.push_back('\r'); break;
      case 'u':
      case 'U': {
        size_t n = s[j] == 'u' ? 4 : 8;
        if (j + n >= s.size()) Fail(line, "short \\u escape");
        uint32_t cp = 0;
        for (size_t k = 1; k <= n; ++k) {
          char h = s[j + k];
          int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
          if (v < 0) Fail(line, "bad \\u escape");
          cp = cp * 16 + static_cast<uint32_t>(v);
        }
        AppendUtf8(cp, &out, line);
        j += n;
        break;
      }
      default:
        Fail(line, std::string("unknown escape \\") + s[j] + " (write \\\\ for a backslash, or use 'single quotes')");
    }
  }
  Fail(line, "unterminated string");
}

// TOML basic string of `v`.
std::string Quote(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  return out + "\"";
}

}  // namespace

std::vector<CLI::ConfigItem> ConfigFile::from_config(std::istream& input) const {
  std::vector<CLI::ConfigItem> items;
  std::map<std::string, size_t> seen;  // key → line
  std::string s;
  size_t total = 0;
  for (size_t line = 1; std::getline(input, s); ++line) {
    total += s.size() + 1;
    if (total > kMaxBytes) Fail(line, "the file is larger than 1 MiB");
    if (s.size() > kMaxLineBytes) Fail(line, "line longer than 64 KiB");
    if (!s.empty() && s.back() == '\r') s.pop_back();
    size_t i = 0;
    while (i < s.size() && IsSpace(s[i])) ++i;
    if (i == s.size() || s[i] == '#') continue;
    if (s[i] == '[') Fail(line, "sections are not supported: every leverd flag is a top-level key");

    std::string key;
    if (s[i] == '"' || s[i] == '\'') {
      key = ReadQuoted(s, &i, line);
    } else {
      while (i < s.size() && IsBareKeyChar(s[i])) key.push_back(s[i++]);
    }
    if (key.empty()) Fail(line, "expected `flag-name = value`");
    for (char& c : key) {
      if (c == '_') c = '-';
    }
    while (i < s.size() && IsSpace(s[i])) ++i;
    if (i == s.size() || s[i] != '=') Fail(line, "expected `=` after " + key);
    ++i;
    while (i < s.size() && IsSpace(s[i])) ++i;
    if (i == s.size() || s[i] == '#') Fail(line, key + " has no value (use \"\" for an empty string)");

    std::string value;
    if (s[i] == '"' || s[i] == '\'') {
      value = ReadQuoted(s, &i, line);
    } else if (s[i] == '[' || s[i] == '{') {
      Fail(line, key + ": arrays and tables are not supported (no leverd flag takes a list)");
    } else {
      while (i < s.size() && !IsSpace(s[i]) && s[i] != '#') value.push_back(s[i++]);
    }
    while (i < s.size() && IsSpace(s[i])) ++i;
    if (i < s.size() && s[i] != '#') Fail(line, "unexpected text after the value of " + key + " (quote a value with spaces)");

    if (app_ != nullptr) {
      const CLI::Option* opt = app_->get_option_no_throw("--" + key);
      if (opt == nullptr) Fail(line, "unknown flag " + key + " (leverd --help lists them)");
      if (!opt->get_configurable()) Fail(line, "--" + key + " cannot be set in a config file");
    }
    if (auto [it, fresh] = seen.emplace(key, line); !fresh) {
      Fail(line, key + " is set twice (first on line " + std::to_string(it->second) + ")");
    }
    CLI::ConfigItem item;
    item.name = key;
    item.inputs = {value};
    items.push_back(std::move(item));
  }
  return items;
}

std::string ConfigFile::to_config(const CLI::App* app, bool default_also, bool write_description,
                                  std::string prefix) const {
  std::ostringstream out;
  for (const CLI::Option* opt : app->get_options({})) {
    if (!opt->get_configurable() || opt->get_positional()) continue;
    std::string value;
    if (opt->count() > 0) {
      value = opt->results().back();
    } else if (default_also) {
      value = opt->get_default_str();
    } else {
      continue;
    }
    bool bare = opt->get_type_name() != "TEXT" && !value.empty() &&
                value.find_first_not_of("0123456789.-+eE") == std::string::npos;
    if (write_description && !opt->get_description().empty()) out << "\n# " << opt->get_description() << "\n";
    out << prefix << opt->get_single_name() << " = " << (bare ? value : Quote(value)) << "\n";
  }
  return out.str();
}

}  // namespace lever::leverd
