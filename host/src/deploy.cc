#include "lever/host/deploy.h"

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "util.h"

namespace lever::host {
namespace {

constexpr size_t kMaxLeverJsonBytes = 1 << 20;
constexpr int kMaxTreeDepth = 128;

Status UntarError(std::string why) {
  return InvalidArgument("Error trying to untar file: " + std::move(why));
}
Status TooLarge() { return ResourceExhausted("File too large"); }
Status Internal(std::string why) { return Status(Code::kInternal, "Internal error: " + std::move(why)); }

// Splits a relative archive path into its components, dropping "." and empty
// ones. False for an absolute path or one with a ".." component.
bool SplitEntryPath(std::string_view path, std::vector<std::string_view>* parts) {
  parts->clear();
  if (!path.empty() && path[0] == '/') return false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part == "..") return false;
    if (!part.empty() && part != ".") parts->push_back(part);
    start = end + 1;
  }
  return true;
}

std::string Join(const std::vector<std::string_view>& parts) {
  std::string out;
  for (std::string_view p : parts) {
    if (!out.empty()) out.push_back('/');
    out.append(p);
  }
  return out;
}

// A symlink stays inside the tree when its target is relative, its leading
// ".." components do not climb above the tree root from the link's directory
// (`parent_depth` components below the root), and no ".." follows a normal
// component (which could climb back out through another link). Together with
// extraction never writing through a symlink, every link then resolves
// inside the tree.
bool SymlinkStaysInside(std::string_view target, size_t parent_depth) {
  if (target.empty() || target[0] == '/') return false;
  bool descended = false;
  size_t ups = 0;
  size_t start = 0;
  while (start <= target.size()) {
    size_t end = target.find('/', start);
    if (end == std::string_view::npos) end = target.size();
    std::string_view part = target.substr(start, end - start);
    if (part == "..") {
      if (descended || ++ups > parent_depth) return false;
    } else if (!part.empty() && part != ".") {
      descended = true;
    }
    start = end + 1;
  }
  return true;
}

// Walks the unpacked tree without following links and checks what the
// per-entry checks already enforced, so no ordering trick in the archive can
// leave anything else behind: only directories, regular files, and symlinks
// that stay inside.
Status VerifyTree(const std::string& dir, size_t depth) {
  if (depth > kMaxTreeDepth) return UntarError("directory tree too deep");
  DIR* d = opendir(dir.c_str());
  if (!d) return Internal("opendir " + dir + ": " + std::strerror(errno));
  Status result;
  while (struct dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string path = dir + "/" + std::string(name);
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      result = Internal("stat " + path + ": " + std::strerror(errno));
      break;
    }
    if (S_ISDIR(st.st_mode)) {
      result = VerifyTree(path, depth + 1);
    } else if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = readlinkat(dirfd(d), e->d_name, buf, sizeof buf);
      if (n < 0 || static_cast<size_t>(n) >= sizeof buf ||
          !SymlinkStaysInside(std::string_view(buf, static_cast<size_t>(n)), depth)) {
        result = UntarError("symlink escapes the code dir");
      }
    } else if (!S_ISREG(st.st_mode)) {
      result = UntarError("unsupported file type");
    }
    if (!result.ok()) break;
  }
  closedir(d);
  return result;
}

class DeployerImpl;

// A version fetched from a peer (Deployer::BeginInstall): unpacked like an
// upload, then checked against its recorded digest and put in place under
// the version it already has; nothing is written to the registry.
struct InstallTarget {
  std::string service;
  int64_t version = 0;
  std::string sha256;
};

class SessionImpl final : public DeploySession {
 public:
  SessionImpl(DeployerImpl* deployer, std::string env, std::string env_dir, bool created_env_dir,
              std::string tmp_dir, InstallTarget install = {});
  ~SessionImpl() override;

  Status Write(std::string_view chunk) override;
  Status Finish(DeployResult* out) override;

