// Packs a code directory into the gzip tar that `lever deploy` uploads
// (reference §5.3): entry names relative to the directory, directories with a
// trailing '/', symlinks stored as links, the root itself skipped.
#pragma once

#include <string>

#include "lever/status.h"

namespace lever::cli {

// Writes the archive of `dir` to `*out`. Fails (RESOURCE_EXHAUSTED) once the
// compressed archive would exceed `max_bytes`.
Status PackDirectory(const std::string& dir, size_t max_bytes, std::string* out);

}  // namespace lever::cli
