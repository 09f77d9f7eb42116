// common/failpoint.h
//
// Failpoints: named places in the code where a test injects a fault — a
// crash, an error, a delay — to check what baq leaves behind (docs/operations.md
// "Failpoints"). A failpoint is one line:
//
//   absl::Status WriteIndex(...) {
//     BAQ_FAILPOINT("atomic_output_dir.before_rename");   // may return an error
//     ...
//   }
//
// They are live only in builds configured with BAQ_ENABLE_FAILPOINTS (CMake
// option, ON by default when BAQ_BUILD_TESTS is ON). Release images build
// with -DBAQ_BUILD_TESTS=OFF, where Eval() returns OK at once and the
// environment is never read. Only failpoint.cc sees the option, so turning
// it on or off recompiles one file.
//
// Configuration: the environment variable BAQ_FAILPOINTS, read at the first
// failpoint a process reaches:
//
//   BAQ_FAILPOINTS="name=action[@N][,name=action[@N]...]"
//
// Actions: `crash` (SIGKILL to this process: no destructors, no flush — a
// power cut as far as the file system's page cache allows), `error`
// (Eval returns Internal "failpoint NAME: injected error"), `enospc`
// (ResourceExhausted "... No space left on device", what a full disk looks
// like), `sleep(MS)` (sleeps MS milliseconds, then continues). `@N` fires
// only on the N-th time the failpoint is reached (1-based); without it, every
// time. A malformed BAQ_FAILPOINTS makes every failpoint return
// InvalidArgument naming the problem, so a typo cannot pass silently.
//
// Thread-safe.
#ifndef BAQ_COMMON_FAILPOINT_H_
#define BAQ_COMMON_FAILPOINT_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace baq::failpoint {

// True when this build has failpoints (BAQ_ENABLE_FAILPOINTS).
bool Enabled();
// Runs the action configured for `name`, if any; OK otherwise (always OK
// when !Enabled()).
absl::Status Eval(absl::string_view name);
// Replaces the configuration (the BAQ_FAILPOINTS syntax; "" clears it) and
// resets the hit counts, for in-process tests. InvalidArgument if malformed
// (the configuration is then left as it was); FailedPrecondition when
// !Enabled().
absl::Status Configure(absl::string_view spec);

}  // namespace baq::failpoint

// Use in functions returning absl::Status or absl::StatusOr<T>.
#define BAQ_FAILPOINT(name) BAQ_RETURN_IF_ERROR(::baq::failpoint::Eval(name))

#endif  // BAQ_COMMON_FAILPOINT_H_
