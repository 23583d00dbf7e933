#include "raw_args.h"

#include <cctype>

namespace lever::cli {
namespace {

// "-x", "--name", "--name=value"; not "-", "--" or a negative number (a JSON
// argument such as -1 or -2.5e3 is a positional, as CLI11 also reads it).
bool LooksLikeFlag(const std::string& t) {
  if (t.size() < 2 || t[0] != '-' || t == "--") return false;
  return !std::isdigit(static_cast<unsigned char>(t[1]));
}

// The option `t` names in `app` or, as CLI11's fallthrough does, in a parent.
// Sets *attached when the value is part of the token (--env=x, -Hx).
const CLI::Option* FindOption(const CLI::App* app, const std::string& t, bool* attached) {
  std::string name = t;
  *attached = false;
  if (t.rfind("--", 0) == 0) {
    size_t eq = t.find('=');
    if (eq != std::string::npos) {
      name = t.substr(0, eq);
      *attached = true;
    }
  } else if (t.size() > 2) {
    name = t.substr(0, 2);  // -Hvalue
    *attached = true;
  }
  for (const CLI::App* a = app; a != nullptr; a = a->get_parent()) {
    if (const CLI::Option* o = a->get_option_no_throw(name); o != nullptr && !o->get_positional()) return o;
  }
  return nullptr;
}

const CLI::App* FindSubcommand(const CLI::App* app, const std::string& t) {
  for (const CLI::App* sub : app->get_subcommands([](const CLI::App*) { return true; })) {
    if (!sub->get_name().empty() && sub->check_name(t)) return sub;
  }
  return nullptr;
}

}  // namespace

RawArgs TakeRawArgs(const CLI::App& app, const std::vector<RawSubcommand>& subcommands, int argc,
                    const char* const* argv) {
  RawArgs out;
  if (argc > 0) out.argv.emplace_back(argv[0]);
  const CLI::App* current = &app;
  const RawSubcommand* raw = nullptr;
  size_t positionals = 0;
  bool only_positionals = false;  // after `--`
  for (int i = 1; i < argc; ++i) {
    std::string t = argv[i];
    if (!only_positionals && t == "--") {
      only_positionals = true;
      if (raw == nullptr) out.argv.push_back(t);  // CLI11's own `--` handling
      continue;
    }
    if (!only_positionals && LooksLikeFlag(t)) {
      bool attached = false;
      const CLI::Option* o = FindOption(current, t, &attached);
      if (o == nullptr && raw != nullptr && raw->unknown_flags_are_raw) {
        out.raw.push_back(t);
        continue;
      }
      out.argv.push_back(t);  // a known flag, or an unknown one CLI11 will refuse
      if (o != nullptr && !attached && o->get_items_expected_max() > 0 && i + 1 < argc) {
        out.argv.emplace_back(argv[++i]);  // its value, whatever it looks like
      }
      continue;
    }
    if (raw == nullptr && !only_positionals) {
      if (const CLI::App* sub = FindSubcommand(current, t)) {
        current = sub;
        for (const RawSubcommand& r : subcommands) {
          if (r.app == sub) raw = &r;
        }
        if (raw != nullptr) out.from = raw->app;
        out.argv.push_back(t);
        continue;
      }
    }
    if (raw != nullptr && positionals >= raw->named) {
      out.raw.push_back(t);
      continue;
    }
    ++positionals;
    out.argv.push_back(t);
  }
  return out;
}

}  // namespace lever::cli
