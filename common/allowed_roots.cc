#include "common/allowed_roots.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace baq {
namespace {

// realpath(3) into a std::string; the errno on failure.
bool RealPath(const std::string& path, std::string* out, int* err) {
  std::unique_ptr<char, decltype(&free)> resolved(realpath(path.c_str(), nullptr), &free);
  if (resolved == nullptr) {
    *err = errno;
    return false;
  }
  *out = resolved.get();
  return true;
}

bool Under(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root || absl::StartsWith(path, absl::StrCat(root, "/"));
}

}  // namespace

absl::StatusOr<std::string> AllowedRoots::Resolve(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("path '", path, "' is not absolute"));
  }
  // Walk up to the deepest ancestor that exists, keeping the missing rest.
  std::string prefix = path;
  std::vector<std::string> missing;  // Innermost last-removed first.
  while (true) {
    std::string resolved;
    int err = 0;
    if (RealPath(prefix, &resolved, &err)) {
      for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
        if (*it == "." || *it == "..") {
          return absl::InvalidArgumentError(
              absl::StrCat("path '", path, "' has '", *it, "' below an existing directory"));
        }
        if (resolved != "/") resolved += "/";
        resolved += *it;
      }
      return resolved;
    }
    if (err != ENOENT) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot resolve '", path, "' at '", prefix, "': ", std::strerror(err)));
    }
    // realpath fails with ENOENT both for a missing entry and for a
    // dangling symlink; only the former may be created later safely.
    struct stat st;
    if (lstat(prefix.c_str(), &st) == 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("path '", path, "' crosses '", prefix, "', a dangling symlink"));
    }
    while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
    const size_t slash = prefix.rfind('/');
    std::string last = prefix.substr(slash + 1);
    prefix = slash == 0 ? "/" : prefix.substr(0, slash);
    if (!last.empty()) missing.push_back(std::move(last));
  }
}

absl::StatusOr<AllowedRoots> AllowedRoots::Create(const std::vector<std::string>& roots) {
  std::vector<std::string> resolved;
  for (const std::string& root : roots) {
    if (root.empty()) continue;
    std::string real;
    int err = 0;
    struct stat st;
    if (root[0] != '/' || !RealPath(root, &real, &err) || stat(real.c_str(), &st) != 0 ||
        !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "allowed root '", root, "' must be an existing directory given as an absolute path",
          err != 0 ? absl::StrCat(" (", std::strerror(err), ")") : ""));
    }
    resolved.push_back(std::move(real));
  }
  return AllowedRoots(std::move(resolved));
}

absl::Status AllowedRoots::Check(absl::string_view what, const std::string& path) const {
  if (roots_.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> resolved = Resolve(path);
  if (!resolved.ok()) {
    return absl::Status(resolved.status().code(),
                        absl::StrCat(what, ": ", resolved.status().message()));
  }
  for (const std::string& root : roots_) {
    if (Under(*resolved, root)) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat(what, " '", path, "' resolves to '", *resolved,
                   "', outside the allowed roots (", absl::StrJoin(roots_, ", "), ")"));
}

absl::Status AllowedRoots::CheckJob(const JobConfig& config) const {
  if (roots_.empty()) return absl::OkStatus();
  BAQ_RETURN_IF_ERROR(Check("model_dir", config.model_dir));
  BAQ_RETURN_IF_ERROR(Check("output_dir", config.output_dir));
  for (const std::string& file : config.calibration.files) {
    BAQ_RETURN_IF_ERROR(Check("calibration file", file));
  }
  if (!config.eval_file.empty()) BAQ_RETURN_IF_ERROR(Check("eval_file", config.eval_file));
  // A plain name lives in the coordinator's data dir (ResolveMeasurementName).
  if (config.measurement_dir.find('/') != std::string::npos) {
    BAQ_RETURN_IF_ERROR(Check("measurement_dir", config.measurement_dir));
  }
  if (config.eval_gate.enabled()) {
    BAQ_RETURN_IF_ERROR(Check("eval_gate.text_file", config.eval_gate.text_file));
  }
  return absl::OkStatus();
}

}  // namespace baq