 private:
  void Unpack();                        // the unpacking thread
  Status UnpackArchive(struct archive* in, struct archive* disk);
  Status CopyData(struct archive* in, struct archive* disk, uint64_t* total);
  static la_ssize_t ReadCallback(struct archive*, void* self, const void** buf);
  void Fail(Status s);                  // records the first error (mu_ held)
  void Cleanup();
  Status Commit(DeployResult* out);
  Status CommitInstall(DeployResult* out);
  // lever.json at the root of the unpacked tree, read and parsed.
  Status ReadLeverJson(std::string* text, LeverConfig* config);
  // Moves the kept archive to <data>/blobs/<sha256>.tgz (store lock held).
  Status KeepArchive();

  DeployerImpl* const deployer_;
  const InstallTarget install_;
  // The upload as received, hashed and kept (peers fetch it by digest).
  EVP_MD_CTX* sha_ = nullptr;
  int archive_fd_ = -1;
  std::string archive_tmp_;
  std::string sha256_;  // hex, at Finish
  Status archive_status_;
  const std::string env_;
  const std::string env_dir_;
  const bool created_env_dir_;
  const std::string tmp_dir_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> chunks_;  // guarded by mu_
  uint64_t buffered_ = 0;           // bytes in chunks_
  uint64_t received_ = 0;           // compressed bytes so far
  bool eof_ = false;                // Finish() called
  bool abort_ = false;              // destroyed before Finish()
  bool unpacker_done_ = false;
  Status status_;                   // first error
  std::string current_;             // the chunk libarchive is reading (unpacker only)
  std::thread unpacker_;
  bool finished_ = false;
  bool cleaned_ = false;
};

class DeployerImpl final : public Deployer {
 public:
  DeployerImpl(DeployOptions options, RegistryPtr registry)
      : options_(std::move(options)), registry_(std::move(registry)) {}

  Status Begin(std::string_view env, std::unique_ptr<DeploySession>* out) override {
    return Start(env, {}, out);
  }

  Status BeginInstall(std::string_view env, std::string_view service, int64_t version, std::string_view sha256,
                      std::unique_ptr<DeploySession>* out) override {
    if (!IsValidServiceName(service)) return InvalidArgument("Invalid service name");
    return Start(env, InstallTarget{std::string(service), version, std::string(sha256)}, out);
  }

  // A session unpacking into a new temp dir under the env's code dir.
  Status Start(std::string_view env, InstallTarget install, std::unique_ptr<DeploySession>* out) {
    if (!IsValidEnvName(env)) return InvalidArgument("Invalid environment name");
    std::lock_guard lock(mu_);
    std::string env_dir = options_.data_dir + "/code/" + std::string(env);
    bool created = mkdir(env_dir.c_str(), 0755) == 0;
    if (!created && errno != EEXIST) return Internal("mkdir " + env_dir + ": " + std::strerror(errno));
    std::string tmp = env_dir + "/.tmp-" + RandomId();
    if (mkdir(tmp.c_str(), 0755) != 0) {
      int err = errno;
      if (created) rmdir(env_dir.c_str());
      return Internal("mkdir " + tmp + ": " + std::strerror(err));
    }
    *out = std::make_unique<SessionImpl>(this, std::string(env), env_dir, created, tmp, std::move(install));
    return Status::Ok();
  }

  std::unique_lock<std::mutex> LockStore() override { return std::unique_lock(mu_); }

  const DeployOptions& options() const { return options_; }
  Registry& registry() { return *registry_; }
  std::mutex& mu() { return mu_; }

 private:
  const DeployOptions options_;
  const RegistryPtr registry_;
  // Serialises changes to <data>/code/<env> dirs and commits.
  std::mutex mu_;
};

