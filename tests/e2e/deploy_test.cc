// Deploys through the admin service, with archives built here: a valid one
// (whose relative symlink must survive) and each kind of hostile one, which
// must be refused with the error reaching the client and no trace left.
#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include <gtest/gtest.h>

#include "harness.h"

namespace lever::e2e {
namespace {

namespace fs = std::filesystem;

struct Entry {
  std::string name;
  mode_t type = AE_IFREG;
  std::string data;    // file contents
  std::string target;  // symlink or hardlink target
  int perm = 0644;
};

std::string BuildTarGz(const std::vector<Entry>& entries) {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_add_filter_gzip(a);
  archive_write_set_format_pax_restricted(a);
  archive_write_open2(
      a, &out, nullptr,
      [](struct archive*, void* ctx, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(ctx)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr, nullptr);
  for (const Entry& e : entries) {
    struct archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.name.c_str());
    archive_entry_set_filetype(ae, e.type);
    archive_entry_set_perm(ae, e.perm);
    if (e.type == AE_IFLNK) archive_entry_set_symlink(ae, e.target.c_str());
    if (!e.target.empty() && e.type == AE_IFREG) archive_entry_set_hardlink(ae, e.target.c_str());
    if (e.type == AE_IFCHR) archive_entry_set_rdev(ae, makedev(1, 3));
    archive_entry_set_size(ae, e.type == AE_IFREG && e.target.empty() ? e.data.size() : 0);
    archive_write_header(a, ae);
    if (e.type == AE_IFREG && !e.data.empty()) archive_write_data(a, e.data.data(), e.data.size());
    archive_entry_free(ae);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class DeployTest : public ::testing::Test {
 protected:
  void SetUp() override {
    leverd_ = std::make_unique<Leverd>(Leverd::Options{"", {"--max-upload-mib", "4", "--max-unpacked-mib", "16"}});
    leverd_->Start();
    client_ = leverd_->NewClient();
    outside_ = std::make_unique<TempDir>();
  }

  // Uploads an archive as `lever deploy` does; returns the call's outcome.
  Result Upload(const std::string& archive) {
    ClientStreamPtr s;
    Status st = client_->InvokeStreamUrl(&s, "lever://admin.lever/admin//DeployServiceChan",
                                         {"dev.lever", Map{{"reportVersion", true}}},
                                         CallOptions{std::chrono::seconds(60)});
    if (!st.ok()) return Result::Failed(st);
    for (size_t off = 0; off < archive.size(); off += 32768) {
      if (!s->Send(Value::FromBytes(archive.substr(off, 32768))).ok()) break;
    }
    s->CloseSend();
    Result last = Result::End();
    for (;;) {
      Result r = s->Receive();
      if (r.ok()) {
        last = r;
        continue;
      }
      return r.is_end() ? last : r;
    }
  }

  std::vector<Entry> Valid() {
    return {{"lever.json", AE_IFREG, R"({"name":"deploysvc"})"},
            {"serve", AE_IFREG, ReadFile(TestServicePath()), "", 0755},
            {"lib/", AE_IFDIR, "", "", 0755},
            {"lib/data.txt", AE_IFREG, "data"},
            {"link", AE_IFLNK, "", "lib/data.txt"}};
  }

  // Nothing but the committed versions and the registry under the data dir,
  // and nothing written to the directory hostile archives aim at.
  void ExpectNoTrace() {
    for (const auto& e : fs::recursive_directory_iterator(leverd_->data_dir())) {
      std::string name = e.path().filename().string();
      EXPECT_EQ(name.rfind(".tmp", 0), std::string::npos) << "leftover " << e.path();
      EXPECT_NE(name, "evil") << "hostile entry written at " << e.path();
    }
    EXPECT_TRUE(fs::is_empty(outside_->path())) << "something was written outside the data dir";
  }

  void ExpectRefused(std::vector<Entry> entries, const std::string& why) {
    Result r = Upload(BuildTarGz(entries));
    EXPECT_TRUE(r.is_app_error()) << why << ": " << (r.ok() ? "accepted" : r.status.ToString());
    if (r.is_app_error() && r.value.is_string()) {
      EXPECT_FALSE(r.value.as_string().empty()) << why;
    }
    ExpectNoTrace();
  }

  std::unique_ptr<Leverd> leverd_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<TempDir> outside_;
};

TEST_F(DeployTest, ValidArchiveIsAcceptedAndItsSymlinkSurvives) {
  Result r = Upload(BuildTarGz(Valid()));
  ASSERT_TRUE(r.ok()) << r.status.ToString() << (r.is_app_error() ? r.value.as_string() : "");
  ASSERT_TRUE(r.value.is_map());
  EXPECT_EQ(*r.value.as_map().Find("version"), Value(1));
  // The service runs, and its relative symlink still resolves.
  Result hello = client_->Service("dev.lever", "deploysvc").Invoke("BasicHello", {"x"});
  EXPECT_TRUE(hello.ok()) << hello.status.ToString();
  bool found = false;
  for (const auto& e : fs::recursive_directory_iterator(leverd_->data_dir())) {
    if (e.path().filename() == "link" && fs::is_symlink(e.symlink_status())) {
      found = true;
      EXPECT_EQ(ReadFile(e.path().string()), "data");
    }
  }
  EXPECT_TRUE(found);
  ExpectNoTrace();
}

TEST_F(DeployTest, HostileArchivesAreRefused) {
  std::string outside = outside_->path();
  auto with = [&](Entry e) {
    std::vector<Entry> v = Valid();
    v.push_back(std::move(e));
    return v;
  };
  ExpectRefused(with({outside + "/evil", AE_IFREG, "x"}), "absolute path");
  ExpectRefused(with({"../evil", AE_IFREG, "x"}), "dot-dot");
  ExpectRefused(with({"lib/../../evil", AE_IFREG, "x"}), "dot-dot inside");
  ExpectRefused(with({"evil", AE_IFLNK, "", "../../../../../../" + outside}), "escaping symlink");
  ExpectRefused(with({"evil", AE_IFLNK, "", outside}), "absolute symlink");
  ExpectRefused(with({"evil", AE_IFREG, "", "/etc/passwd"}), "hard link out of the tree");
  ExpectRefused(with({"evil", AE_IFCHR}), "device file");
  ExpectRefused(with({"evil", AE_IFIFO}), "fifo");
  ExpectRefused({{"serve", AE_IFREG, "x"}}, "no lever.json");
  ExpectRefused({{"lever.json", AE_IFREG, "{not json"}}, "bad lever.json");
}

TEST_F(DeployTest, SizeLimits) {
  // Compressed: 4 MiB allowed here; 5 MiB of random bytes does not compress.
  std::string noise(5 << 20, '\0');
  std::mt19937_64 rng(7);
  for (size_t i = 0; i + 8 <= noise.size(); i += 8) {
    uint64_t x = rng();
    std::memcpy(&noise[i], &x, 8);
  }
  std::vector<Entry> big = Valid();
  big[1].data.clear();  // keep the binary out: the noise is what counts
  big.push_back({"noise.bin", AE_IFREG, noise});
  Result r = Upload(BuildTarGz(big));
  ASSERT_TRUE(r.is_app_error()) << (r.ok() ? "accepted" : r.status.ToString());
  EXPECT_NE(r.value.as_string().find("too large"), std::string::npos) << r.value.as_string();
  ExpectNoTrace();

  // Uncompressed: 16 MiB allowed here; 20 MiB of zeros compresses to ~20 KiB.
  std::vector<Entry> bomb = Valid();
  bomb[1].data.clear();
  bomb.push_back({"zeros.bin", AE_IFREG, std::string(20 << 20, '\0')});
  r = Upload(BuildTarGz(bomb));
  ASSERT_TRUE(r.is_app_error()) << (r.ok() ? "accepted" : r.status.ToString());
  ExpectNoTrace();
}

TEST_F(DeployTest, TheOriginalClientSeesOnlyEof) {
  // One argument, as the original `lever deploy` sends: success is a bare EOF.
  ClientStreamPtr s;
  ASSERT_TRUE(client_->InvokeStreamUrl(&s, "lever://admin.lever/admin//DeployServiceChan", {"dev.lever"}).ok());
  std::string archive = BuildTarGz(Valid());
  for (size_t off = 0; off < archive.size(); off += 32768) {
    ASSERT_TRUE(s->Send(Value::FromBytes(archive.substr(off, 32768))).ok());
  }
  s->CloseSend();
  Result r = s->Receive();
  EXPECT_TRUE(r.is_end()) << (r.ok() ? "unexpected message" : r.status.ToString());
}

}  // namespace
}  // namespace lever::e2e
