// tools/cli/exit_codes.h
//
// The exit codes of the `baq` command line, one per outcome a pipeline acts
// on differently (docs/cli.md has the table), and the one function that maps
// a command's absl::Status to its code. Torch-free; no state.
//
// A status can carry the outcome explicitly (a usage error found by main, a
// watched job that ended FAILED) as a payload: WithExitCode(). Otherwise
// the canonical code decides.
//
// Example:
//   absl::Status s = RunList(options);
//   return ExitCodeFor(s);  // 7 when the coordinator did not answer
#ifndef BAQ_TOOLS_CLI_EXIT_CODES_H_
#define BAQ_TOOLS_CLI_EXIT_CODES_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace baq::cli {

inline constexpr int kExitOk = 0;
// Internal or unclassified error (a bug, a broken dependency, I/O).
inline constexpr int kExitInternal = 1;
// Bad or missing flags or arguments; nothing was read.
inline constexpr int kExitUsage = 2;
// An input was read and refused: model, tokenizer, text, job config
// (InvalidArgument, NotFound, Unimplemented, FailedPrecondition, OutOfRange,
// AlreadyExists — e.g. --out exists).
inline constexpr int kExitInputRefused = 3;
// The job ran and failed (a watched remote job ended FAILED; a local
// quantize failed for a reason not above).
inline constexpr int kExitJobFailed = 4;
// The evaluation gate kept the output unpublished.
inline constexpr int kExitGateFailed = 5;
// Cancelled: Ctrl-C, or the job was cancelled.
inline constexpr int kExitCancelled = 6;
// The coordinator was unreachable or a deadline passed (Unavailable,
// DeadlineExceeded): retrying later may succeed.
inline constexpr int kExitUnavailable = 7;

// The exit code of a command that ended with `status`: the WithExitCode()
// payload if any; kExitGateFailed for coordinator::GateFailedError();
// otherwise by canonical code as documented above.
int ExitCodeFor(const absl::Status& status);

// `status` with `exit_code` attached (REQUIRES: !status.ok()).
absl::Status WithExitCode(absl::Status status, int exit_code);

// InvalidArgument(message) that exits kExitUsage.
absl::Status UsageError(absl::string_view message);

}  // namespace baq::cli

#endif  // BAQ_TOOLS_CLI_EXIT_CODES_H_