SessionImpl::SessionImpl(DeployerImpl* deployer, std::string env, std::string env_dir,
                         bool created_env_dir, std::string tmp_dir, InstallTarget install)
    : deployer_(deployer),
      install_(std::move(install)),
      env_(std::move(env)),
      env_dir_(std::move(env_dir)),
      created_env_dir_(created_env_dir),
      tmp_dir_(std::move(tmp_dir)) {
  sha_ = EVP_MD_CTX_new();
  if (!sha_ || EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr) != 1) archive_status_ = Internal("sha256 unavailable");
  archive_tmp_ = BlobDir(deployer_->options().data_dir) + "/.tmp-" + RandomId();
  archive_fd_ = open(archive_tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (archive_fd_ < 0) archive_status_ = Internal("open " + archive_tmp_ + ": " + std::strerror(errno));
  unpacker_ = std::thread([this] { Unpack(); });
}

SessionImpl::~SessionImpl() {
  {
    std::lock_guard lock(mu_);
    if (!finished_) abort_ = true;
    eof_ = true;
  }
  cv_.notify_all();
  if (unpacker_.joinable()) unpacker_.join();
  if (!finished_) Cleanup();
  if (archive_fd_ >= 0) close(archive_fd_);
  if (!archive_tmp_.empty()) unlink(archive_tmp_.c_str());
  if (sha_) EVP_MD_CTX_free(sha_);
}

void SessionImpl::Fail(Status s) {
  if (status_.ok()) status_ = std::move(s);
}

Status SessionImpl::Write(std::string_view chunk) {
  std::unique_lock lock(mu_);
  if (eof_) return Status(Code::kFailedPrecondition, "deploy session already finished");
  received_ += chunk.size();
  if (received_ > deployer_->options().max_compressed_bytes) Fail(TooLarge());
  if (status_.ok() && !archive_status_.ok()) Fail(archive_status_);
  if (received_ <= deployer_->options().max_compressed_bytes && archive_status_.ok()) {
    // The archive as uploaded, whole (trailing bytes too, and past an
    // unpacking error, so a fetch can tell wrong bytes from bad ones): its
    // digest is the version's content address.
    EVP_DigestUpdate(sha_, chunk.data(), chunk.size());
    if (!WriteAll(archive_fd_, chunk)) {
      archive_status_ = Internal("write " + archive_tmp_ + ": " + std::strerror(errno));
      Fail(archive_status_);
    }
  }
  if (!status_.ok()) {
    cv_.notify_all();
    return status_;
  }
  if (unpacker_done_) return Status::Ok();  // trailing bytes after the archive's end
  cv_.wait(lock, [&] {
    return buffered_ < deployer_->options().max_buffered_bytes || unpacker_done_ || !status_.ok();
  });
  if (!status_.ok()) return status_;
  if (unpacker_done_) return Status::Ok();
  buffered_ += chunk.size();
  chunks_.emplace_back(chunk);
  cv_.notify_all();
  return Status::Ok();
}

la_ssize_t SessionImpl::ReadCallback(struct archive* a, void* opaque, const void** buf) {
  auto* self = static_cast<SessionImpl*>(opaque);
  std::unique_lock lock(self->mu_);
  self->cv_.wait(lock, [&] {
    return !self->chunks_.empty() || self->eof_ || self->abort_ || !self->status_.ok();
  });
  if (self->abort_ || !self->status_.ok()) {
    archive_set_error(a, ECANCELED, "deploy aborted");
    return -1;
  }
  if (self->chunks_.empty()) return 0;  // eof_
  self->current_ = std::move(self->chunks_.front());
  self->chunks_.pop_front();
  self->buffered_ -= self->current_.size();
  self->cv_.notify_all();
  *buf = self->current_.data();
  return static_cast<la_ssize_t>(self->current_.size());
}

