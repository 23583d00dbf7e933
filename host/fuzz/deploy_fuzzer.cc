// Feeds arbitrary bytes (a tar, compressed or not) to a Deployer and checks
// the invariants an attacker must not break: nothing is written outside the
// data dir, a failed deploy leaves no temp dir, and every symlink of a
// deployed version stays inside its code dir.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "lever/host/deploy.h"
#include "util.h"

namespace {

using namespace lever::host;

struct Sandbox {
  std::string root, data, outside;
  RegistryPtr registry;
  std::unique_ptr<Deployer> deployer;
  Sandbox() {
    char tmpl[] = "/tmp/lever-deploy-fuzz-XXXXXX";
    root = mkdtemp(tmpl);
    data = root + "/data";
    outside = root + "/outside";
    mkdir(data.c_str(), 0755);
    mkdir(outside.c_str(), 0755);
    if (!OpenRegistry("embedded::memory:", data, &registry).ok()) abort();
    DeployOptions opts;
    opts.data_dir = data;
    opts.max_uncompressed_bytes = 8 << 20;
    opts.max_entries = 2000;
    if (!Deployer::Create(opts, registry, &deployer).ok()) abort();
  }
  ~Sandbox() { (void)RemoveTree(root); }
};

size_t CountEntries(const std::string& dir) {
  size_t n = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] != '.' || (e->d_name[1] != '\0' && (e->d_name[1] != '.' || e->d_name[2] != '\0'))) ++n;
    }
    closedir(d);
  }
  return n;
}

// A ".tmp-" entry other than `service` (a service may be named ".tmp-x").
bool HasTempDir(const std::string& dir, const std::string& service) {
  bool found = false;
  if (DIR* d = opendir(dir.c_str())) {
    while (struct dirent* e = readdir(d)) {
      if (std::string(e->d_name).rfind(".tmp-", 0) == 0 && e->d_name != service) found = true;
    }
    closedir(d);
  }
  return found;
}

// Every symlink under `dir` resolves (realpath) inside `root`, or dangles
// inside it.
void CheckLinks(const std::string& root, const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string path = dir + "/" + name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      CheckLinks(root, path);
    } else if (S_ISLNK(st.st_mode)) {
      char resolved[PATH_MAX];
      if (realpath(path.c_str(), resolved) && std::string(resolved).rfind(root, 0) != 0) {
        std::fprintf(stderr, "symlink %s escapes to %s\n", path.c_str(), resolved);
        abort();
      }
    } else if (!S_ISREG(st.st_mode)) {
      std::fprintf(stderr, "unexpected file type at %s\n", path.c_str());
      abort();
    }
  }
  closedir(d);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Sandbox sandbox;  // removed at exit
  Sandbox* box = &sandbox;
  std::unique_ptr<DeploySession> session;
  if (!box->deployer->Begin("fuzz.lever", &session).ok()) abort();
  (void)session->Write(std::string_view(reinterpret_cast<const char*>(data), size));
  DeployResult result;
  lever::Status s = session->Finish(&result);
  session.reset();
  if (getenv("LEVER_FUZZ_VERBOSE")) std::fprintf(stderr, "deploy: %s\n", s.ok() ? "ok" : s.message().c_str());
  if (CountEntries(box->outside) != 0 || CountEntries(box->root) != 2) {
    std::fprintf(stderr, "something was written outside the data dir\n");
    abort();
  }
  std::string env_dir = box->data + "/code/fuzz.lever";
  if (HasTempDir(env_dir, s.ok() ? result.service : "")) {
    std::fprintf(stderr, "a temp dir was left behind (%s)\n", s.message().c_str());
    abort();
  }
  if (s.ok()) {
    CheckLinks(result.code_dir, result.code_dir);
    (void)RemoveTree(env_dir + "/" + result.service);
  }
  return 0;
}
