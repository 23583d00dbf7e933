// The data dir leverd uses by default, and so where `lever` looks for the
// admin token (docs/cli.md): $LEVER_DATA_DIR, else systemd's StateDirectory=
// ($STATE_DIRECTORY, the package's unit: /var/lib/lever), else for root
// /var/lib/lever (a root leverd runs instances as another user, who must be
// able to pass through the data dir's parents, and /root is 0700), else
// $XDG_DATA_HOME/lever, else ~/.lever, else /var/lib/lever.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace lever::cli {

inline std::string DefaultDataDir() {
  if (const char* d = std::getenv("LEVER_DATA_DIR"); d && *d) return d;
  if (const char* s = std::getenv("STATE_DIRECTORY"); s && *s) return std::string(s).substr(0, std::string(s).find(':'));
  if (geteuid() == 0) return "/var/lib/lever";
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return std::string(x) + "/lever";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.lever";
  return "/var/lib/lever";
}

}  // namespace lever::cli