void SessionImpl::Unpack() {
  struct archive* in = archive_read_new();
  struct archive* disk = archive_write_disk_new();
  Status s;
  if (!in || !disk) {
    s = Internal("out of memory");
  } else {
    archive_read_support_filter_gzip(in);
    archive_read_support_format_tar(in);
    // No owner, permissions beyond the mode bits we set, times, xattrs,
    // ACLs or flags. ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS is not set because
    // we hand the writer absolute paths under the temp dir (chdir is process
    // wide); relative-only entry names are enforced before that prefix.
    archive_write_disk_set_options(
        disk, ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT);
    if (archive_read_open(in, this, nullptr, &SessionImpl::ReadCallback, nullptr) != ARCHIVE_OK) {
      s = UntarError(archive_error_string(in) ? archive_error_string(in) : "cannot open archive");
    } else {
      s = UnpackArchive(in, disk);
    }
  }
  if (disk) archive_write_free(disk);
  if (in) archive_read_free(in);
  {
    std::lock_guard lock(mu_);
    if (!s.ok()) Fail(std::move(s));
    unpacker_done_ = true;
    chunks_.clear();
    buffered_ = 0;
  }
  cv_.notify_all();
}

Status SessionImpl::UnpackArchive(struct archive* in, struct archive* disk) {
  const DeployOptions& opts = deployer_->options();
  // Regular files unpacked so far, by normalised path: the only valid
  // hard-link targets.
  std::unordered_map<std::string, bool> regular_files;
  uint64_t entries = 0;
  uint64_t total = 0;
  std::vector<std::string_view> parts;
  std::vector<std::string_view> link_parts;
  struct archive_entry* entry = nullptr;
  while (true) {
    int rc = archive_read_next_header(in, &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      {
        std::lock_guard lock(mu_);
        if (!status_.ok()) return status_;
      }
      const char* err = archive_error_string(in);
      return UntarError(err ? err : "corrupt archive");
    }
    if (++entries > opts.max_entries) return ResourceExhausted("Archive has too many entries");
    const char* raw_path = archive_entry_pathname(entry);
    if (!raw_path) return UntarError("entry without a valid name");
    std::string_view path = raw_path;
    if (!SplitEntryPath(path, &parts)) {
      return UntarError("Archive attempting to write outside target dir (" + std::string(path) + ")");
    }
    if (parts.empty()) continue;  // the root itself
    std::string rel = Join(parts);

    const char* hardlink = archive_entry_hardlink(entry);
    mode_t type = archive_entry_filetype(entry);
    if (hardlink) {
      std::string_view target = hardlink;
      if (!SplitEntryPath(target, &link_parts) || link_parts.empty()) {
        return UntarError("hard link points outside the code dir (" + rel + ")");
      }
      std::string target_rel = Join(link_parts);
      if (!regular_files.count(target_rel)) {
        return UntarError("hard link to something that is not a file in the archive (" + rel + ")");
      }
      archive_entry_set_hardlink(entry, (tmp_dir_ + "/" + target_rel).c_str());
      archive_entry_set_size(entry, 0);
      regular_files[rel] = true;
    } else if (type == AE_IFREG) {
      int64_t size = archive_entry_size(entry);
      if (size < 0) return UntarError("negative size");
      if (static_cast<uint64_t>(size) > opts.max_uncompressed_bytes - std::min(total, opts.max_uncompressed_bytes)) {
        return ResourceExhausted("Archive too large when unpacked");
      }
      mode_t perm = archive_entry_perm(entry);
      archive_entry_set_perm(entry, 0644 | ((perm & 0111) ? 0111 : 0));
      regular_files[rel] = true;
    } else if (type == AE_IFDIR) {
      archive_entry_set_perm(entry, 0755);
      regular_files.erase(rel);
    } else if (type == AE_IFLNK) {
      const char* target = archive_entry_symlink(entry);
      if (!target || !SymlinkStaysInside(target, parts.size() - 1)) {
        return UntarError("symlink escapes the code dir (" + rel + ")");
      }
      regular_files.erase(rel);
    } else {
      const char* what = type == AE_IFCHR    ? "character device"
                         : type == AE_IFBLK  ? "block device"
                         : type == AE_IFIFO  ? "fifo"
                         : type == AE_IFSOCK ? "socket"
                                             : "unknown entry type";
      return UntarError(std::string("Unhandled tar header type: ") + what + " (" + rel + ")");
    }
    archive_entry_set_pathname(entry, (tmp_dir_ + "/" + rel).c_str());
    archive_entry_set_uid(entry, 0);
    archive_entry_set_gid(entry, 0);
    archive_entry_set_uname(entry, nullptr);
    archive_entry_set_gname(entry, nullptr);
    archive_entry_xattr_clear(entry);
    archive_entry_acl_clear(entry);

    rc = archive_write_header(disk, entry);
    if (rc != ARCHIVE_OK) {
      const char* err = archive_error_string(disk);
      return UntarError(std::string(err ? err : "cannot write entry") + " (" + rel + ")");
    }
    if (type == AE_IFREG && !hardlink) {
      Status s = CopyData(in, disk, &total);
      if (!s.ok()) return s;
    }
    if (archive_write_finish_entry(disk) != ARCHIVE_OK) {
      const char* err = archive_error_string(disk);
      return UntarError(std::string(err ? err : "cannot finish entry") + " (" + rel + ")");
    }
  }
  return Status::Ok();
}

