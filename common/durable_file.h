// common/durable_file.h
//
// Writing a small file so that a crash leaves either the old content or the
// complete new one: temp file beside it, write, fsync, rename, fsync the
// directory. Used for manifests and checkpoints (coordinator/job_checkpoint,
// common/measurement_store). Large outputs use AtomicOutputDir or
// SafetensorsWriter instead.
//
// Functions only; thread-safe for distinct paths.
#ifndef BAQ_COMMON_DURABLE_FILE_H_
#define BAQ_COMMON_DURABLE_FILE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace baq {

// Writes the concatenation of `pieces` to `path` durably (see above).
// Internal error naming the step and the file (errno text) on failure; the
// temp file is removed and `path` is untouched then.
absl::Status WriteFileDurably(const std::string& path,
                              const std::vector<absl::string_view>& pieces);

// fsync(2) of a directory, so that a rename inside it survives a crash.
absl::Status FsyncDirectory(const std::string& dir);

}  // namespace baq

#endif  // BAQ_COMMON_DURABLE_FILE_H_
