#include "tarball.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <vector>

namespace lever::cli {
namespace {

namespace fs = std::filesystem;

struct Sink {
  std::string* out;
  size_t max;
  bool overflow = false;
};

la_ssize_t WriteCb(struct archive*, void* ctx, const void* buf, size_t n) {
  auto* sink = static_cast<Sink*>(ctx);
  if (sink->out->size() + n > sink->max) {
    sink->overflow = true;
    return -1;
  }
  sink->out->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

Status ArchiveError(struct archive* a, const std::string& what) {
  const char* msg = archive_error_string(a);
  return Status(Code::kInternal, what + ": " + (msg ? msg : "unknown error"));
}

}  // namespace

Status PackDirectory(const std::string& dir, size_t max_bytes, std::string* out) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return InvalidArgument(dir + " is not a directory");
  // Collect entries first so the archive order is stable (sorted paths).
  std::vector<fs::path> paths;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::none, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    paths.push_back(it->path());
  }
  if (ec) return Status(Code::kInternal, "reading " + dir + ": " + ec.message());
  std::sort(paths.begin(), paths.end());

  std::unique_ptr<struct archive, decltype(&archive_write_free)> a(archive_write_new(), archive_write_free);
  archive_write_add_filter_gzip(a.get());
  archive_write_set_format_pax_restricted(a.get());
  Sink sink{out, max_bytes};
  out->clear();
  if (archive_write_open2(a.get(), &sink, nullptr, WriteCb, nullptr, nullptr) != ARCHIVE_OK) {
    return ArchiveError(a.get(), "creating the archive");
  }
  std::vector<char> buf(64 * 1024);
  for (const fs::path& p : paths) {
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) return Status(Code::kInternal, "cannot stat " + p.string());
    std::string name = fs::relative(p, dir, ec).generic_string();
    if (ec) return Status(Code::kInternal, "cannot name " + p.string());
    std::unique_ptr<struct archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
    archive_entry_copy_stat(e.get(), &st);
    archive_entry_set_uid(e.get(), 0);
    archive_entry_set_gid(e.get(), 0);
    if (S_ISDIR(st.st_mode)) {
      name += '/';
    } else if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = readlink(p.c_str(), target.data(), target.size());
      if (n < 0) return Status(Code::kInternal, "cannot read link " + p.string());
      target.resize(static_cast<size_t>(n));
      archive_entry_copy_symlink(e.get(), target.c_str());
    } else if (!S_ISREG(st.st_mode)) {
      continue;  // sockets, fifos and devices are not code
    }
    archive_entry_copy_pathname(e.get(), name.c_str());
    if (archive_write_header(a.get(), e.get()) != ARCHIVE_OK) {
      if (sink.overflow) break;
      return ArchiveError(a.get(), "adding " + name);
    }
    if (S_ISREG(st.st_mode)) {
      int fd = open(p.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return Status(Code::kInternal, "cannot open " + p.string());
      ssize_t n;
      while ((n = read(fd, buf.data(), buf.size())) > 0) {
        if (archive_write_data(a.get(), buf.data(), static_cast<size_t>(n)) < 0) break;
      }
      close(fd);
      if (n < 0) return Status(Code::kInternal, "cannot read " + p.string());
    }
    if (sink.overflow) break;
  }
  if (!sink.overflow && archive_write_close(a.get()) != ARCHIVE_OK && !sink.overflow) {
    return ArchiveError(a.get(), "finishing the archive");
  }
  if (sink.overflow) {
    return ResourceExhausted("the code archive exceeds " + std::to_string(max_bytes >> 20) + " MiB compressed");
  }
  return Status::Ok();
}

}  // namespace lever::cli