Status SessionImpl::CopyData(struct archive* in, struct archive* disk, uint64_t* total) {
  const DeployOptions& opts = deployer_->options();
  const void* buf;
  size_t size;
  la_int64_t offset;
  uint64_t entry_end = 0;
  uint64_t base = *total;
  while (true) {
    int rc = archive_read_data_block(in, &buf, &size, &offset);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      {
        std::lock_guard lock(mu_);
        if (!status_.ok()) return status_;
      }
      const char* err = archive_error_string(in);
      return UntarError(err ? err : "corrupt data");
    }
    uint64_t end = static_cast<uint64_t>(offset) + size;
    if (end > entry_end) entry_end = end;
    if (base + entry_end > opts.max_uncompressed_bytes) return ResourceExhausted("Archive too large when unpacked");
    if (archive_write_data_block(disk, buf, size, offset) != ARCHIVE_OK) {
      const char* err = archive_error_string(disk);
      return UntarError(err ? err : "cannot write data");
    }
  }
  *total = base + entry_end;
  return Status::Ok();
}

void SessionImpl::Cleanup() {
  if (cleaned_) return;
  cleaned_ = true;
  std::lock_guard lock(deployer_->mu());
  (void)RemoveTree(tmp_dir_);
  // Leave no trace: drop the env dir if this session made it and it is empty.
  if (created_env_dir_) rmdir(env_dir_.c_str());
}

Status SessionImpl::Finish(DeployResult* out) {
  {
    std::lock_guard lock(mu_);
    if (eof_) return Status(Code::kFailedPrecondition, "deploy session already finished");
    eof_ = true;
  }
  cv_.notify_all();
  unpacker_.join();
  Status s;
  {
    std::lock_guard lock(mu_);
    s = status_;
  }
  if (archive_status_.ok()) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(sha_, digest, &len);
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < len; ++i) {
      sha256_.push_back(kHex[digest[i] >> 4]);
      sha256_.push_back(kHex[digest[i] & 15]);
    }
  }
  // Fetched bytes that are not the deployed ones are refused as such, before
  // anything else is said about them.
  if (install_.version > 0 && archive_status_.ok() && sha256_ != install_.sha256 &&
      s.code() != Code::kResourceExhausted) {
    s = Status(Code::kDataLoss, "the code fetched for " + env_ + "/" + install_.service + " v" +
                                    std::to_string(install_.version) + " has sha256 " + sha256_ +
                                    ", not the deployed " + install_.sha256 + ": refused");
  }
  if (s.ok()) s = VerifyTree(tmp_dir_, 0);
  if (s.ok() && !archive_status_.ok()) s = archive_status_;
  if (s.ok() && fsync(archive_fd_) != 0) s = Internal("fsync " + archive_tmp_ + ": " + std::strerror(errno));
  if (s.ok()) s = install_.version > 0 ? CommitInstall(out) : Commit(out);
  if (!s.ok()) {
    Cleanup();
  } else {
    finished_ = true;
  }
  // A failed session counts as finished too: the destructor has nothing left.
  finished_ = true;
  return s;
}

