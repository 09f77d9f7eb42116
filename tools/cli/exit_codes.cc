#include "tools/cli/exit_codes.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "coordinator/eval_gate.h"

namespace baq::cli {
namespace {

constexpr char kExitCodePayloadUrl[] = "type.baq/cli.exit_code";

}  // namespace

int ExitCodeFor(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  if (auto payload = status.GetPayload(kExitCodePayloadUrl); payload.has_value()) {
    int code = 0;
    if (absl::SimpleAtoi(std::string(*payload), &code)) return code;
  }
  if (coordinator::EvalGateResultOf(status).has_value()) return kExitGateFailed;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists:
      return kExitInputRefused;
    case absl::StatusCode::kCancelled:
      return kExitCancelled;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnavailable;
    default:
      return kExitInternal;
  }
}

absl::Status WithExitCode(absl::Status status, int exit_code) {
  status.SetPayload(kExitCodePayloadUrl, absl::Cord(std::to_string(exit_code)));
  return status;
}

absl::Status UsageError(absl::string_view message) {
  return WithExitCode(absl::InvalidArgumentError(message), kExitUsage);
}

}  // namespace baq::cli
