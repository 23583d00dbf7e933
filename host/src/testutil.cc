#include "testutil.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "util.h"

namespace lever::host::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/lever-host-XXXXXX";
  char* p = mkdtemp(tmpl.data());
  path_ = p ? std::string(p) : std::string();
  if (p) {
    char* real = realpath(p, nullptr);
    if (real) {
      path_ = real;
      free(real);
    }
  }
}

TempDir::~TempDir() {
  if (!path_.empty()) (void)RemoveTree(path_);
}

namespace {
la_ssize_t WriteCb(struct archive*, void* self, const void* buf, size_t n) {
  static_cast<std::string*>(self)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}
}  // namespace

TarBuilder::TarBuilder() : a_(archive_write_new()) {
  archive_write_add_filter_gzip(a_);
  archive_write_set_format_pax_restricted(a_);
  archive_write_set_bytes_in_last_block(a_, 1);
  archive_write_open(a_, &out_, nullptr, WriteCb, nullptr);
}

TarBuilder::~TarBuilder() {
  if (a_) archive_write_free(a_);
}

TarBuilder& TarBuilder::File(const std::string& name, const std::string& content, mode_t perm) {
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, perm);
  archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
  archive_write_header(a_, e);
  archive_write_data(a_, content.data(), content.size());
  archive_entry_free(e);
  return *this;
}

TarBuilder& TarBuilder::Dir(const std::string& name) {
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_filetype(e, AE_IFDIR);
  archive_entry_set_perm(e, 0755);
  archive_write_header(a_, e);
  archive_entry_free(e);
  return *this;
}

TarBuilder& TarBuilder::Symlink(const std::string& name, const std::string& target) {
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_filetype(e, AE_IFLNK);
  archive_entry_set_perm(e, 0777);
  archive_entry_set_symlink(e, target.c_str());
  archive_write_header(a_, e);
  archive_entry_free(e);
  return *this;
}

TarBuilder& TarBuilder::Hardlink(const std::string& name, const std::string& target) {
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_hardlink(e, target.c_str());
  archive_entry_set_size(e, 0);
  archive_write_header(a_, e);
  archive_entry_free(e);
  return *this;
}

TarBuilder& TarBuilder::Special(const std::string& name, mode_t type) {
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_filetype(e, type);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_rdevmajor(e, 1);
  archive_entry_set_rdevminor(e, 3);
  archive_write_header(a_, e);
  archive_entry_free(e);
  return *this;
}

std::string TarBuilder::Finish() {
  archive_write_close(a_);
  archive_write_free(a_);
  a_ = nullptr;
  return out_;
}

namespace {
void ListInto(const std::string& root, const std::string& rel, std::set<std::string>* out) {
  std::string dir = rel.empty() ? root : root + "/" + rel;
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string r = rel.empty() ? name : rel + "/" + name;
    out->insert(r);
    struct stat st;
    if (lstat((root + "/" + r).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) ListInto(root, r, out);
  }
  closedir(d);
}
}  // namespace

std::set<std::string> ListTree(const std::string& root) {
  std::set<std::string> out;
  ListInto(root, "", &out);
  return out;
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::microseconds(100);
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= deadline) return cond();
    std::this_thread::sleep_for(pause);  // a poll interval, not a fixed wait
    if (pause < std::chrono::milliseconds(5)) pause *= 2;
  }
  return true;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace lever::host::testing