Status SessionImpl::Commit(DeployResult* out) {
  const DeployOptions& opts = deployer_->options();
  Registry& reg = deployer_->registry();
  std::string lever_json;
  LeverConfig config;
  Status s = ReadLeverJson(&lever_json, &config);
  if (!s.ok()) return s;
  if (env_ == opts.reserved_env && config.name == opts.reserved_service) {
    return Status(Code::kPermissionDenied, "lever://" + env_ + "/" + config.name +
                                               " is built into leverd and cannot be deployed");
  }

  std::unique_lock lock(deployer_->mu());
  EnvironmentInfo env_info;
  s = reg.GetEnvironment(env_, &env_info);
  if (s.code() == Code::kNotFound) {
    s = reg.CreateEnvironment({env_, ""});
    if (s.code() == Code::kAlreadyExists) s = Status::Ok();
  }
  if (!s.ok()) return Internal(s.message());
  ServiceInfo service;
  s = reg.GetService(env_, config.name, &service);
  if (s.code() == Code::kNotFound) {
    ServiceInfo fresh;
    fresh.env = env_;
    fresh.name = config.name;
    fresh.description = config.description;
    fresh.is_private = config.is_private;
    s = reg.CreateService(fresh);
    if (s.ok() || s.code() == Code::kAlreadyExists) s = reg.GetService(env_, config.name, &service);
  }
  if (!s.ok()) return Internal(s.message());
  int64_t version = 0;
  s = reg.AllocateVersion(env_, config.name, &version);
  if (!s.ok()) return Internal(s.message());

  std::string service_dir = env_dir_ + "/" + config.name;
  bool created_service_dir = mkdir(service_dir.c_str(), 0755) == 0;
  if (!created_service_dir && errno != EEXIST) {
    return Internal("mkdir " + service_dir + ": " + std::strerror(errno));
  }
  std::string code_dir = service_dir + "/" + std::to_string(version);
  if (rename(tmp_dir_.c_str(), code_dir.c_str()) != 0) {
    int err = errno;
    if (created_service_dir) rmdir(service_dir.c_str());
    return Internal("rename to " + code_dir + ": " + std::strerror(err));
  }
  auto undo = [&] {
    (void)RemoveTree(code_dir);
    if (created_service_dir) rmdir(service_dir.c_str());
  };
  // The archive stays, by digest, for peers that lack this version.
  s = KeepArchive();
  if (!s.ok()) {
    undo();
    return s;
  }
  CodeVersionInfo cv;
  cv.env = env_;
  cv.service = config.name;
  cv.version = version;
  cv.lever_json = lever_json;
  cv.sha256 = sha256_;
  cv.archive_bytes = static_cast<int64_t>(received_);
  cv.node = opts.node_name;
  s = reg.AddCodeVersion(cv);
  if (!s.ok()) {
    undo();
    return Internal(s.message());
  }
  service.description = config.description;
  service.is_private = config.is_private;
  if (opts.set_live) service.live_version = version;
  s = reg.UpdateService(service);
  if (!s.ok()) {
    (void)reg.DeleteCodeVersion(env_, config.name, version);
    undo();
    return Internal(s.message());
  }
  service.next_version = version + 1;
  service.live_version = version;  // what on_deployed is told: the new version
  cleaned_ = true;  // the temp dir is now the version's code dir
  out->env = env_;
  out->service = config.name;
  out->version = version;
  out->code_dir = code_dir;
  if (opts.on_deployed) opts.on_deployed(service, config);
  return Status::Ok();
}

