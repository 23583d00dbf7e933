#include "testutil.h"

#include <gtest/gtest.h>

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

// Writes a sample state, checking every rule on the way.
void WriteSample(Registry& reg) {
  EXPECT_TRUE(reg.CreateEnvironment({"prod.lever", "Production"}).ok());
  EXPECT_EQ(reg.CreateEnvironment({"prod.lever", "again"}).code(), Code::kAlreadyExists);
  EXPECT_EQ(reg.CreateEnvironment({"x", ""}).code(), Code::kInvalidArgument);
  EXPECT_EQ(reg.CreateEnvironment({"a/b.lever", ""}).code(), Code::kInvalidArgument);

  ServiceInfo s;
  s.env = "prod.lever";
  s.name = "hello";
  s.description = "says hello";
  s.is_private = true;
  ASSERT_TRUE(reg.CreateService(s).ok());
  EXPECT_EQ(reg.CreateService(s).code(), Code::kAlreadyExists);
  s.name = "no";
  EXPECT_EQ(reg.CreateService(s).code(), Code::kInvalidArgument);

  int64_t v1 = 0, v2 = 0;
  ASSERT_TRUE(reg.AllocateVersion("prod.lever", "hello", &v1).ok());
  ASSERT_TRUE(reg.AllocateVersion("prod.lever", "hello", &v2).ok());
  EXPECT_EQ(v1, 1);
  EXPECT_EQ(v2, 2);
  EXPECT_EQ(reg.AllocateVersion("prod.lever", "nope", &v1).code(), Code::kNotFound);
  ASSERT_TRUE(reg.AddCodeVersion({"prod.lever", "hello", 2, R"({"name":"hello"})", 0}).ok());
  EXPECT_EQ(reg.AddCodeVersion({"prod.lever", "hello", 2, "{}", 0}).code(), Code::kAlreadyExists);

  ServiceInfo got;
  ASSERT_TRUE(reg.GetService("prod.lever", "hello", &got).ok());
  got.live_version = 2;
  got.description = "updated";
  ASSERT_TRUE(reg.UpdateService(got).ok());
  got.name = "missing";
  EXPECT_EQ(reg.UpdateService(got).code(), Code::kNotFound);
}

// Checks the sample state, then deletes its environment with everything in it.
void CheckAndDeleteSample(Registry& reg) {
  EnvironmentInfo env;
  ASSERT_TRUE(reg.GetEnvironment("prod.lever", &env).ok());
  EXPECT_EQ(env.description, "Production");
  ServiceInfo s;
  ASSERT_TRUE(reg.GetService("prod.lever", "hello", &s).ok());
  EXPECT_EQ(s.description, "updated");
  EXPECT_TRUE(s.is_private);
  EXPECT_EQ(s.live_version, 2);
  EXPECT_EQ(s.next_version, 3);
  CodeVersionInfo cv;
  ASSERT_TRUE(reg.GetCodeVersion("prod.lever", "hello", 2, &cv).ok());
  EXPECT_EQ(cv.lever_json, R"({"name":"hello"})");
  EXPECT_GT(cv.created_unix_ms, 0);
  EXPECT_EQ(reg.GetCodeVersion("prod.lever", "hello", 1, &cv).code(), Code::kNotFound);
  std::vector<ServiceInfo> list;
  ASSERT_TRUE(reg.ListServices("prod.lever", &list).ok());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "hello");

  ASSERT_TRUE(reg.DeleteEnvironment("prod.lever").ok());
  EXPECT_EQ(reg.GetEnvironment("prod.lever", &env).code(), Code::kNotFound);
  EXPECT_EQ(reg.GetService("prod.lever", "hello", &s).code(), Code::kNotFound);
  EXPECT_EQ(reg.GetCodeVersion("prod.lever", "hello", 2, &cv).code(), Code::kNotFound);
  EXPECT_EQ(reg.DeleteEnvironment("prod.lever").code(), Code::kNotFound);
}

}  // namespace lever::host::testing
