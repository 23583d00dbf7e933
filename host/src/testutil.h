// Test helpers for host/: temp dirs, tarballs built with libarchive's
// writer, tree listings, condition waits.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <set>
#include <string>

#include "lever/host/registry.h"

struct archive;

namespace lever::host::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Builds a gzip-compressed tar in memory.
class TarBuilder {
 public:
  TarBuilder();
  ~TarBuilder();
  TarBuilder& File(const std::string& name, const std::string& content, mode_t perm = 0644);
  TarBuilder& Dir(const std::string& name);
  TarBuilder& Symlink(const std::string& name, const std::string& target);
  TarBuilder& Hardlink(const std::string& name, const std::string& target);
  TarBuilder& Special(const std::string& name, mode_t type);  // AE_IFIFO, AE_IFCHR, ...
  // Finishes the archive and returns its bytes.
  std::string Finish();

 private:
  struct archive* a_;
  std::string out_;
};

// Every path under `root` (relative, '/'-separated, dirs included), sorted.
std::set<std::string> ListTree(const std::string& root);

// Polls `cond` (cheap) until true or the timeout: true if it became true.
// Uses short yields, never a fixed sleep.
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout = std::chrono::seconds(10));

std::string ReadFileOrEmpty(const std::string& path);

// A sample registry state for the backend tests (registry_test.cc,
// registry_etcd_test.cc): WriteSample writes it, checking each rule on the
// way; CheckAndDeleteSample reads it back (through the same registry, or one
// reopened on the same store), then deletes it.
void WriteSample(Registry& reg);
void CheckAndDeleteSample(Registry& reg);

}  // namespace lever::host::testing