Status SessionImpl::ReadLeverJson(std::string* text, LeverConfig* config) {
  std::string json_path = tmp_dir_ + "/lever.json";
  struct stat st;
  if (stat(json_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {  // links are checked to stay inside
    return InvalidArgument("Error trying to read lever.json: no lever.json file at the root of the upload");
  }
  Status s = ReadSmallFile(json_path, kMaxLeverJsonBytes, text);
  if (!s.ok()) return InvalidArgument("Error trying to read lever.json: " + s.message());
  return ParseLeverConfig(*text, config);
}

Status SessionImpl::KeepArchive() {
  std::string path = BlobPath(deployer_->options().data_dir, sha256_);
  if (rename(archive_tmp_.c_str(), path.c_str()) != 0) {
    return Internal("rename to " + path + ": " + std::strerror(errno));
  }
  archive_tmp_.clear();
  return Status::Ok();
}

// A fetched version: the digest first (a peer that sent other bytes than
// the deploy's is refused before anything is put in place), then the same
// lever.json the version was deployed with, then the code dir.
Status SessionImpl::CommitInstall(DeployResult* out) {
  std::string lever_json;
  LeverConfig config;
  Status s = ReadLeverJson(&lever_json, &config);
  if (!s.ok()) return s;
  if (config.name != install_.service) {
    return InvalidArgument("the code fetched for " + install_.service + " is service " + config.name);
  }
  std::unique_lock lock(deployer_->mu());
  std::string service_dir = env_dir_ + "/" + install_.service;
  if (mkdir(service_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Internal("mkdir " + service_dir + ": " + std::strerror(errno));
  }
  std::string code_dir = service_dir + "/" + std::to_string(install_.version);
  struct stat existing;
  if (stat(code_dir.c_str(), &existing) == 0) {
    (void)RemoveTree(tmp_dir_);  // another fetch got here first: same bytes
  } else if (rename(tmp_dir_.c_str(), code_dir.c_str()) != 0) {
    return Internal("rename to " + code_dir + ": " + std::strerror(errno));
  }
  cleaned_ = true;
  s = KeepArchive();
  if (!s.ok()) return s;
  out->env = env_;
  out->service = install_.service;
  out->version = install_.version;
  out->code_dir = code_dir;
  return Status::Ok();
}

}  // namespace

std::string BlobDir(std::string_view data_dir) { return std::string(data_dir) + "/blobs"; }

std::string BlobPath(std::string_view data_dir, std::string_view sha256) {
  return BlobDir(data_dir) + "/" + std::string(sha256) + ".tgz";
}

bool IsSha256Hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string CodeDirPath(std::string_view data_dir, std::string_view env, std::string_view service,
                        int64_t version) {
  std::string out(data_dir);
  out += "/code/";
  out += env;
  out += '/';
  out += service;
  out += '/';
  out += std::to_string(version);
  return out;
}

Status Deployer::Create(DeployOptions options, RegistryPtr registry, std::unique_ptr<Deployer>* out) {
  if (options.data_dir.empty()) return InvalidArgument("DeployOptions.data_dir is required");
  if (!registry) return InvalidArgument("Deployer needs a registry");
  char* real = realpath(options.data_dir.c_str(), nullptr);
  if (!real) return ErrnoStatus("data dir " + options.data_dir, errno);
  options.data_dir = real;
  free(real);
  Status s = MakeDirs(options.data_dir + "/code");
  if (!s.ok()) return s;
  s = MakeDirs(BlobDir(options.data_dir));
  if (!s.ok()) return s;
  *out = std::make_unique<DeployerImpl>(std::move(options), std::move(registry));
  return Status::Ok();
}

}  // namespace lever::host
