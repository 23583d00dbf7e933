// Deploy: unpack an uploaded gzip-tar into the code store, register the new
// version and make it live (reference §5.3). Transport-independent: the admin
// service feeds the chunks of its DeployServiceChan stream into a session.
//
// Code store layout: <data>/code/<env>/<service>/<version>/, versions from 1.
// An upload is unpacked into <data>/code/<env>/.tmp-<random> and renamed into
// place only when everything succeeded; a failed deploy leaves no trace and
// nothing is ever written outside the data dir.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "lever/host/lever_json.h"
#include "lever/host/registry.h"
#include "lever/status.h"

namespace lever::host {

struct DeployOptions {
  // Root of the code store's data dir. Required; must exist.
  std::string data_dir;
  // Bytes of the compressed upload. Default 30 MiB (the original's bound).
  // Exceeding it: RESOURCE_EXHAUSTED "File too large".
  uint64_t max_compressed_bytes = 30ull << 20;
  // Bytes of file data once unpacked. Default 256 MiB.
  uint64_t max_uncompressed_bytes = 256ull << 20;
  // Archive entries (files, dirs, links). Default 20000.
  uint64_t max_entries = 20000;
  // Compressed bytes buffered between Write() and the unpacking thread before
  // Write() blocks (back-pressure). Default 1 MiB.
  uint64_t max_buffered_bytes = 1ull << 20;
  // Whether Finish() makes the new version live in the registry. The host
  // sets false: it switches the live version itself once an instance of
  // the new version is ready. Default true.
  bool set_live = true;
  // Called once a version is committed (and live, with set_live), on the
  // thread that called Finish(), with the code store lock held (so a
  // LockStore() holder sees deploys either wholly before or wholly after
  // it); `service.live_version` is the new version; must not call back into
  // the Deployer. Optional.
  std::function<void(const ServiceInfo& service, const LeverConfig& config)> on_deployed;
  // Refuses deploys of this service name to this env (the built-in admin
  // service). Default admin.lever/admin.
  std::string reserved_env = std::string(kAdminEnv);
  std::string reserved_service = std::string(kAdminService);
  // This node's name, recorded with each version it accepts (empty: one node).
  std::string node_name;
};

struct DeployResult {
  std::string env;
  std::string service;
  int64_t version = 0;
  std::string code_dir;  // absolute path of the version's code
};

// One upload. Not thread-safe: one thread feeds it (Write* then Finish).
// Destroying a session before Finish() aborts it and removes its temp dir.
class DeploySession {
 public:
  virtual ~DeploySession() = default;
  // Feeds the next chunk of the gzip-tar (any size, 32 KiB in the original).
  // Blocks while the unpacker is behind by max_buffered_bytes. Returns the
  // session's first error, sticky; once failed, further chunks are discarded
  // cheaply (the transport may keep reading to the client's half-close so the
  // client sees the error, reference §5.3 "second reading").
  virtual Status Write(std::string_view chunk) = 0;
  // Ends the upload: checks the tree, reads lever.json, creates the service
  // if new, allocates the next version, moves the code into place and sets
  // the live version (with set_live). Errors (message as in the original where one applies):
  // RESOURCE_EXHAUSTED "File too large" or "Archive too large when unpacked"
  // or "Archive has too many entries"; INVALID_ARGUMENT "Error trying to untar
  // file: <why>", "Error trying to read lever.json: <why>", "Invalid service
  // name", "More than one type of entry point specified"; PERMISSION_DENIED
  // for the admin service; INTERNAL "Internal error: <why>".
  virtual Status Finish(DeployResult* out) = 0;
};

// Thread contract: Begin may be called from any thread; sessions run in
// parallel and commit one at a time.
class Deployer {
 public:
  static Status Create(DeployOptions options, RegistryPtr registry, std::unique_ptr<Deployer>* out);
  virtual ~Deployer() = default;
  // Starts an upload into `env` (validated: IsValidEnvName). The env is
  // created in the registry on the first successful deploy to it, as the
  // original did not require it to exist.
  virtual Status Begin(std::string_view env, std::unique_ptr<DeploySession>* out) = 0;
  // Installs a version another node accepted, from its archive (fetched from
  // a peer): the same bounds and checks as an upload, then Finish() refuses
  // bytes whose sha256 is not `sha256` (DATA_LOSS) or whose lever.json names
  // another service, and puts the code at CodeDirPath(env, service, version)
  // and the archive in the blob store; no registry write, no on_deployed.
  virtual Status BeginInstall(std::string_view env, std::string_view service, int64_t version,
                              std::string_view sha256, std::unique_ptr<DeploySession>* out) = 0;
  // Holds off every commit and temp-dir change while held: for removing an
  // environment's code together with its registry rows.
  virtual std::unique_lock<std::mutex> LockStore() = 0;
};

// The blob store: every uploaded archive, by content address
// (<data_dir>/blobs/<sha256>.tgz), served to peers that lack a version.
std::string BlobDir(std::string_view data_dir);
std::string BlobPath(std::string_view data_dir, std::string_view sha256);
// 64 lowercase hex digits.
bool IsSha256Hex(std::string_view s);

// <data_dir>/code/<env>/<service>/<version>
std::string CodeDirPath(std::string_view data_dir, std::string_view env, std::string_view service,
                        int64_t version);

}  // namespace lever::host
