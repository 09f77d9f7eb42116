#include "common/atomic_output_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "common/status_macros.h"

namespace baq {
namespace {

namespace fs = std::filesystem;

absl::Status ErrnoError(int error, const std::string& path, absl::string_view what) {
  return absl::ErrnoToStatus(error, absl::StrCat(path, ": ", what));
}

// fsync on a read-only fd flushes the file's data and metadata (Linux, as
// LevelDB's PosixEnv and RocksDB rely on); directories need O_DIRECTORY.
absl::Status FsyncPath(const std::string& path, bool is_dir) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | (is_dir ? O_DIRECTORY : 0));
  if (fd < 0) return ErrnoError(errno, path, "cannot open for fsync");
  const int rc = fsync(fd);
  const int error = errno;
  close(fd);
  if (rc != 0) return ErrnoError(error, path, "fsync failed");
  return absl::OkStatus();
}

// fsyncs every regular file and directory below `root`, children first.
absl::Status FsyncTree(const std::string& root) {
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::file_status st = it->symlink_status(ec);
    if (ec) break;
    if (fs::is_regular_file(st) || fs::is_directory(st)) {
      BAQ_RETURN_IF_ERROR(FsyncPath(it->path().string(), fs::is_directory(st)));
    }
  }
  if (ec) return ErrnoError(ec.value(), root, "cannot list directory");
  return FsyncPath(root, /*is_dir=*/true);
}

std::string ParentOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AtomicOutputDir>> AtomicOutputDir::Create(std::string final_path,
                                                                         bool overwrite) {
  while (final_path.size() > 1 && final_path.back() == '/') final_path.pop_back();
  const size_t slash = final_path.rfind('/');
  const std::string name = slash == std::string::npos ? final_path : final_path.substr(slash + 1);
  if (name.empty() || name == "." || name == ".." || final_path == "/") {
    return absl::InvalidArgumentError(
        absl::StrCat("output path \"", final_path, "\" does not name a directory entry"));
  }
  const std::string parent = ParentOf(final_path);
  struct stat st;
  if (stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("parent directory of ", final_path, " does not exist"));
  }
  if (!overwrite && Exists(final_path)) {
    return absl::AlreadyExistsError(absl::StrCat(final_path, " already exists"));
  }
  std::string temp = absl::StrCat(parent, "/.", name, ".tmp-XXXXXX");
  if (mkdtemp(temp.data()) == nullptr) {
    return ErrnoError(errno, temp, "cannot create temporary directory");
  }
  // mkdtemp makes 0700; published outputs get the usual 0755.
  chmod(temp.c_str(), 0755);
  return std::unique_ptr<AtomicOutputDir>(
      new AtomicOutputDir(std::move(final_path), std::move(temp), overwrite));
}

AtomicOutputDir::~AtomicOutputDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(temp_path_, ec);  // best effort; nothing to report to
}

absl::Status AtomicOutputDir::Commit() {
  if (committed_) {
    return absl::FailedPreconditionError(absl::StrCat(final_path_, ": already committed"));
  }
  BAQ_FAILPOINT("atomic_output_dir.before_fsync");
  BAQ_RETURN_IF_ERROR(FsyncTree(temp_path_));
  BAQ_FAILPOINT("atomic_output_dir.before_rename");
  const std::string parent = ParentOf(final_path_);

  if (!overwrite_) {
    // RENAME_NOREPLACE: plain rename(2) would silently replace an empty dir.
    if (renameat2(AT_FDCWD, temp_path_.c_str(), AT_FDCWD, final_path_.c_str(), RENAME_NOREPLACE) !=
        0) {
      if (errno == EEXIST) {
        return absl::AlreadyExistsError(absl::StrCat(final_path_, " already exists"));
      }
      if (errno != EINVAL) return ErrnoError(errno, final_path_, "rename failed");
      // File system without renameat2 flags: check, then rename (racy, best effort).
      if (Exists(final_path_)) {
        return absl::AlreadyExistsError(absl::StrCat(final_path_, " already exists"));
      }
      if (rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
        return ErrnoError(errno, final_path_, "rename failed");
      }
    }
    committed_ = true;
    BAQ_FAILPOINT("atomic_output_dir.after_rename");
    return FsyncPath(parent, /*is_dir=*/true);
  }

  // Overwrite: swap atomically so the final path never disappears; the old
  // output ends up at temp_path_ and is removed after the swap is durable.
  if (!Exists(final_path_)) {
    if (rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
      return ErrnoError(errno, final_path_, "rename failed");
    }
    committed_ = true;
    return FsyncPath(parent, /*is_dir=*/true);
  }
  std::string old_path = temp_path_;
  if (renameat2(AT_FDCWD, temp_path_.c_str(), AT_FDCWD, final_path_.c_str(), RENAME_EXCHANGE) !=
      0) {
    if (errno != EINVAL) return ErrnoError(errno, final_path_, "rename (exchange) failed");
    // No RENAME_EXCHANGE here: move the old output aside, then rename.
    old_path = absl::StrCat(parent, "/.", fs::path(final_path_).filename().string(), ".old-XXXXXX");
    // mkdtemp reserves a unique name; free it so the old output (dir or file) can take it.
    if (mkdtemp(old_path.data()) == nullptr || rmdir(old_path.c_str()) != 0) {
      return ErrnoError(errno, old_path, "cannot reserve a name");
    }
    if (rename(final_path_.c_str(), old_path.c_str()) != 0) {
      return ErrnoError(errno, final_path_, "cannot move old output aside");
    }
    if (rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
      const int error = errno;
      rename(old_path.c_str(), final_path_.c_str());  // put the old output back
      return ErrnoError(error, final_path_, "rename failed");
    }
  }
  committed_ = true;
  BAQ_RETURN_IF_ERROR(FsyncPath(parent, /*is_dir=*/true));
  std::error_code ec;
  fs::remove_all(old_path, ec);
  if (ec) return ErrnoError(ec.value(), old_path, "cannot remove old output");
  return absl::OkStatus();
}

}  // namespace baq
