// common/allowed_roots.h
//
// AllowedRoots confines the file paths of a job (model, calibration and
// evaluation files, output directory) to a set of directory trees, the
// coordinator's --allowed_root. A path is allowed when it is absolute and
// resolves — following every symlink, like realpath(3) — to one of the
// roots or below it. A path that does not exist yet (an output directory)
// is resolved through its deepest existing ancestor; the missing rest may
// hold no "." or ".." and no dangling symlink. So `..` escapes and symlinks
// that point out of a root are both rejected, with the offending path named.
//
// The check runs when a job is submitted, against this process's view of
// the file system (the shared file system the service assumes). It is a
// policy check, not a sandbox: a symlink swapped in after the check is not
// seen; give the daemons file-system permissions that match the roots.
//
// Thread-safe after construction (immutable).
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(AllowedRoots roots, AllowedRoots::Create({"/models", "/out"}));
//   BAQ_RETURN_IF_ERROR(roots.CheckJob(config));
#ifndef BAQ_COMMON_ALLOWED_ROOTS_H_
#define BAQ_COMMON_ALLOWED_ROOTS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/job_config.h"

namespace baq {

class AllowedRoots {
 public:
  // Each root must be an existing directory; it is resolved once, here.
  // InvalidArgument naming the root otherwise. An empty list allows every
  // path (no policy).
  static absl::StatusOr<AllowedRoots> Create(const std::vector<std::string>& roots);

  // No policy: every path allowed.
  AllowedRoots() = default;

  bool empty() const { return roots_.empty(); }
  const std::vector<std::string>& roots() const { return roots_; }

  // OK when `path` resolves under a root. InvalidArgument for a relative
  // path or a "."/".." among its not-yet-existing components; PermissionDenied
  // when it resolves outside every root or crosses a dangling symlink.
  // `what` names the field in the message ("model_dir").
  absl::Status Check(absl::string_view what, const std::string& path) const;

  // Checks model_dir, output_dir, every calibration file, eval_file and
  // eval_gate.text_file (when set).
  absl::Status CheckJob(const JobConfig& config) const;

  // The path with every existing component's symlinks resolved (see the
  // file comment). Exposed for messages and tests.
  static absl::StatusOr<std::string> Resolve(const std::string& path);

 private:
  explicit AllowedRoots(std::vector<std::string> roots) : roots_(std::move(roots)) {}

  std::vector<std::string> roots_;  // Resolved, no trailing '/' (except "/").
};

}  // namespace baq

#endif  // BAQ_COMMON_ALLOWED_ROOTS_H_
