#pragma once

#include <string_view>

#include "lever/host/registry.h"

namespace lever::host {

// `path`: the SQLite file (":memory:" for tests); empty: <data_dir>/lever.db.
Status OpenEmbeddedRegistry(std::string_view path, std::string_view data_dir, RegistryPtr* out);

}  // namespace lever::host
