// The status page's files (gateway/status/), embedded at build time by
// gateway/status/embed.cmake into status_assets.cc in the build tree.
#pragma once

#include <cstddef>

namespace lever::gateway::pages {

struct Asset {
  const char* path;  // the URL path it is served at
  const char* content_type;
  const unsigned char* data;
  size_t size;
};

extern const Asset kAssets[];
extern const size_t kAssetCount;

}  // namespace lever::gateway::pages
