// common/atomic_output_dir.h
//
// AtomicOutputDir publishes a directory all at once: files are written into a
// hidden sibling temp dir (`.<name>.tmp-<random>`), Commit() fsyncs every file
// and the temp dir, renames it onto the final path (replacing nothing: an
// existing final path is AlreadyExists unless `overwrite`, in which case the
// old dir is swapped out with renameat2(RENAME_EXCHANGE), falling back to
// moving it aside, and removed after the rename) and fsyncs the parent.
// A crash at any point leaves either the old output or the complete new one
// (plus, at worst, a hidden `.<name>.tmp-*` / `.<name>.old-*` sibling).
// Create() already fails with AlreadyExists for an existing final path when
// not overwriting; Commit() checks again atomically (RENAME_NOREPLACE).
// NotFound if the parent directory does not exist.
//
// Thread-compatible. Destroying an uncommitted AtomicOutputDir removes the
// temp dir.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(auto out, AtomicOutputDir::Create("/models/opt-baq3"));
//   ... write files under out->temp_path() ...
//   BAQ_RETURN_IF_ERROR(out->Commit());
#ifndef BAQ_COMMON_ATOMIC_OUTPUT_DIR_H_
#define BAQ_COMMON_ATOMIC_OUTPUT_DIR_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace baq {

class AtomicOutputDir {
 public:
  static absl::StatusOr<std::unique_ptr<AtomicOutputDir>> Create(std::string final_path,
                                                                 bool overwrite = false);
  ~AtomicOutputDir();
  AtomicOutputDir(const AtomicOutputDir&) = delete;
  AtomicOutputDir& operator=(const AtomicOutputDir&) = delete;

  const std::string& temp_path() const { return temp_path_; }
  const std::string& final_path() const { return final_path_; }
  // FailedPrecondition if already committed.
  absl::Status Commit();

 private:
  AtomicOutputDir(std::string final_path, std::string temp_path, bool overwrite)
      : final_path_(std::move(final_path)), temp_path_(std::move(temp_path)),
        overwrite_(overwrite) {}

  const std::string final_path_;
  const std::string temp_path_;
  const bool overwrite_;
  bool committed_ = false;
};

}  // namespace baq

#endif  // BAQ_COMMON_ATOMIC_OUTPUT_DIR_H_
